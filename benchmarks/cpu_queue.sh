#!/usr/bin/env bash
# The long CPU runs, in the order they are worth most, as one resumable command:
#   nohup bash benchmarks/cpu_queue.sh >> benchmarks/runs/cpu_queue.log 2>&1 &
# Every step is a harness call, which skips finished runs and resumes a killed one from its last checkpoint, so the
# same command, given again in a later session, continues where the last one stopped. After each finished step the
# tables and plots are rebuilt from the records.
#
# Two workers run side by side, one thread each (logs benchmarks/runs/cpu_queue_{a,b}.log): on this 2-core machine
# two 1-thread processes train 1.29x the images per second of one 2-thread process (benchmarks/cpu_lanes.py,
# benchmarks/results/cpu_lanes.json). Each worker takes the next step of one shared list when its last one ends, so
# neither core waits for the other. A run beside another takes longer than alone, so every record keeps how many runs
# shared the CPU (`cpu_lanes`) and the tables mark those minutes; where a run's time is itself a result (the recipe's
# "within 2 hours"), time a few epochs alone as well. `bash benchmarks/cpu_queue.sh one` runs the list in one
# process with every thread instead; `bash benchmarks/cpu_queue.sh stop` stops a running queue at once (its runs
# continue from their last checkpoints at the next start; `python -m benchmarks status` shows where each stands).
# Alone, one 48-px FER+ CE run of 30 epochs takes about 55 minutes here, ASM and LA-Net about twice that.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
mkdir -p benchmarks/runs

