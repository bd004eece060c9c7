#!/usr/bin/env bash
# DeiT-Tiny on PACS, held out sketch: one fine-tuned baseline, then every importance metric with the same amount of
# pruning and the same short fine-tune, reusing the baseline. The runs stay in the workspace; summarise them with
# scripts/summarize_runs.py. AMOUNT is "--ratio 0.5" (same ratio) or "--target-macs 0.6" (same compute).
#   scripts/pacs_metric_study.sh PACS_ROOT WEIGHTS.safetensors WORKSPACE ["AMOUNT"] [STEPS]
set -euo pipefail
data=$1 weights=$2 workspace=$3 amount=${4:---ratio 0.5} steps=${5:-40}
tag=$(echo "$amount" | tr -d ' -')
ep() { /usr/bin/time -f "wall %e s: edgeprune $*" edgeprune "$@"; }
if [ ! -d "$workspace/deit-tiny-pacs/baseline" ]; then
  ep prune --model deit-tiny --checkpoint "$weights" --data "$data" --target-domain sketch --ratio 0.5 \
    --metric hessian --baseline-epochs 1 --epochs 0 --workers 1 --run deit-tiny-pacs --workspace "$workspace"
fi
for metric in hessian taylor l2 l1 random; do
  # shellcheck disable=SC2086  # AMOUNT is an option and its value
  ep prune --model deit-tiny --baseline-run deit-tiny-pacs --data "$data" --target-domain sketch $amount \
    --metric "$metric" --epochs 1 --max-steps-per-epoch "$steps" --workers 1 --run "$tag-$metric" \
    --workspace "$workspace"
done
