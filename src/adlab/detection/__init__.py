"""Object detection: YOLO-format data sets, KITTI conversion, filtering, crops, synthetic scenes."""
