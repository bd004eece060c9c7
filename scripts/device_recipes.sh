#!/usr/bin/env bash
# Issue 8's recovery recipes on a device machine (one GPU, no registry), several at once: DeiT-Tiny on PACS, one
# domain held out, 0.62 of the MACs kept (Hessian, no normalisation, compensation), 1 fine-tune epoch after
# pruning, every recipe from the same fine-tuned baseline (1 epoch, reused when the workspace has it). The data and
# weights are packed by scripts/pack_dg_data.py (.device/) and travel as one tarball, the images' file-system slack
# being over the transfer limit (`tar -czf .devpack/pacs.tgz -C .device PACS`, weights copied beside it, unpacked
# here when .device/ is missing); the missing Python packages travel as wheels (.whl/).
#   [DATA=.device/PACS WEIGHTS=.device/deit_tiny_fp16.safetensors LANES=2 WORKERS=5 EXTRA="flags for every run"] \
#     scripts/device_recipes.sh DOMAIN [TIME_LIMIT_S] [RECIPES_FILE]
# Two lanes with 6 torch threads each suit a 16-core machine: four lanes with torch's default threads thrashed
# (one recipe took 356 s instead of ~50 s).
# RECIPES_FILE: one recipe per line, "name extra prune flags..." (default: the list below). Writes runs.md (one
# table over the finished runs) and each run's log to $OUT (or ./device-out).
set -uo pipefail
domain=${1:?domain} limit=${2:-480} recipes=${3:-}
data=${DATA:-.device/PACS} weights=${WEIGHTS:-.device/deit_tiny_fp16.safetensors}
lanes=${LANES:-2} workers=${WORKERS:-5} extra=${EXTRA:-} ws=${WS:-edgeprune-runs/recipes}
out=${OUT:-device-out} && mkdir -p "$out"
if [ -d .whl ] && ! python3 -c "import torch_pruning, pydantic, tomli_w" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-6}
if [ ! -d "$data" ] && [ -f .devpack/pacs.tgz ]; then
  mkdir -p .device && tar -xzf .devpack/pacs.tgz -C .device && cp .devpack/*.safetensors .device/ || exit 1
fi
nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null
python3 -c "import torch, timm; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'timm', timm.__version__)"
start=$(date +%s)
base="base-$domain"
[ -d "$ws/$base/baseline" ] || timeout -s INT -k 20 "$limit" python3 -m edgeprune prune --model deit-tiny \
  --checkpoint "$weights" --data "$data" --target-domain "$domain" --seed 0 --target-macs 0.62 --baseline-epochs 1 \
  --epochs 0 --workers 12 $extra --run "$base" --workspace "$ws" >"$out/$base.log" 2>&1 || { tail -20 "$out/$base.log"; exit 1; }
echo "baseline: $(( $(date +%s) - start )) s"
default_recipes="c4
c16 --calib-batches 16
c16-kd --calib-batches 16 --distill
c16-kd-lr5e-5 --calib-batches 16 --distill --lr 5e-5
c16-kd-lr2e-4 --calib-batches 16 --distill --lr 2e-4
c16-kd-iter3 --calib-batches 16 --distill --steps 3 --recovery-steps 50
c16-kd-share0.8 --calib-batches 16 --distill --max-share 0.8
c16-kd-t4w0.7 --calib-batches 16 --distill --distill-temperature 4 --distill-weight 0.7
c16-kd-seed1 --calib-batches 16 --distill --seed 1
c16-lr5e-5 --calib-batches 16 --lr 5e-5
c16-kd-w0.3 --calib-batches 16 --distill --distill-weight 0.3
c16-kd-iter2 --calib-batches 16 --distill --steps 2 --recovery-steps 50
unpruned-1ep --target-macs 0.99"
list=$( [ -n "$recipes" ] && cat "$recipes" || echo "$default_recipes")
run_recipe() {
  local name=$1 left=$(( limit - 30 - ($(date +%s) - start) )) && shift
  timeout -s INT -k 20 "$left" python3 -m edgeprune prune --model deit-tiny --baseline-run "$base" --data "$data" \
    --target-domain "$domain" --seed 0 --target-macs 0.62 --metric hessian --normalization none --compensate \
    --epochs 1 --workers "$workers" $extra "$@" --run "$name" --workspace "$ws" >"$out/$name.log" 2>&1
  echo "$name: exit $? at $(( $(date +%s) - start )) s"
}
export -f run_recipe && export base data domain workers extra ws out limit start
echo "$list" | xargs -P "$lanes" -I{} bash -c 'run_recipe {}'
python3 scripts/summarize_runs.py "$ws" | tee "$out/runs.md"
echo "wall: $(( $(date +%s) - start )) s"
