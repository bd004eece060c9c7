#!/usr/bin/env bash
# Issue 8's recovery table: DeiT-Tiny on PACS, one domain held out, 0.62 of the MACs kept with the Hessian metric.
# One fine-tuned baseline (1 epoch), then each recovery technique added in turn on that same baseline:
#   plain       mean normalisation, no compensation, no distillation (the softmax scale and budget fixes are always on)
#   +comp       removed units' mean contribution folded into the next bias, LayerNorm statistics corrected
#               (--compensation mean; every row up to +cost-tok compensates so, as the defaults did then)
#   +distill    fine-tuned against the baseline's soft outputs too
#   +norm       the best normalisation (NORM, default none) instead of mean
#   norm-plain  that normalisation with compensation, without distillation
#   +iter       pruned in 2 steps with a 50-step distilled recovery between
#   +avg        +norm with the fine-tune's weights averaged over its second half (--average-from 0.5)
#   +tok        +norm distilling the teacher's token relations too (--distill-tokens 10), in steps of 16 images
#               (twice the steps in the epoch; 32 calibration batches keep the 512 calibration images)
#   +cost-tok   +tok with importance per MAC removed (--normalization cost) and the token term at 30
#   +fit        +norm with the least-squares compensation (--compensation fit: today's defaults)
#   +fit-tok    +tok with it
#   +fit-cost-tok  +fit-tok with --normalization cost (the token term at 10)
#   +cost75     +fit-cost-tok with importance per MACs ** 0.75 removed (--cost-exponent 0.75)
# STEPS caps the training steps of every row's fine-tune (the same for every row); "full" trains the whole epoch.
# Each row is an ordinary run in WORKSPACE (sketch right after pruning: pruned/metrics.json; after the fine-tune:
# finetuned/metrics.json); the table is printed at the end.
#   scripts/pacs_recovery.sh PACS_ROOT WEIGHTS.safetensors WORKSPACE [DOMAIN] [STEPS] [SEED] [NORM] [ROWS]
# ROWS is a space-separated subset of "plain comp distill norm norm-plain iter avg tok cost-tok fit fit-tok
# fit-cost-tok cost75" (default: all but norm-plain).
set -euo pipefail
data=$1 weights=$2 workspace=$3 domain=${4:-sketch} steps=${5:-60} seed=${6:-0} norm=${7:-none}
rows=${8:-plain comp distill norm iter avg tok cost-tok fit fit-tok fit-cost-tok cost75}
base="base-$domain-s$seed"
budget=() && [ "$steps" != full ] && budget=(--max-steps-per-epoch "$steps")
ep() { /usr/bin/time -f "wall %e s: edgeprune $*" edgeprune "$@"; }
if [ ! -d "$workspace/$base/baseline" ]; then
  ep prune --model deit-tiny --checkpoint "$weights" --data "$data" --target-domain "$domain" --seed "$seed" \
    --target-macs 0.62 --baseline-epochs 1 --epochs 0 --run "$base" --workspace "$workspace"
fi
common=(--model deit-tiny --baseline-run "$base" --data "$data" --target-domain "$domain" --seed "$seed"
  --target-macs 0.62 --metric hessian --epochs 1 "${budget[@]}" --workspace "$workspace")
mean="--compensate --compensation mean" fit="--compensate --compensation fit"
tok="--distill-tokens 10 --batch-size 16 --calib-batches 32"
declare -A flags=(
  [plain]="--normalization mean --no-compensate --no-distill"
  [comp]="--normalization mean $mean --no-distill"
  [distill]="--normalization mean $mean --distill"
  [norm]="--normalization $norm $mean --distill"
  [norm-plain]="--normalization $norm $mean --no-distill"
  [iter]="--normalization $norm $mean --distill --steps 2 --recovery-steps 50"
  [avg]="--normalization $norm $mean --distill --average-from 0.5"
  [tok]="--normalization $norm $mean --distill $tok"
  [cost-tok]="--normalization cost $mean --distill --distill-tokens 30 --batch-size 16 --calib-batches 32"
  [fit]="--normalization $norm $fit --distill"
  [fit-tok]="--normalization $norm $fit --distill $tok"
  [fit-cost-tok]="--normalization cost $fit --distill $tok"
  [cost75]="--normalization cost --cost-exponent 0.75 $fit --distill $tok"
)
name_of() { case $1 in norm|norm-plain|iter|avg|tok|fit|fit-tok) echo "$domain-s$seed-$steps-$1-$norm" ;; *) echo "$domain-s$seed-$steps-$1" ;; esac; }
for row in $rows; do
  name=$(name_of "$row")
  [ -d "$workspace/$name/finetuned" ] && continue
  # shellcheck disable=SC2086  # the row's flags are words
  ep prune "${common[@]}" ${flags[$row]} --run "$name"
done
# shellcheck disable=SC2046  # one run name per row
python3 - "$workspace" "$domain" "$steps" "$base" $(for row in $rows; do name_of "$row"; done) <<'PY'
import sys
from pathlib import Path
from edgeprune.workspace import Workspace
ws, domain, steps, base, runs = Workspace(Path(sys.argv[1])), *sys.argv[2:5], sys.argv[5:]
b = ws.get_run(base).metrics("baseline")
print(f"baseline: {domain} {b.held_out_accuracy:.4f}, source val {b.source_val_accuracy:.4f}")
print(f"| run | MACs kept | {domain} right after pruning | {domain} after fine-tune ({steps} steps) | source val |")
print("|---|---|---|---|---|")
for name in runs:
    run = ws.get_run(name)
    p, f = run.metrics("pruned"), run.metrics("finetuned")
    print(f"| {name} | {run.prune_report().achieved.macs_kept:.3f} | {p.held_out_accuracy:.4f} | "
          f"{f.held_out_accuracy:.4f} | {f.source_val_accuracy:.4f} |")
PY
