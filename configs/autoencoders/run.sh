#!/usr/bin/env bash
# AE vs VAE vs DAE on Fashion-MNIST (latent 10), then each encoder fine-tuned as a classifier:
# configs/studies/autoencoders.yaml, with its report. Usage: configs/autoencoders/run.sh [OUT]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-runs/studies/autoencoders}"
"${ADLAB:-adlab}" study "$here/../studies/autoencoders.yaml" --out "$out" --resume
