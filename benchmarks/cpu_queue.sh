#!/usr/bin/env bash
# The long CPU runs, in the order they are worth most, as one resumable command:
#   nohup bash benchmarks/cpu_queue.sh > benchmarks/runs/cpu_queue.log 2>&1 &
# Every step is a harness call, which skips finished runs and resumes a killed one from its last checkpoint, so the
# same command, given again in a later session, continues where the last one stopped. After each finished step the
# tables and plots are rebuilt from the records.
# On this 2-core machine one 48-px FER+ run of 30 epochs takes about 45 minutes (CE) and ASM about twice that.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}

step() {  # suite, run names...
  echo "[queue] $(date -u +%FT%TZ) $*"
  "$PY" -m benchmarks run "$@" || echo "[queue] $1 $2...: failed (see its fit.log); going on"
  "$PY" -m benchmarks table >/dev/null && "$PY" -m benchmarks plot >/dev/null || true
}

step ferplus_recipe --only soft_votes_s0              # the recipe candidate for >= 85 %
step ferplus_noise30 --only ce_s0 asm_s0 ce2_s0       # CE memorises 30 % noise; ASM and its two-network control
step ferplus_recipe --only recipe_s0                  # the majority-label recipe every comparison uses
step fer2013_realnoise --only ce_s0 asm_s0            # real noise with known ground truth
step ferplus_noise30 --only ce_s1 asm_s1 ce2_s1       # second seed
step ferplus_clean                                    # ARM vs avg at a 6x6 map (96 px: about 4x the 48-px cost)
step ferplus_noise10 --only ce_s0 ce2_s0 asm_s0
echo "[queue] $(date -u +%FT%TZ) done"
