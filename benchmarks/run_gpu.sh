#!/usr/bin/env bash
# Every GPU benchmark once, each under its own time limit, on one CUDA GPU; nothing is downloaded.
# Usage: bash benchmarks/run_gpu.sh OUT_DIR     (logs and JSON figures land in OUT_DIR)
set -u
py=${PYTHON:-python3}
out=${1:?usage: run_gpu.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
log="$out/gpu_log.txt"
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv;
  "$py" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"; } >>"$log" 2>&1
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s): $*" >>"$log"
  local start=$SECONDS
  timeout -k 5 "$limit" "$@" >>"$log" 2>&1
  echo "== $name rc=$? in $((SECONDS - start))s" >>"$log"
}
step features 120 "$py" benchmarks/features.py --device cuda --model vit-l14 --workers 12 --videos 32 --json
step model 110 "$py" benchmarks/model_gpu.py --device cuda --out "$out/model_gpu.json"
step infer 130 "$py" benchmarks/infer.py --device cuda --task videorefbench,qa --max-new-tokens 128 --out "$out/infer_gpu.json"
step train 190 "$py" benchmarks/train_gpu.py --device cuda --out "$out/train_gpu.json"
grep '^== ' "$log"
