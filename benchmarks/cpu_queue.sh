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
#
# A session on this machine lasts 3 hours, and the next session may get a new machine without the run folders (this
# happened on 2026-11-27: two runs 7 and 10 epochs in were lost). `--until WHEN` (any time `date -d` reads: 19:20,
# "150 minutes"; a clock time already past means that time tomorrow) makes each worker skip the steps that would not finish by then, from the minutes each step is
# expected to take in a lane (the number before each step below: measured on the AMD EPYC machine where a run of that
# kind has finished, otherwise scaled from its measured step cost; for a run killed part-way, only its epochs left, at
# the run's own pace where that is slower, by `python -m benchmarks.status expected`), and take the next one that fits.
# The Intel Xeon 2-core machine of 2026-11-28 took 2.5-2.7x as long per step (benchmarks/results/recipe_speed_xeon.json),
# and since ferkit computes its tiny-map convolutions on the AMX tiles (SmallMapConv2d) about 2.1x (the majority-label
# recipe's epochs beside another run: median 4.45 minutes there, 2.13 on the AMD EPYC): give `--pace 2.1` there (every
# estimate this machine has not measured is scaled by it; a run killed part-way is timed at its own pace instead).
# Without a pace, a 165-minute step was started with 167 minutes left on that machine, where it needed about 7 hours.
#   nohup bash benchmarks/cpu_queue.sh two --until 19:20 >> benchmarks/runs/cpu_queue.log 2>&1 &
#   nohup bash benchmarks/cpu_queue.sh two --until 22:28 --pace 2.1 --fill >> benchmarks/runs/cpu_queue.log 2>&1 &
# `--fill` (with `--until`): a worker left with no step that fits then takes the skipped steps anyway, instead of
# idling to the end of the session: runs already begun (at least one finished epoch) first, then the others, each
# group the one expected to end soonest first (list order among equals). Begun runs go first whatever their estimate:
# a run's own pace is read from its epochs' times, which pauses and slower code once inflated, and a fresh run
# preferred to it leaves one more run half done. Such a run is stopped with the session and continues from its last
# checkpoint (saved every epoch) at the next start, so it costs at most the epoch in progress; where the next session
# may start on a new machine, its progress is lost with the run folder, as an idle lane's would be.
# Steps longer than a session (over ~165 lane minutes) finish only where the machine is kept between sessions or
# alone with every thread (`one`, about 0.65x the lane minutes).
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
  # one find over every process's open files (a readlink per descriptor took over 30 s on a loaded machine)
  mapfile -t pids < <(find /proc/[0-9]*/fd -maxdepth 1 -lname "$lockfile" 2>/dev/null | cut -d/ -f3 | sort -u \
                      | grep -vx "$$")
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

