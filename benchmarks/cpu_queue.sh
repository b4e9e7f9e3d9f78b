#!/usr/bin/env bash
# The long CPU runs, in the order they are worth most, as one resumable command:
#   nohup bash benchmarks/cpu_queue.sh >> benchmarks/runs/cpu_queue.log 2>&1 &
# Every step is a harness call, which skips finished runs and resumes a killed one from its last checkpoint, so the
# same command, given again in a later session, continues where the last one stopped. After each finished step the
# tables and plots are rebuilt from the records.
#
# Most phases run two lanes side by side, one thread each (logs benchmarks/runs/cpu_queue_{a,b}.log): on this 2-core
# machine two 1-thread processes train 1.29x the images per second of one 2-thread process (benchmarks/cpu_lanes.py,
# benchmarks/results/cpu_lanes.json). Each lane's run takes longer than alone, so every record keeps how many runs
# shared the CPU (`cpu_lanes`) and the tables mark those minutes. A run whose time is itself a result (the recipe's
# "within 2 hours") runs alone, with every thread. `bash benchmarks/cpu_queue.sh a1|b1|solo|a2|b2` runs one part.
# Alone, one 48-px FER+ CE run of 30 epochs takes about 55 minutes here, ASM and LA-Net about twice that.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
mkdir -p benchmarks/runs

step() {  # suite, run names...
  echo "[queue] $(date -u +%FT%TZ) $*"
  "$PY" -m benchmarks run "$@" || echo "[queue] $1 $2...: failed (see its fit.log); going on"
  # the two lanes rebuild the same README and tables: one at a time
  flock benchmarks/runs/.tables.lock sh -c "'$PY' -m benchmarks table >/dev/null && '$PY' -m benchmarks plot >/dev/null" || true
}

# done: ferplus_recipe soft_votes_s0 (83.98 %), ferplus_noise30 ce_s0 asm_s0, ferplus_omni10 (all five)
# Phase 1, two lanes: ASM's two-network control beside ASM with the paper's fixed thresholds
lane_a1() { step ferplus_noise30 --only ce2_s0; }
lane_b1() { step ferplus_noise30 --only asm_fixed_s0; }
# Phase 2, alone with every thread: the >= 85 % recipe goal, whose "within 2 hours" is itself a result
solo() {
  step ferplus_recipe --only soft_votes_flip_epochs60_s0  # soft votes, 60 epochs, flip TTA, channels_last (~2 h)
}
# Phase 3, two lanes
lane_a2() {
  step ferplus_pasm                                     # PASM generations 0, 1, 2 and the random-position control
  # LA-Net needs the landmark cache: ferkit landmarks extract --dataset fer2013 --root ../shared/data/fer2013 \
  #   --split all --backend dlib --out ~/.cache/ferkit/landmarks/   (see ferkit/methods/lanet/README.md)
  step ferplus_noise30 --only ce_lanet_s0 lanet_s0      # LA-Net vs its own CE at 30 % noise
  step fer2013_realnoise --only lanet_s0                # LA-Net on real noise
  step ferplus_clean                                    # ARM vs avg at a 6x6 map (output stride 8: ~2x the 48-px step)
}
lane_b2() {
  step fer2013_realnoise --only ce_s0 asm_s0            # real noise with known ground truth
  step ferplus_noise30 --only ce_s1 asm_s1 ce2_s1 asm_fixed_s1  # second seed
  step ferplus_noise10 --only ce_s0 ce2_s0 asm_s0
  step ferplus_recipe --only recipe_s0                  # the majority-label recipe
}

lanes() {  # two functions side by side, one thread each
  echo "[queue] $(date -u +%FT%TZ) $1 beside $2, 1 thread each; logs benchmarks/runs/cpu_queue_{a,b}.log"
  ( export FERKIT_BENCH_LANES=2 OMP_NUM_THREADS=1; "$1" >> benchmarks/runs/cpu_queue_a.log 2>&1 ) &
  ( export FERKIT_BENCH_LANES=2 OMP_NUM_THREADS=1; "$2" >> benchmarks/runs/cpu_queue_b.log 2>&1 ) &
  wait
}

case "${1:-all}" in
  all) lanes lane_a1 lane_b1; solo; lanes lane_a2 lane_b2 ;;
  a1|b1|a2|b2) "lane_$1" ;;
  solo) solo ;;
  *) echo "usage: bash benchmarks/cpu_queue.sh [all|a1|b1|solo|a2|b2]" >&2; exit 2 ;;
esac
echo "[queue] $(date -u +%FT%TZ) done"
