#!/usr/bin/env bash
# DeiT-Tiny on PACS, held out sketch: one fine-tuned baseline, then every importance metric at one ratio with the
# same short fine-tune, reusing the baseline. Prints each run's prune summary; the runs stay in the workspace.
#   scripts/pacs_metric_study.sh PACS_ROOT WEIGHTS.safetensors WORKSPACE [RATIO] [STEPS]
set -euo pipefail
data=$1 weights=$2 workspace=$3 ratio=${4:-0.5} steps=${5:-40}
ep() { /usr/bin/time -f "wall %e s: edgeprune $*" edgeprune "$@"; }
if [ ! -d "$workspace/deit-tiny-pacs/baseline" ]; then
  ep prune --model deit-tiny --checkpoint "$weights" --data "$data" --target-domain sketch --ratio "$ratio" \
    --metric hessian --baseline-epochs 1 --epochs 0 --workers 1 --run deit-tiny-pacs --workspace "$workspace"
fi
for metric in l1 l2 taylor random hessian; do
  ep prune --model deit-tiny --baseline-run deit-tiny-pacs --data "$data" --target-domain sketch --ratio "$ratio" \
    --metric "$metric" --epochs 1 --max-steps-per-epoch "$steps" --workers 1 --run "metric-$metric-r$ratio" \
    --workspace "$workspace"
done