if [ "${1:-}" = stop ]; then
  # Stop the queue now: its workers and harness processes hold the instance lock file open, and each fit is a child
  # of a harness process. They are killed outright (SIGKILL): a fit may take minutes to honour SIGTERM, and a killed
  # run continues from its last checkpoint when the queue is started again. Costs at most the epochs in progress.
  lockfile="$PWD/benchmarks/runs/.queue.instance"
  pids=()
  for fd in /proc/[0-9]*/fd/*; do
    [ "$(readlink "$fd" 2>/dev/null)" = "$lockfile" ] || continue
    pid=${fd#/proc/}; pid=${pid%%/*}
    [ "$pid" != "$$" ] && pids+=("$pid")
  done
  all=()
  while [ ${#pids[@]} -gt 0 ]; do  # the holders and all their descendants
    all+=("${pids[@]}")
    mapfile -t pids < <(for p in "${pids[@]}"; do pgrep -P "$p"; done | sort -u)
  done
  if [ ${#all[@]} -eq 0 ]; then echo "[queue] no queue is running"; exit 0; fi
  mapfile -t all < <(printf '%s\n' "${all[@]}" | sort -u)
  echo "[queue] $(date -u +%FT%TZ) stopping ${#all[@]} processes: ${all[*]}"
  kill -9 "${all[@]}" 2>/dev/null
  exit 0
fi

# one queue at a time: the lock's file descriptor is inherited by the workers and their harness processes (each of
# which passes its run's own lock on to its fit), so it is held while any of them lives; a second start would put
# 3-4 fits on 2 cores
exec 9> benchmarks/runs/.queue.instance
flock -n 9 || { echo "[queue] another queue (or one of its runs) is still running; not starting a second" >&2; exit 1; }

step() {  # suite, run names...
  echo "[queue] $(date -u +%FT%TZ) $*"
  "$PY" -m benchmarks run "$@" || echo "[queue] $1 $2...: failed (see its fit.log); going on"
  # the two lanes rebuild the same README and tables: one at a time
  flock benchmarks/runs/.tables.lock sh -c "'$PY' -m benchmarks table >/dev/null && '$PY' -m benchmarks plot >/dev/null" || true
}

# done: ferplus_recipe soft_votes_s0 (83.98 %), soft_votes_flip_epochs60_s0 (85.13 %), ferplus_noise30 ce_s0 asm_s0 ce2_s0 asm_fixed_s0, ferplus_pasm gen0_s0 gen1_s0 random1_s0,
# fer2013_realnoise ce_s0, ferplus_omni10 (all five)
STEPS=(
  "ferplus_noise30 --only ce2_s0"                 # ASM's two-network control
  "ferplus_noise30 --only asm_fixed_s0"           # ASM with the paper's fixed thresholds (rare classes mined)
  # PASM: generation 0 (CE), then the student of generation 1 and its random-position control side by side (both
  # read generation 0's checkpoint; `--wait` lets a step whose teacher the other worker is still training wait for
  # it), then generation 2 (teacher: generation 1)
  "ferplus_pasm --only gen0_s0"
  "fer2013_realnoise --only ce_s0"                # real noise with known ground truth
  "ferplus_pasm --wait 120 --only random1_s0"
  "ferplus_pasm --wait 120 --only gen1_s0"
  "ferplus_recipe --only soft_votes_flip_epochs60_s0"  # the >= 85 % goal: soft votes, 60 epochs, flip TTA
  "ferplus_pasm --wait 120 --only gen2_s0"        # claimed after gen1_s0 or the 60-epoch recipe ends: no idle wait
  "fer2013_realnoise --only asm_s0"
  "ferplus_recipe --only soft_votes_affine_s0"    # augmentation: affine jitter instead of flip + shift only
  # one run per step from here, so that the two workers share every comparison
  # LA-Net needs the landmark cache: ferkit landmarks extract --dataset fer2013 --root ../shared/data/fer2013 \
  #   --split all --backend dlib --out ~/.cache/ferkit/landmarks/   (see ferkit/methods/lanet/README.md)
  "ferplus_noise30 --only lanet_s0"               # LA-Net vs its own CE at 30 % noise
  "ferplus_noise30 --only ce_lanet_s0"
  "ferplus_recipe --only soft_votes_flip_s0"      # the recipe at 30 epochs: what its second 30 epochs buy
  "ferplus_clean --only arm_s0"                   # ARM vs avg at a 6x6 map (output stride 8: ~2x the 48-px step)
  "ferplus_clean --only avg_s0"
  "ferplus_noise30 --only asm_s1"                 # second seeds of the 30 % comparison
  "ferplus_noise30 --only ce_s1"
  "ferplus_noise30 --only ce2_s1"
  "fer2013_realnoise --only lanet_s0"             # LA-Net on real noise, against its own CE
  "fer2013_realnoise --only ce_lanet_s0"
  "ferplus_clean --only arm_s1"
  "ferplus_clean --only avg_s1"
  "ferplus_recipe --only recipe_s0"               # the majority-label recipe
  # what buys accuracy per CPU-minute: one change to the majority-label recipe per run
  "ferplus_recipe --only no_smoothing_s0"
  "ferplus_recipe --only epochs15_s0"
  "ferplus_recipe --only fp32_s0"
  "ferplus_recipe --only epochs45_s0"
  "ferplus_recipe --only small_input_s0"          # the stem without max-pool: about 2.7x the step cost
  "ferplus_noise10 --only ce_s0"
  "ferplus_noise10 --only ce2_s0"
  "ferplus_noise10 --only asm_s0"
  "ferplus_noise10 --only lanet_s0"
  "ferplus_noise10 --only ce_lanet_s0"
  # second seeds of the rest
  "ferplus_noise30 --only lanet_s1"
  "ferplus_noise30 --only ce_lanet_s1"
  "fer2013_realnoise --only ce_s1"
  "fer2013_realnoise --only asm_s1"
  "fer2013_realnoise --only lanet_s1"
  "fer2013_realnoise --only ce_lanet_s1"
  # studies beyond the issue's table: the fixed-threshold rule again (seed 0 already chose class-relative on validation)
  "ferplus_noise30 --only asm_fixed_s1"
  "ferplus_noise10 --only asm_fixed_s0"
)

claim() {  # the index of the next unclaimed step (a counter file under a lock)
  flock benchmarks/runs/.queue.lock sh -c 'n=$(cat benchmarks/runs/.queue_next 2>/dev/null); n=${n:-0}; echo $((n + 1)) > benchmarks/runs/.queue_next; echo $n'
}

worker() {
  local i
  while i=$(claim) && [ "$i" -lt "${#STEPS[@]}" ]; do
    # shellcheck disable=SC2086  # a step is a suite name and its options, split on spaces on purpose
    step ${STEPS[$i]}
  done
}

case "${1:-two}" in
  two)
    echo 0 > benchmarks/runs/.queue_next   # finished steps are skipped in seconds, so every start walks the list again
    echo "[queue] $(date -u +%FT%TZ) two workers, 1 thread each; logs benchmarks/runs/cpu_queue_{a,b}.log"
    ( export FERKIT_BENCH_LANES=2 OMP_NUM_THREADS=1; worker >> benchmarks/runs/cpu_queue_a.log 2>&1 ) &
    sleep 5  # the second worker starts after the first has claimed its step
    ( export FERKIT_BENCH_LANES=2 OMP_NUM_THREADS=1; worker >> benchmarks/runs/cpu_queue_b.log 2>&1 ) &
    wait
    ;;
  one)
    echo 0 > benchmarks/runs/.queue_next
    worker
    ;;
  *) echo "usage: bash benchmarks/cpu_queue.sh [two|one|stop]" >&2; exit 2 ;;
esac
echo "[queue] $(date -u +%FT%TZ) done"
