#!/usr/bin/env bash
# Train the four tasks in parallel on a CUDA box (same code and configs as `aooct train`),
# then calibrate on training images, evaluate held-out subjects, export ONNX + model
# cards, run the phantom benchmark and the GPU agreement/throughput check.
# Usage (repo root): OUT=/tmp/out bash bench/accuracy/gpu_train_all.sh
#   DEVICE=cpu TRAIN_STEPS=2 for a local smoke run.
set -uo pipefail
PY=${PY:-$(command -v python || command -v python3)}
export PYTHONPATH=$PWD
export AOOCT_SHARED_DATA=${AOOCT_SHARED_DATA:-$PWD/tmp/shared_data}
OUT=${OUT:-/tmp/gpu_out}
DEVICE=${DEVICE:-cuda}
STEPS_ARG=${TRAIN_STEPS:+--steps $TRAIN_STEPS}
mkdir -p "$OUT/ckpt" "$OUT/weights"
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true) > "$OUT/env.txt" 2>&1
$PY -c "import torch, onnxruntime, scipy, skimage, tifffile; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ort', onnxruntime.__version__, onnxruntime.get_available_providers(), 'cpus', __import__('os').cpu_count())" >> "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
t0=$(date +%s)
for t in cones rpe capillaries nfl; do
  $PY bench/accuracy/train_holdout.py $t "$OUT/ckpt" --device "$DEVICE" --threads 3 $STEPS_ARG > "$OUT/train_$t.log" 2>&1 &
done
wait
echo "training done in $(( $(date +%s) - t0 )) s"; tail -n 2 "$OUT"/train_*.log
for t in cones rpe capillaries nfl; do
  $PY bench/accuracy/evaluate_task.py $t "$OUT/ckpt" "$OUT/weights" 4 > "$OUT/eval_$t.log" 2>&1 &
done
wait
echo "evaluation done at $(( $(date +%s) - t0 )) s"
for t in cones rpe capillaries nfl; do grep -A3 '"network"' "$OUT/eval_$t.log" | head -4; tail -n 3 "$OUT/eval_$t.log"; done
export AOOCT_WEIGHTS_DIR="$OUT/weights"
$PY bench/accuracy/phantom_cones.py --end-to-end --out "$OUT/phantom.json" > "$OUT/phantom.log" 2>&1
tail -n 2 "$OUT/phantom.log"
$PY bench/gpu_inference.py --repeats 20 > "$OUT/gpu_inference.log" 2>&1
echo "gpu_inference rc=$?" >> "$OUT/gpu_inference.log"
cat "$OUT/gpu_inference.log"
echo "all done at $(( $(date +%s) - t0 )) s"
