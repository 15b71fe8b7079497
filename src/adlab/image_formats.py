"""Which files count as images: one list per kind of data set, each following the program that
will decode those files, so adlab never indexes a file that is not trained on, nor misses one that is."""

from __future__ import annotations

# Class-folder trees (data.name: folder, eurosat) are decoded by Pillow, as torchvision's ImageFolder
# does: torchvision's IMG_EXTENSIONS (a tree indexes the files ImageFolder would) plus .gif, whose
# first frame Pillow decodes.
CLASS_FOLDER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# YOLO data sets (and KITTI images, which become one) are trained on by ultralytics, which lists
# images by its IMG_FORMATS (ultralytics/data/utils.py). adlab's checks and data tools must see the
# same files: with fewer, an image's label file reads as "without an image" and a tool silently
# leaves the image out of its copy; with more, a file is checked that is never trained on. Copied,
# not imported (importing ultralytics takes seconds and writes its settings file);
# tests/test_image_formats.py fails when ultralytics' list changes. An image Pillow cannot open
# (.heic without pillow-heif, say) is then an error naming the file, never a silent omission.
YOLO_IMAGE_SUFFIXES = (
    ".avif",
    ".bmp",
    ".dng",
    ".heic",
    ".heif",
    ".jp2",
    ".jpeg",
    ".jpg",
    ".mpo",
    ".png",
    ".tif",
    ".tiff",
    ".webp",
)


def check_image_file(path) -> None:
    """An image file given by name (adlab predict) must be a regular file, judged by os.stat before it is
    opened: a FIFO named x.png would block the open for ever, /dev/zero never ends, a folder or a
    symlink loop is no image. One DataError naming the file."""
    import os
    import stat

    from adlab.errors import DataError
    from adlab.io import file_kind

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except OSError as exc:  # a symlink loop, a path through a file, no permission
        raise DataError(f"{path}: cannot read image ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: cannot read image ({file_kind(mode)}, not an image file)")
