#!/usr/bin/env bash
# CPU speed benchmarks, one at a time (the machine has 2 cores). Each prints its table;
# recorded figures live in bench/RESULTS.md and bench/results_<area>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
for script in bench_io.py bench_phantom.py bench_preprocessing.py bench_denoise.py bench_metrics.py \
              bench_inference.py bench_ui.py bench_pipeline.py; do
  echo "== bench/$script"
  "$PY" "bench/$script"
done
