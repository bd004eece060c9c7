#!/usr/bin/env bash
# Pruning to a latency, checked the way a user would: for each model, measure its latency table, then prune to
# 50% and 25% of the unpruned model's p50 and to a 2x speed-up, export, and let `bench` measure the pruned and the
# unpruned engine side by side. Prints one line per cell: goal, the table's prediction, the closed loop's last
# measurement, and bench's (after export) with its error against the goal.
#
#   scripts/latency_targets.sh WORKSPACE [PROFILE] [TARGET] [MODELS...]
#   scripts/latency_targets.sh /tmp/lat cpu-x86 ort-cpu deit-small deit-base
#
# Random weights (latency does not depend on them); the built-in data set (bench needs a held-out domain).
# RANKING=per-ms ranks units by importance per ms saved (with random weights it takes the embedding first).
set -euo pipefail
ws=${1:?workspace}; profile=${2:-cpu-x86}; target=${3:-ort-cpu}; shift $(( $# < 3 ? $# : 3 ))
models=("${@:-deit-small}")
read -ra ep <<<"${EDGEPRUNE:-edgeprune}"  # e.g. EDGEPRUNE="python -m edgeprune"
isa=$(grep -o -w -m1 'avx512_vnni' /proc/cpuinfo || grep -o -w -m1 'avx2' /proc/cpuinfo || uname -m)
echo "# $(date -u +%FT%TZ) $(nproc) cores, $isa, load $(cut -d' ' -f1-3 /proc/loadavg); profile $profile, target $target"
printf '| model | asked | goal ms | predicted ms | loop measured ms | bench pruned p50 | bench unpruned p50 | bench speed-up | error vs goal | table held-out error |\n|---|---|---|---|---|---|---|---|---|---|\n'
for model in "${models[@]}"; do
  table=$("${ep[@]}" latency-table --model "$model" --profile "$profile" --target "$target" --workspace "$ws" --json 2>>"$ws/tables.log")
  unpruned=$(jq -r '.reference.p50_ms' <<<"$table")
  for asked in "latency 0.5" "latency 0.25" "speedup 2"; do
    read -r kind value <<<"$asked"
    if [[ $kind == latency ]]; then
      option=(--target-latency "$(jq -n "$unpruned * $value * 100 | round / 100")")
    else
      option=(--target-speedup "$value")
    fi
    run="$model-$kind-$value-${RANKING:-importance}"
    "${ep[@]}" prune --model "$model" --random-init --baseline-epochs 0 --epochs 0 --no-eval --metric l2 "${option[@]}" \
      --latency-ranking "${RANKING:-importance}" \
      --profile "$profile" --target "$target" --run "$run" --workspace "$ws" --json >"$ws/$run.prune.json" 2>"$ws/$run.log"
    "${ep[@]}" export --target "$target" --profile "$profile" --run "$run" --parity-images 8 --workspace "$ws" >>"$ws/$run.log" 2>&1
    "${ep[@]}" bench --target "$target" --profile "$profile" --run "$run" --max-images 16 --iterations 100 --no-explain \
      --workspace "$ws" --json >"$ws/$run.bench.json" 2>>"$ws/$run.log" || true
    # the error of a latency goal is the pruned p50's against it; a speed-up goal's, bench's speed-up against it
    jq -r --slurpfile b "$ws/$run.bench.json" --arg asked "${option[*]} (${RANKING:-importance})" --arg model "$model" \
      --argjson error "$(jq '.error.median_pct*10|round/10' <<<"$table")" \
      --argjson speedup "$([[ $kind == speedup ]] && echo "$value" || echo null)" '
      .prune_report.latency as $l | ($b[0].latency_ms.p50) as $p | ($b[0].baseline_latency_ms.p50) as $u |
      "| \($model) | \($asked) | \($l.goal_ms*100|round/100) | \($l.predicted_ms*100|round/100) | \($l.measured_ms*100|round/100) | \($p*100|round/100) | \($u*100|round/100) | \(($u/$p)*100|round/100)x | \(((if $speedup then ($u/$p)/$speedup else $p/$l.goal_ms end - 1)*1000|round)/10)% | \($error)% |"' \
      "$ws/$run.prune.json"
  done
  echo "table of $model: $(jq -r '"held-out probes median \(.error.median_pct*10|round/10)%, max \(.error.max_pct*10|round/10)%; unpruned measured \(.reference.p50_ms*100|round/100) ms, fit \(.reference.fitted_ms*100|round/100) ms"' <<<"$table")"
done
