#!/usr/bin/env bash
# Issue 10's real-data sweep on a device machine (one GPU, no registry): DeiT-Tiny on PACS, every domain held out
# in turn, metrics hessian and l2, 0.6 of the MACs kept, 1 baseline epoch and 1 fine-tune epoch per cell (STEPS caps
# the steps of each epoch; "full" = whole epochs), target ort-cpu on the device's CPU. The data and weights travel
# packed by scripts/pack_dg_data.py (.device/), the missing Python packages as wheels (.whl/).
#   [DATA=.device/PACS WEIGHTS=.device/deit_tiny_fp16.safetensors WORKERS=12] scripts/device_pacs_sweep.sh [STEPS] [TIME_LIMIT_S]
# Writes the sweep's report (results.csv/json, report.md, pareto.png/json) and sweep.json to $OUT (or ./device-out).
set -uo pipefail
steps=${1:-full} limit=${2:-420}
data=${DATA:-.device/PACS} weights=${WEIGHTS:-.device/deit_tiny_fp16.safetensors} workers=${WORKERS:-12}
out=${OUT:-device-out} && mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
export PYTHONUNBUFFERED=1
budget=() && [ "$steps" != full ] && budget=(--max-steps-per-epoch "$steps")
nproc; nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null
python3 -c "import torch, timm, onnxruntime; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'timm', timm.__version__, 'ort', onnxruntime.__version__)"
start=$(date +%s)
timeout -s INT -k 30 "$limit" python3 -m edgeprune sweep --name pacs-deit-tiny --workspace edgeprune-runs/device --models deit-tiny \
  --data "$data" --domains all --metrics hessian,l2 --target-macs 0.6 --baseline-epochs 1 --epochs 1 \
  "${budget[@]}" --workers "$workers" --set checkpoint="$weights" --retry-failed 2>&1 | tee "$out/sweep.log"
echo "sweep wall time: $(( $(date +%s) - start )) s (limit $limit s)" | tee -a "$out/sweep.log"
python3 -m edgeprune report edgeprune-runs/device/sweeps/pacs-deit-tiny --workspace edgeprune-runs/device 2>&1 | tee "$out/report.log"
cp edgeprune-runs/device/sweeps/pacs-deit-tiny/{sweep.json,results.csv,report.md,pareto.png,pareto.json} "$out"/ 2>/dev/null
ls -la "$out"
