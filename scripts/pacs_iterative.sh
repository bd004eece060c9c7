#!/usr/bin/env bash
# Issue 8's iterative-pruning check: one shot against --steps K at each ratio, on one fine-tuned baseline
# (DeiT-Tiny, PACS, DOMAIN held out, Hessian metric, the default normalisation and compensation).
# Both rows fine-tune for STEPS steps after pruning; the iterative row also trains RECOVERY steps between its
# pruning steps (stated in the table).
#   scripts/pacs_iterative.sh PACS_ROOT WEIGHTS.safetensors WORKSPACE [DOMAIN] [STEPS] [SEED] [RATIOS] [K] [RECOVERY]
# The baseline run is base-DOMAIN-sSEED in WORKSPACE (made first if missing, as scripts/pacs_recovery.sh makes it).
set -euo pipefail
data=$1 weights=$2 workspace=$3 domain=${4:-sketch} steps=${5:-60} seed=${6:-0} ratios=${7:-0.5 0.75}
k=${8:-2} recovery=${9:-50}
base="base-$domain-s$seed"
budget=() && [ "$steps" != full ] && budget=(--max-steps-per-epoch "$steps")
ep() { /usr/bin/time -f "wall %e s: edgeprune $*" edgeprune "$@"; }
if [ ! -d "$workspace/$base/baseline" ]; then
  ep prune --model deit-tiny --checkpoint "$weights" --data "$data" --target-domain "$domain" --seed "$seed" \
    --baseline-epochs 1 --epochs 0 --run "$base" --workspace "$workspace"
fi
runs=()
for ratio in $ratios; do
  for mode in oneshot "steps$k"; do
    name="$domain-s$seed-$steps-r$ratio-$mode"
    runs+=("$name")
    [ -d "$workspace/$name/finetuned" ] && continue
    extra=() && [ "$mode" != oneshot ] && extra=(--steps "$k" --recovery-steps "$recovery")
    ep prune --model deit-tiny --baseline-run "$base" --data "$data" --target-domain "$domain" --seed "$seed" \
      --ratio "$ratio" --metric hessian --epochs 1 "${budget[@]}" "${extra[@]}" --run "$name" \
      --workspace "$workspace"
  done
done
python3 - "$workspace" "$domain" "$steps" "$base" "${runs[@]}" <<'PY'
import sys
from pathlib import Path
from edgeprune.workspace import Workspace
ws, domain, steps, base, runs = Workspace(Path(sys.argv[1])), *sys.argv[2:5], sys.argv[5:]
b = ws.get_run(base).metrics("baseline")
print(f"baseline: {domain} {b.held_out_accuracy:.4f}, source val {b.source_val_accuracy:.4f}")
print(f"| run | units removed | MACs kept | {domain} right after pruning | {domain} after fine-tune ({steps} steps) "
      "| source val |")
print("|---|---|---|---|---|---|")
for name in runs:
    run = ws.get_run(name)
    achieved = run.prune_report().achieved
    p, f = run.metrics("pruned"), run.metrics("finetuned")
    print(f"| {name} | {achieved.units_removed:.3f} | {achieved.macs_kept:.3f} | {p.held_out_accuracy:.4f} | "
          f"{f.held_out_accuracy:.4f} | {f.source_val_accuracy:.4f} |")
PY