# done: ferplus_recipe soft_votes_s0 (83.98 %), soft_votes_flip_epochs60_s0 (85.13 %); ferplus_noise30 ce_s0 asm_s0
# ce2_s0 asm_fixed_s0 ce_lanet_s0 lanet_s0; ferplus_pasm gen0_s0 gen1_s0 gen2_s0 random1_s0; fer2013_realnoise ce_s0
# asm_s0 ce_lanet_s0 lanet_s0 (69.49 %); ferplus_omni10 (all); ferplus_clean arm_s0 (83.51 %) avg_s0 (84.27 %);
# ferplus_noise30 lanet_align_s0 (78.21 %); ferplus_clean arm_s1 (83.51 %) avg_s1 (83.06 %), trained on a lent GPU and
# adopted (`python -m benchmarks adopt gpu/arm_clean_s1 ferplus_clean/arm_s1`); ferplus_recipe soft_votes_flip_s0
# (84.52 %) soft_votes_affine_s0 (83.06 %) recipe_s0 (83.41 %); ferplus_noise30 ce_lanet_s1 (75.45 %) lanet_m097_s0
# (77.64 %) lanet_s1 (78.02 %) ce_s1 (73.71 %); ferplus_noise10 ce_s0 (78.56 %); ferplus_recipe epochs15_s0 (81.16 %);
# ferplus_noise30 asm_s1 (75.71 %); ferplus_noise10 ce_lanet_s0 (78.88 %); ferplus_recipe no_smoothing_s0 (82.68 %);
# fer2013_realnoise ce_s1 (66.88 %); ferplus_recipe fp32_s0 (82.59 %), epochs45_s0 (82.94 %); fer2013_realnoise
# ce_lanet_s1 (67.96 %); ferplus_noise30 ce2_s1 (75.04 %);
# ferplus_noise10 lanet_s0 (81.22 %), ferplus_noise10 ce2_s0 (79.13 %); fer2013_realnoise lanet_s1 (69.46 %);
# ferplus_noise10 asm_s0 (78.91 %); fer2013_realnoise asm_s1 (69.68 %)
# Each step: expected lane minutes, then the harness's arguments.
STEPS=(
  "150 ferplus_clean --only arm_s0"                # ARM vs avg at a 6x6 map (output stride 8: ~2x the 48-px step);
  "150 ferplus_clean --only avg_s0"                #   side by side in the two lanes, so both pay the same sharing
  "165 fer2013_realnoise --only lanet_s0"          # LA-Net on real noise, against its own CE (2.2x CE_lanet's step)
  # LA-Net needs the landmark cache: ferkit landmarks extract --dataset fer2013 --root ../shared/data/fer2013 \
  #   --split all --backend dlib --out ~/.cache/ferkit/landmarks/   (about 5 minutes; see ferkit/methods/lanet/README.md)
  "165 ferplus_noise30 --only lanet_align_s0"      # LA-Net with class-prior alignment: the rare classes the memory lost
  "165 ferplus_noise30 --only lanet_m097_s0"       # LA-Net with a slower label memory (0.97): rare classes' labels kept
  "80 ferplus_recipe --only soft_votes_flip_s0"    # the recipe at 30 epochs: what its second 30 epochs buy
  "85 fer2013_realnoise --only ce_lanet_s0"        # LA-Net's own CE on real noise
  "80 ferplus_noise30 --only ce_lanet_s1"          # second seed of LA-Net vs its CE (the 30 % gap with p = 0.001)
  "165 ferplus_noise30 --only lanet_s1"
  "95 ferplus_noise30 --only ce_s1"                # second seeds of the 30 % comparison
  "190 ferplus_noise30 --only asm_s1"               # ASM beside another run: 4.4 min per warm-up epoch, 7.1 per mining epoch
  # the 10 % rows (one seed: the issue asks them reported), before the last, longest second seed
  "95 ferplus_noise10 --only ce_s0"
  "190 ferplus_noise10 --only asm_s0"
  "80 ferplus_noise10 --only ce_lanet_s0"
  "165 ferplus_noise10 --only lanet_s0"
  "180 ferplus_noise30 --only ce2_s1"              # longer than a session in a lane
  "180 ferplus_noise10 --only ce2_s0"
  "80 ferplus_recipe --only soft_votes_affine_s0"  # augmentation: affine jitter instead of flip + shift only
  "75 ferplus_recipe --only recipe_s0"             # the majority-label recipe
  # what buys accuracy per CPU-minute: one change to the majority-label recipe per run
  "75 ferplus_recipe --only no_smoothing_s0"
  "40 ferplus_recipe --only epochs15_s0"
  "110 ferplus_recipe --only fp32_s0"
  "115 ferplus_recipe --only epochs45_s0"
  "200 ferplus_recipe --only small_input_s0"       # the stem without max-pool: about 2.7x the step cost
  # second seeds of the rest
  "95 fer2013_realnoise --only ce_s1"
  "190 fer2013_realnoise --only asm_s1"
  "165 fer2013_realnoise --only lanet_s1"
  "85 fer2013_realnoise --only ce_lanet_s1"
  # second seeds of the 10 % comparisons whose seed-0 gaps are small (CE x2 +0.57, ASM: training): the issue asks two
  # seeds for those; LA-Net's 10 % gap (+2.35, p = 0.0002) and its CE come last
  "95 ferplus_noise10 --only ce_s1"
  "190 ferplus_noise10 --only asm_s1"
  "180 ferplus_noise10 --only ce2_s1"
  # PASM's second seed (generation 1 vs generation 0 and vs random erasing: seed-0 gaps -0.63 and -0.57): one step,
  # since generation 1 and the control need generation 0's checkpoint, and a second lane would not wait for it
  "305 ferplus_pasm --only gen0_s1 gen1_s1 random1_s1"
  # studies beyond the issue's table: the fixed-threshold rule again (seed 0 already chose class-relative on validation)
  "280 ferplus_noise30 --only asm_fixed_s1"
  "280 ferplus_noise10 --only asm_fixed_s0"
  "80 ferplus_noise10 --only ce_lanet_s1"
  "165 ferplus_noise10 --only lanet_s1"
)

