#!/usr/bin/env bash
# YOLO from scratch vs from a pretrained checkpoint, on synthetic KITTI-like scenes:
# runs configs/studies/detection.yaml in OUT (it makes its scene sets first; report included).
# Usage: configs/detection/run.sh [OUT] (default runs/studies/detection)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-runs/studies/detection}"
adlab="${ADLAB:-adlab}"
$adlab study "$here/../studies/detection.yaml" --out "$out" --resume
$adlab table "$out"/runs/{scratch,transfer} --metrics map50,map50_95,precision,recall,map50_torchmetrics,train_seconds \
  | tee "$out/table.md"
