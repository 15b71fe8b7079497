#!/usr/bin/env bash
# AE vs VAE vs DAE on Fashion-MNIST (latent 10), then each encoder fine-tuned as a classifier.
# Usage: configs/autoencoders/run.sh [OUT] (default runs/autoencoders)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-runs/autoencoders}"
adlab="${ADLAB:-adlab}"
for model in ${MODELS:-ae vae dae}; do   # MODELS="vae" re-runs one
  $adlab train "$here/$model.yaml" --out "$out/$model" --overwrite
  $adlab train "$here/encoder_finetune.yaml" --set model.weights="$out/$model" \
    --out "$out/${model}_encoder_finetune" --overwrite
done
{
  $adlab table "$out"/{ae,vae,dae} \
    --metrics test_mse,test_bce,latent_knn_accuracy,latent_linear_accuracy,test_mse_corrupted,test_elbo,train_seconds
  echo
  $adlab table "$out"/{ae,vae,dae}_encoder_finetune --metrics accuracy,mean_class_accuracy,macro_f1,train_seconds
} | tee "$out/table.md"
