#!/usr/bin/env bash
# The split Fashion-MNIST transfer study (configs/studies/transfer_regimes.yaml), with its report:
# pretrain cnn and resnet18 on classes 0-4, learn classes 5-9 from 50 images per class in three
# regimes, fuse the two fine-tuned nets. Usage: configs/transfer/run.sh [OUT]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-runs/studies/transfer_regimes}"
"${ADLAB:-adlab}" study "$here/../studies/transfer_regimes.yaml" --out "$out" --resume
