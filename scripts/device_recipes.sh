#!/usr/bin/env bash
# Issue 8's recovery recipes on a device machine (one GPU, no registry), several at once: DeiT-Tiny on PACS, one
# domain held out, 0.62 of the MACs kept (Hessian, no normalisation, compensation), 1 fine-tune epoch after
# pruning, every recipe from the same fine-tuned baseline (1 epoch, reused when the workspace has it). The data and
# weights are packed by scripts/pack_dg_data.py (.device/) and travel as one tarball, the images' file-system slack
# being over the transfer limit (`tar -czf .devpack/pacs.tgz -C .device PACS`, weights copied beside it, unpacked
# here when .device/ is missing); the missing Python packages travel as wheels (.whl/).
# A lossless copy (`pack_dg_data.py --lossless`, 142 MB for PACS) is over one call's limit: send it in several calls
# (a domain or two each), each copying what came into a folder outside the checkout (`cp -r .device/PACS/* /tmp/PACS/`),
# since a later call removes the carried paths it does not name; then DATA=/tmp/PACS.
#   [DATA=.device/PACS WEIGHTS=.device/deit_tiny_fp16.safetensors LANES=2 WORKERS=5 SEEDS="0 1 2" \
#    EXTRA="flags for every run"] scripts/device_recipes.sh DOMAIN [TIME_LIMIT_S] [RECIPES_FILE]
# With SEEDS, every seed has its own baseline (base-DOMAIN-sSEED) and every recipe runs once per seed (NAME-sSEED).
# Two lanes with 6 torch threads each suit a 16-core machine: four lanes with torch's default threads thrashed
# (one recipe took 356 s instead of ~50 s); six lanes of 2 threads and 3 workers took 92-122 s a recipe on an H200.
# RECIPES_FILE: one recipe per line, "name extra prune flags..." (default: the list below). Writes runs.md (one
# table over the finished runs) and each run's log to $OUT (or ./device-out).
set -uo pipefail
domain=${1:?domain} limit=${2:-480} recipes=${3:-}
data=${DATA:-.device/PACS} weights=${WEIGHTS:-.device/deit_tiny_fp16.safetensors}
lanes=${LANES:-2} workers=${WORKERS:-5} extra=${EXTRA:-} ws=${WS:-edgeprune-runs/recipes} seeds=${SEEDS:-0}
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
make_baseline() {
  local base="base-$domain-s$1"
  [ -d "$ws/$base/baseline" ] || timeout -s INT -k 20 "$limit" python3 -m edgeprune prune --model deit-tiny \
    --checkpoint "$weights" --data "$data" --target-domain "$domain" --seed "$1" --target-macs 0.62 \
    --baseline-epochs 1 --epochs 0 --workers "$workers" $extra --run "$base" --workspace "$ws" >"$out/$base.log" 2>&1 \
    || { tail -20 "$out/$base.log"; return 1; }
}
export -f make_baseline && export domain weights data limit workers extra ws out
echo $seeds | tr ' ' '\n' | xargs -P "$lanes" -I{} bash -c 'make_baseline {}' || exit 1
echo "baselines: $(( $(date +%s) - start )) s"
default_recipes="def
b16 --batch-size 16 --calib-batches 32
tok10b16 --distill-tokens 10 --batch-size 16 --calib-batches 32
tok10b8 --distill-tokens 10 --batch-size 8 --calib-batches 64
tok30b16 --distill-tokens 30 --batch-size 16 --calib-batches 32
tok10b16lr2 --distill-tokens 10 --batch-size 16 --calib-batches 32 --lr 2e-4
tok10b16avg --distill-tokens 10 --batch-size 16 --calib-batches 32 --average-from 0.5
tok10b16w08 --distill-tokens 10 --batch-size 16 --calib-batches 32 --distill-weight 0.8
tok10b16ms08 --distill-tokens 10 --batch-size 16 --calib-batches 32 --max-share 0.8
cost --normalization cost
costb16 --normalization cost --batch-size 16 --calib-batches 32
tok10b16cost --normalization cost --distill-tokens 10 --batch-size 16 --calib-batches 32"
list=$( [ -n "$recipes" ] && cat "$recipes" || echo "$default_recipes")
run_recipe() {
  local seed=$1 name=$2-s$1 left=$(( limit - 30 - ($(date +%s) - start) )) && shift 2
  timeout -s INT -k 20 "$left" python3 -m edgeprune prune --model deit-tiny --baseline-run "base-$domain-s$seed" \
    --data "$data" --target-domain "$domain" --seed "$seed" --target-macs 0.62 --metric hessian --normalization none \
    --compensate --epochs 1 --workers "$workers" $extra "$@" --run "$name" --workspace "$ws" >"$out/$name.log" 2>&1
  echo "$name: exit $? at $(( $(date +%s) - start )) s"
}
export -f run_recipe && export start
for seed in $seeds; do echo "$list" | sed "s/^/$seed /"; done | xargs -P "$lanes" -I{} bash -c 'run_recipe {}'
python3 scripts/summarize_runs.py "$ws" | tee "$out/runs.md"
echo "wall: $(( $(date +%s) - start )) s"
