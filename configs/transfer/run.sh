#!/usr/bin/env bash
# The split Fashion-MNIST transfer study: pretrain on classes 0-4, then learn classes 5-9 from
# 50 images per class in three regimes (scratch / fine-tune / frozen) for cnn and resnet18,
# plus a late fusion of the two fine-tuned nets. Usage: configs/transfer/run.sh [OUT] (default runs/transfer)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-runs/transfer}"
adlab="${ADLAB:-adlab}"
for model in ${MODELS:-cnn resnet18}; do   # MODELS="cnn" re-runs one family
  $adlab train "$here/pretrain_$model.yaml" --out "$out/pretrain_$model" --overwrite
  $adlab train "$here/fewshot.yaml" --set model.name=$model --out "$out/${model}_scratch" --overwrite
  $adlab train "$here/fewshot.yaml" --set model.name=$model --set model.weights="$out/pretrain_$model" \
    --out "$out/${model}_finetune" --overwrite
  $adlab train "$here/fewshot.yaml" --set model.name=$model --set model.weights="$out/pretrain_$model" \
    --set model.freeze=true --out "$out/${model}_frozen" --overwrite
done
$adlab fuse "$out/cnn_finetune" "$out/resnet18_finetune" --method mean_prob --out "$out/fusion_finetune" --overwrite
$adlab table "$out"/{cnn,resnet18}_{scratch,finetune,frozen} "$out/fusion_finetune" \
  --metrics accuracy,mean_class_accuracy,macro_f1,train_seconds | tee "$out/table.md"
