#!/usr/bin/env bash
# YOLO from scratch vs from a pretrained checkpoint, on synthetic KITTI-like scenes:
# makes both scene sets in OUT, then runs configs/studies/detection.yaml there (report included).
# Usage: configs/detection/run.sh [OUT] (default runs/studies/detection)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-runs/studies/detection}"
adlab="${ADLAB:-adlab}"
$adlab data synth-scenes --out "$out/scenes_pretrain" --images 600 --classes Trouser,Bag,Sneaker \
  --seed 0 --val-fraction 0.1 --overwrite
$adlab data synth-scenes --out "$out/scenes_target" --images 200 --classes Pullover,Sandal,"Ankle boot" \
  --seed 1 --val-fraction 0.5 --overwrite
$adlab study "$here/../studies/detection.yaml" --out "$out" --resume
$adlab table "$out"/runs/{scratch,transfer} --metrics map50,map50_95,precision,recall,map50_torchmetrics,train_seconds \
  | tee "$out/table.md"