skipped() {  # remember step index $2, expected to need $1 minutes, for --fill (one shared file under the counter's
  # lock), marked 0 when its run has finished epochs (begun) and 1 when not
  local args=${STEPS[$2]#* } fresh=1
  if [[ "$args" =~ ^([a-z0-9_]+)\ --only\ ([A-Za-z0-9_]+)$ ]] \
     && [ -s "benchmarks/runs/${BASH_REMATCH[1]}/${BASH_REMATCH[2]}/history.jsonl" ]; then
    fresh=0
  fi
  flock benchmarks/runs/.queue.lock sh -c 'echo "$1 $2 $3" >> benchmarks/runs/.queue_skipped' _ "$fresh" "$1" "$2"
}

take_skipped() {  # the remembered begun step expected to end soonest, else the fresh one (list order among equals):
  # its index, removed from the file; fails when none is left
  flock benchmarks/runs/.queue.lock sh -c 'f=benchmarks/runs/.queue_skipped; [ -s "$f" ] || exit 1
    line=$(sort -n -k1,1 -k2,2 -k3,3 "$f" | head -n 1); grep -v -x -F "$line" "$f" > "$f.tmp"; mv "$f.tmp" "$f"
    echo "${line##* }"'
}

claim() {  # the index of the next unclaimed step (a counter file under a lock)
  flock benchmarks/runs/.queue.lock sh -c 'n=$(cat benchmarks/runs/.queue_next 2>/dev/null); n=${n:-0}; echo $((n + 1)) > benchmarks/runs/.queue_next; echo $n'
}

fits() {  # minutes: does a step of that many minutes end before the deadline (always, without one)?
  [ -z "$UNTIL" ] && return 0
  [ $(( $(date +%s) + $1 * 60 )) -le "$UNTIL" ]
}

recorded() {  # "suite --only names...": does every named run have its record (finished)?
  local suite=${1%% *} name
  for name in ${1#*--only }; do
    [ -f "benchmarks/results/$suite/$name.json" ] || return 1
  done
}

worker() {
  local i minutes full args left
  while i=$(claim) && [ "$i" -lt "${#STEPS[@]}" ]; do
    minutes=${STEPS[$i]%% *}; args=${STEPS[$i]#* }
    # a finished step is passed over here: the harness would skip it too, but only after starting Python (seconds), and a
    # start walks a dozen finished steps per worker
    [[ "$args" == *" --only "* ]] && recorded "$args" && continue
    if [ -n "$UNTIL" ]; then
      full=$minutes
      minutes=$(awk -v m="$full" -v p="$PACE" 'BEGIN { printf "%d", int(m * p + 0.999) }')
      if [[ "$args" =~ ^([a-z0-9_]+)\ --only\ ([A-Za-z0-9_]+)$ ]]; then
        # a run killed part-way needs only its epochs left (at its own pace where it has one), plus resume and test
        left=$("$PY" -m benchmarks.status expected benchmarks/runs "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "$full" \
               "$PACE" 2>/dev/null) && [[ "$left" =~ ^[0-9]+$ ]] && minutes=$left
      fi
    fi
    [ "$mode" = one ] && minutes=$(( minutes * 65 / 100 ))  # every thread on one run: ~0.65x the lane minutes
    if ! fits "$minutes"; then
      echo "[queue] $(date -u +%FT%TZ) skip $args: needs ~$minutes min, $(( (UNTIL - $(date +%s)) / 60 )) min left"
      [ "$fill" = 1 ] && skipped "$minutes" "$i"
      continue
    fi
    # shellcheck disable=SC2086  # a step is a suite name and its options, split on spaces on purpose
    step $args
  done
  # --fill: nothing left that ends in time, so keep the core busy with the skipped steps (stopped at the session's end)
  while [ "$fill" = 1 ] && i=$(take_skipped); do
    args=${STEPS[$i]#* }
    [[ "$args" == *" --only "* ]] && recorded "$args" && continue
    echo "[queue] $(date -u +%FT%TZ) fill $args: nothing else fits before the deadline; it continues from its last checkpoint at the next start"
    # shellcheck disable=SC2086
    step $args
  done
}

mode=two
UNTIL=
fill=0
PACE=1
while [ $# -gt 0 ]; do
  case "$1" in
    two|one) mode=$1 ;;
    --until)
      UNTIL=$(date -d "${2:?--until needs a time}" +%s) || exit 2
      # a clock time alone ("01:20") means today, so one already past at a session's start means tomorrow
      if [ "$UNTIL" -le "$(date +%s)" ] && [[ "$2" =~ ^[0-9]{1,2}:[0-9]{2}(:[0-9]{2})?$ ]]; then
        UNTIL=$(date -d "tomorrow $2" +%s)
      fi
      if [ "$UNTIL" -le "$(date +%s)" ]; then
        echo "--until $2 is $(date -u -d "@$UNTIL" +%FT%TZ), already past" >&2; exit 2
      fi
      shift ;;
    --fill) fill=1 ;;
    --pace)
      PACE=${2:?--pace needs a factor}
      if ! [[ "$PACE" =~ ^[0-9]*\.?[0-9]+$ ]] || ! awk -v p="$PACE" 'BEGIN { exit !(p > 0) }'; then
        echo "--pace $PACE: give how many times slower this machine is than the estimates' (a number above 0, e.g. 2.6)" >&2
        exit 2
      fi
      shift ;;
    *) echo "usage: bash benchmarks/cpu_queue.sh [two|one|stop] [--until WHEN [--fill] [--pace FACTOR]]" >&2; exit 2 ;;
  esac
  shift
done
if [ "$fill" = 1 ] && [ -z "$UNTIL" ]; then
  echo "--fill needs --until: without a deadline every step runs in turn anyway" >&2; exit 2
fi
if [ "$PACE" != 1 ] && [ -z "$UNTIL" ]; then
  echo "--pace needs --until: it only scales the estimates that decide what fits before the deadline" >&2; exit 2
fi
[ -n "$UNTIL" ] && echo "[queue] $(date -u +%FT%TZ) steps must end by $(date -u -d "@$UNTIL" +%FT%TZ)"
[ "$PACE" != 1 ] && echo "[queue] $(date -u +%FT%TZ) estimates x$PACE where this machine has not timed the run itself"
: > benchmarks/runs/.queue_skipped   # the skipped steps of this start only

case "$mode" in
  two)
    echo 0 > benchmarks/runs/.queue_next   # finished steps are skipped in seconds, so every start walks the list again
    echo "[queue] $(date -u +%FT%TZ) two workers, 1 thread each; logs benchmarks/runs/cpu_queue_{a,b}.log"
    ( export FERKIT_BENCH_LANES=2 OMP_NUM_THREADS=1; worker >> benchmarks/runs/cpu_queue_a.log 2>&1 ) &
    sleep "${FERKIT_QUEUE_STAGGER:-5}"  # the second worker starts after the first has claimed its step (tests: 1 s)
    ( export FERKIT_BENCH_LANES=2 OMP_NUM_THREADS=1; worker >> benchmarks/runs/cpu_queue_b.log 2>&1 ) &
    wait
    ;;
  one)
    echo 0 > benchmarks/runs/.queue_next
    worker
    ;;
esac
echo "[queue] $(date -u +%FT%TZ) done"
