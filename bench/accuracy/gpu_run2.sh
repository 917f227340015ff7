#!/usr/bin/env bash
# GPU box: final weights (same configs as run 1), a capillary variant with larger patches,
# and 5-fold cross-validation by subject for cones. At most 8 files go back: tarballs.
set -uo pipefail
PY=${PY:-$(command -v python || command -v python3)}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
export AOOCT_SHARED_DATA=${AOOCT_SHARED_DATA:-$PWD/tmp/shared_data}
OUT=${OUT:-/tmp/gpu_out}; W=/tmp/w; mkdir -p $W/ckpt $W/weights $W/capB/ckpt $W/capB/weights "$OUT"
DEVICE=${DEVICE:-cuda}; STEPS_ARG=${TRAIN_STEPS:+--steps $TRAIN_STEPS}
t0=$(date +%s)
for t in cones rpe capillaries nfl; do
  $PY bench/accuracy/train_holdout.py $t $W/ckpt --device $DEVICE --threads 1 $STEPS_ARG > $W/train_$t.log 2>&1 &
done
$PY bench/accuracy/train_holdout.py capillaries $W/capB/ckpt --device $DEVICE --threads 1 --patch 192 --batch 4 $STEPS_ARG > $W/train_capB.log 2>&1 &
FOLDS=${FOLDS-0 1 2 3 4}
for k in $FOLDS; do
  mkdir -p $W/fold$k/ckpt $W/fold$k/weights
  $PY bench/accuracy/train_holdout.py cones $W/fold$k/ckpt --device $DEVICE --threads 1 --fold $k $STEPS_ARG > $W/train_fold$k.log 2>&1 &
done
wait; echo "training done $(( $(date +%s) - t0 )) s" | tee $OUT/summary.txt
for t in cones rpe capillaries nfl; do
  $PY bench/accuracy/evaluate_task.py $t $W/ckpt $W/weights 2 > $W/eval_$t.log 2>&1 &
done
$PY bench/accuracy/evaluate_task.py capillaries $W/capB/ckpt $W/capB/weights 2 > $W/eval_capB.log 2>&1 &
wait; echo "main eval done $(( $(date +%s) - t0 )) s" | tee -a $OUT/summary.txt
(cd $W && tar czf $OUT/weights.tar.gz weights capB/weights ckpt/*.history.json train_*.log eval_*.log)
for k in $FOLDS; do
  $PY bench/accuracy/evaluate_task.py cones $W/fold$k/ckpt $W/fold$k/weights 3 > $W/eval_fold$k.log 2>&1 &
done
wait; echo "folds eval done $(( $(date +%s) - t0 )) s" | tee -a $OUT/summary.txt
[ -n "$FOLDS" ] && (cd $W && tar czf $OUT/folds.tar.gz fold*/weights/*.results.json eval_fold*.log)
sha256sum $W/weights/* | tee -a $OUT/summary.txt
export AOOCT_WEIGHTS_DIR=$W/weights
$PY bench/gpu_inference.py --repeats 20 > $OUT/gpu_inference.log 2>&1; echo "gpu_inference rc=$?" >> $OUT/gpu_inference.log
[ -n "${PHANTOM-1}" ] && $PY bench/accuracy/phantom_cones.py --end-to-end --out $OUT/phantom.json > $OUT/phantom.log 2>&1
echo "all done $(( $(date +%s) - t0 )) s" | tee -a $OUT/summary.txt
