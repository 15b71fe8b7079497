#!/usr/bin/env bash
# YOLO from scratch vs from a pretrained checkpoint, on synthetic KITTI-like scenes.
# Usage: configs/detection/run.sh [OUT] (default runs/detection; the configs expect that default)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-runs/detection}"
adlab="${ADLAB:-adlab}"
$adlab data synth-scenes --out "$out/scenes_pretrain" --images 600 --classes Trouser,Bag,Sneaker \
  --seed 0 --val-fraction 0.1 --overwrite
$adlab data synth-scenes --out "$out/scenes_target" --images 200 --classes Pullover,Sandal,"Ankle boot" \
  --seed 1 --val-fraction 0.5 --overwrite
$adlab train "$here/pretrain.yaml" --set data.root="$out/scenes_pretrain/data.yaml" --out "$out/pretrain" --overwrite
$adlab train "$here/target.yaml" --set data.root="$out/scenes_target/data.yaml" --out "$out/scratch" --overwrite
$adlab train "$here/target.yaml" --set data.root="$out/scenes_target/data.yaml" --set model.weights="$out/pretrain" \
  --out "$out/transfer" --overwrite
$adlab table "$out"/{scratch,transfer} --metrics map50,map50_95,precision,recall,map50_torchmetrics,train_seconds \
  | tee "$out/table.md"
