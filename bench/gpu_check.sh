#!/usr/bin/env bash
# Every GPU test and benchmark in one call on a CUDA machine (H100/H200). The GPU box has
# torch, CuPy, scikit-image, onnxruntime and pytest but not Dagster: only aooct_core/ and ml/
# are imported. Usage from the repository root:
#     OUT=/tmp/gpu_out bash bench/gpu_check.sh
# Results land in $OUT (one text file per step); the exit status is non-zero if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=${PY:-python3}
status=0
step() {  # step NAME SECONDS CMD...
  local name=$1 limit=$2; shift 2
  echo "== $name"
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  tail -n 40 "$OUT/$name.txt"
  echo "== $name rc=$rc"
  [ $rc -eq 0 ] || status=1
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
# 1. Tests parametrized over the devices present (cpu + cuda here).
step pytest_gpu 180 $PY -m pytest -q -p no:cacheprovider -m "not slow" -k "cuda or gpu or device" \
  tests/core/test_preprocessing_unit.py tests/ml/test_inference.py tests/ml/test_models.py
# 2. Preprocessing: CPU/GPU equality on a phantom, transfers, full 512^3 preprocessing.
step gpu_preprocessing 240 $PY bench/gpu_preprocessing.py --iters 5
# 3. Segmentation: CUDA (bf16/fp32) vs CPU agreement and throughput.
step gpu_inference 120 $PY bench/gpu_inference.py --repeats 20
# 4. Host part of the lattice step on this machine's CPU (it adds to the GPU pipeline time).
step lattice_host 60 $PY bench/bench_lattice.py
exit $status
