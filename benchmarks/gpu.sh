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
#
# A lent machine with no package index and a small upload (benchmarks/gpu_prepare.sh makes both folders here):
#   --wheels DIR   install the wheels in DIR (the packages its image lacks) into <work-dir>/site, without an index
#   --packed DIR   the FER+ data packed by `python -m benchmarks.device_data pack`: unpacked into <work-dir>/fer2013
#                  and used as --root
#   --parallel     each run named after --only in its own process, all at once (runs that leave the GPU idle, e.g.
#                  ferplus_clean's pair at batch 64, take about the time of one); records mark them as sharing
#                  the machine (cpu_lanes)
#   --suite NAME   run that suite's runs (named after --only) on the GPU instead of the `gpu` suite's, exactly as the
#                  CPU queue would but for the accelerator and the loader workers (--workers N, default the cores
#                  shared out between the parallel runs; overrides after -- only with --smoke): their records are that
#                  suite's own; bring them in with `python -m benchmarks adopt --from <copied-back results> NAME/RUN`
# The command used for the ARM vs average-pooling seed on a lent machine (records come back under $OUT):
#   bash benchmarks/gpu.sh --wheels .whl --packed .gpudata --parallel --results "$OUT/res" --work-dir /tmp/runs \
#     --budget 480 --only avg_clean_s1 arm_clean_s1
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
SMOKE=""; RESULTS=benchmarks/results; WORK=benchmarks/runs; BUDGET=540; ROOT=""; WHEELS=""; PACKED=""; PARALLEL=""
SUITE=gpu; WORKERS=""
ONLY=(); REST=(); OVERRIDES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=--smoke ;;
    --results) RESULTS=$2; shift ;;
    --work-dir) WORK=$2; shift ;;
    --root) ROOT=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    --wheels) WHEELS=$2; shift ;;
    --packed) PACKED=$2; shift ;;
    --parallel) PARALLEL=1 ;;
    --suite) SUITE=$2; shift ;;
    --workers) WORKERS=$2; shift
      [[ "$WORKERS" =~ ^[0-9]+$ ]] || { echo "[gpu.sh] --workers takes a number of loader processes, got '$WORKERS'" >&2; exit 2; } ;;
    --only)
      while [ $# -gt 1 ] && [[ "$2" != --* ]]; do ONLY+=("$2"); shift; done ;;
    --) shift; OVERRIDES+=("$@"); break ;;  # ferkit overrides for every run, as after `python -m benchmarks run ... --`
    *) REST+=("$1") ;;
  esac
  shift
done
if [ "$SUITE" = gpu ] && [ -n "$WORKERS" ]; then
  echo "[gpu.sh] --workers is for --suite NAME; the gpu suite sets its runs' loader workers itself" >&2; exit 2
fi
if [ "$SUITE" != gpu ] && [ -z "$SMOKE" ] && [ ${#OVERRIDES[@]} -gt 0 ]; then
  # another suite's records are that suite's own runs (the CPU queue then never trains them), so they must be trained
  # exactly as the suite says; a variant belongs in the gpu suite (benchmarks/suites/gpu.py)
  echo "[gpu.sh] --suite $SUITE takes no overrides after -- (its records would stand for runs trained otherwise)" >&2
  exit 2
fi
if [ -n "$WHEELS" ]; then
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "[gpu.sh] --wheels $WHEELS: no .whl files there" >&2; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$WHEELS"/*.whl
  export PYTHONPATH="$PYTHONPATH:$(cd "$WORK/site" && pwd)"  # after the repository and before nothing else: the
  echo "[gpu.sh] installed $(ls "$WHEELS"/*.whl | wc -l) wheels into $WORK/site"  # image's own packages still win
fi
if [ -n "$PACKED" ]; then
  [ -n "$ROOT" ] && { echo "[gpu.sh] give --packed or --root, not both" >&2; exit 2; }
  ROOT="$WORK/fer2013"
  [ -f "$ROOT/fer2013.csv" ] || "$PY" -m benchmarks.device_data unpack --src "$PACKED" --out "$ROOT"
fi
ACCEL=gpu
if [ -n "$SMOKE" ]; then
  ACCEL=cpu
else
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: run with --smoke on a CPU')"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
fi
# found, not imported (importing them takes ~10 s of the lent machine's time; the runs import them anyway)
missing=$("$PY" -c "import importlib.util as u
print(' '.join(m for m in ('albumentations', 'jsonargparse', 'lightning', 'timm', 'torchmetrics') if u.find_spec(m) is None))") \
  || missing="(python failed)"
if [ -n "$missing" ]; then
  echo "[gpu.sh] packages ferkit needs are missing: $missing; carry their wheels (--wheels; see benchmarks/gpu_prepare.sh)" >&2
  exit 3
fi
if [ "$SUITE" != gpu ]; then  # the gpu suite sets its own workers; another suite's runs get a share of the cores
  [ ${#ONLY[@]} -gt 0 ] || { echo "[gpu.sh] --suite $SUITE needs the runs named after --only" >&2; exit 2; }
  lanes=1; [ -n "$PARALLEL" ] && lanes=${#ONLY[@]}
  [ -n "$WORKERS" ] || WORKERS=$(( $(nproc) / lanes - 1 )); [ "$WORKERS" -ge 0 ] || WORKERS=0
  OVERRIDES=(--data.num_workers "$WORKERS" ${OVERRIDES[@]+"${OVERRIDES[@]}"})
fi
[ ${#OVERRIDES[@]} -gt 0 ] && OVERRIDES=(-- "${OVERRIDES[@]}")
run() {  # the harness under the time budget; extra arguments name the runs
  timeout --signal=TERM --kill-after=60 "$BUDGET" "$PY" -m benchmarks run "$SUITE" $SMOKE --accelerator "$ACCEL" \
    --results "$RESULTS" --work-dir "$WORK" ${ROOT:+--root "$ROOT"} ${REST[@]+"${REST[@]}"} "$@" \
    ${OVERRIDES[@]+"${OVERRIDES[@]}"}
}
rc=0
if [ -n "$PARALLEL" ]; then
  [ ${#ONLY[@]} -gt 0 ] || { echo "[gpu.sh] --parallel needs the runs named after --only" >&2; exit 2; }
  mkdir -p "$WORK"
  pids=()
  for name in "${ONLY[@]}"; do
    FERKIT_BENCH_LANES=${#ONLY[@]} run --only "$name" > "$WORK/gpu_$name.log" 2>&1 &
    pids+=($!)
    echo "[gpu.sh] $name: started (log $WORK/gpu_$name.log)"
  done
  for i in "${!pids[@]}"; do
    r=0; wait "${pids[$i]}" || r=$?
    tail -n 2 "$WORK/gpu_${ONLY[$i]}.log"
    [ "$r" = 0 ] || rc=$r
  done
else
  run ${ONLY[@]+--only "${ONLY[@]}"} || rc=$?
fi
if [ "$rc" = 124 ]; then echo "[gpu.sh] stopped after ${BUDGET}s; run the same command again to continue"; fi
"$PY" -m benchmarks table --results "$RESULTS" --markdown
"$PY" -m benchmarks plot --results "$RESULTS" --suite "$SUITE" || echo "[gpu.sh] no plots (matplotlib missing?)"
exit "$rc"
