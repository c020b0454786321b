#!/usr/bin/env bash
# Every GPU benchmark once, each under its own time limit, on one CUDA GPU; nothing is downloaded.
# Usage: bash benchmarks/run_gpu.sh OUT_DIR     (logs and JSON figures land in OUT_DIR)
# Everything takes longer than one 10-minute device call: pick parts with ONLY=tests,features,model,infer,train
# (e.g. ONLY=features,model, then ONLY=train); FEATURE_WORKERS, MODEL_ARGS, TRAIN_CASES narrow them further.
# Each DeepSpeed training case runs in its own process: accelerate keeps its DeepSpeed state for the
# life of a process, so a plain run after a ZeRO run in the same process would be a ZeRO run.
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
only=${ONLY:-features,model,infer,train}
case ",$only," in *,tests,*)  # the CUDA-only tests (needs pytest on the machine)
  step tests 180 "$py" -m pytest -q -p no:cacheprovider -m gpu tests;; esac
case ",$only," in *,features,*)
  # Both legs with our default workers, then (same videos, reused) our decode workers alone and our
  # leg with each count in FEATURE_WORKERS: is the decode pool the limit, and does a bigger one help?
  fargs=(--device cuda --model vit-l14 --videos ${FEATURE_VIDEOS:-128} --workdir /tmp/artemis_features_bench)
  step features ${FEATURE_LIMIT:-150} "$py" benchmarks/features.py "${fargs[@]}" --json
  for w in ${FEATURE_WORKERS:-12 15}; do
    step "features-decode-w$w" 60 "$py" benchmarks/features.py "${fargs[@]}" --leg decode --workers "$w"
    step "features-ours-w$w" 60 "$py" benchmarks/features.py "${fargs[@]}" --leg ours --workers "$w"
  done;; esac
case ",$only," in *,model,*)
  step model ${MODEL_LIMIT:-110} "$py" benchmarks/model_gpu.py --device cuda ${MODEL_ARGS:---roi eager,compiled --dtypes bfloat16 --batches 6 --skip-llm} --out "$out/model_gpu.json";; esac
case ",$only," in *,infer,*)
  step infer 130 "$py" benchmarks/infer.py --device cuda --task videorefbench,qa --max-new-tokens 128 --out "$out/infer_gpu.json";; esac
case ",$only," in *,train,*)
  # A case is DTYPE:MODE or DTYPE:MODE:compile (the RoI module torch.compile'd, as train.compile_roi does);
  # TRAIN_PROFILE=1 adds one profiled step to each case (its busiest CUDA kernels land in the log).
  for case in ${TRAIN_CASES:-bfloat16:plain bfloat16:plain:compile float16:zero2 float16:zero2:compile}; do
    IFS=: read -r dtype mode compiled <<<"$case"
    step "train-$dtype-$mode${compiled:+-compile}" ${TRAIN_LIMIT:-150} "$py" benchmarks/train_gpu.py --device cuda \
      --dtypes "$dtype" --modes "$mode" ${compiled:+--compile-roi} ${TRAIN_PROFILE:+--profile} --out "$out/train_${dtype}_${mode}${compiled:+_compile}.json"
  done;; esac
grep '^== ' "$log"
