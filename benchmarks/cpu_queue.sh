#!/usr/bin/env bash
# The long CPU runs, in the order they are worth most, as one resumable command:
#   nohup bash benchmarks/cpu_queue.sh > benchmarks/runs/cpu_queue.log 2>&1 &
# Every step is a harness call, which skips finished runs and resumes a killed one from its last checkpoint, so the
# same command, given again in a later session, continues where the last one stopped. After each finished step the
# tables and plots are rebuilt from the records.
# On this 2-core machine one 48-px FER+ CE run of 30 epochs takes about 55 minutes, ASM and LA-Net about twice that.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}

step() {  # suite, run names...
  echo "[queue] $(date -u +%FT%TZ) $*"
  "$PY" -m benchmarks run "$@" || echo "[queue] $1 $2...: failed (see its fit.log); going on"
  "$PY" -m benchmarks table >/dev/null && "$PY" -m benchmarks plot >/dev/null || true
}

step ferplus_recipe --only soft_votes_s0              # the recipe candidate (83.98 %, done)
step ferplus_noise30 --only ce_s0 asm_s0              # CE memorises 30 % noise; ASM (the suite order would train ce2 first)
step ferplus_omni10                                   # Omni with 10 % of the labels: primitive, + mined, + distilled
step ferplus_noise30 --only ce2_s0                   # ASM's two-network control
step ferplus_noise30 --only asm_fixed_s0             # ASM with the paper's fixed thresholds (rare classes mined)
step ferplus_pasm                                     # PASM generations 0, 1, 2 and the random-position control
step ferplus_recipe --only soft_votes_flip_epochs60_s0  # the >= 85 % goal: soft votes, 60 epochs, flip TTA (~2 h)
# LA-Net needs the landmark cache: ferkit landmarks extract --dataset fer2013 --root ../shared/data/fer2013 \
#   --split all --backend dlib --out ~/.cache/ferkit/landmarks/   (see ferkit/methods/lanet/README.md)
step ferplus_noise30 --only ce_lanet_s0 lanet_s0      # LA-Net vs its own CE at 30 % noise
step fer2013_realnoise --only ce_s0 asm_s0            # real noise with known ground truth
step ferplus_recipe --only recipe_s0                  # the majority-label recipe
step ferplus_noise30 --only ce_s1 asm_s1 ce2_s1       # second seed
step ferplus_clean                                    # ARM vs avg at a 6x6 map (96 px: about 4x the 48-px cost)
step ferplus_noise10 --only ce_s0 ce2_s0 asm_s0
echo "[queue] $(date -u +%FT%TZ) done"
