#!/usr/bin/env bash
# The GPU part of the benchmarks in one command (suite benchmarks/suites/gpu.py). Measured on one H100 (2026-11-27): its
# three main runs take about 10 minutes with start-up and tests (fit 1.7 + 2.4 + 4.3 min), so the default budget stops
# the suite inside one 10-minute call and the same command, given again, finishes it from the last checkpoints.
#   bash benchmarks/gpu.sh                      # records -> benchmarks/results/gpu/, then tables and plots
#   bash benchmarks/gpu.sh --results "$OUT"     # elsewhere (e.g. a folder that is copied back from a lent machine)
#   bash benchmarks/gpu.sh --smoke              # the same runs, tiny, on the CPU (a check of the script itself)
# Options: --smoke, --results DIR, --work-dir DIR, --root DATA_DIR, --budget SECONDS (default 540: the suite is stopped
# then; a second call continues the unfinished runs from their last checkpoints); anything else goes to
# `python -m benchmarks run gpu` (e.g. --only recipe112_s0).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
SMOKE=""; RESULTS=benchmarks/results; WORK=benchmarks/runs; BUDGET=540; ROOT=""; REST=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=--smoke ;;
    --results) RESULTS=$2; shift ;;
    --work-dir) WORK=$2; shift ;;
    --root) ROOT=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    *) REST+=("$1") ;;
  esac
  shift
done
ACCEL=gpu
if [ -n "$SMOKE" ]; then
  ACCEL=cpu
else
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: run with --smoke on a CPU')"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
fi
rc=0
timeout --signal=TERM --kill-after=60 "$BUDGET" "$PY" -m benchmarks run gpu $SMOKE --accelerator "$ACCEL" \
  --results "$RESULTS" --work-dir "$WORK" ${ROOT:+--root "$ROOT"} ${REST[@]+"${REST[@]}"} || rc=$?
if [ "$rc" = 124 ]; then echo "[gpu.sh] stopped after ${BUDGET}s; run the same command again to continue"; fi
"$PY" -m benchmarks table --results "$RESULTS" --markdown
"$PY" -m benchmarks plot --results "$RESULTS" --suite gpu || echo "[gpu.sh] no plots (matplotlib missing?)"
exit "$rc"
