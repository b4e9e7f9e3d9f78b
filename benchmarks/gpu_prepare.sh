#!/usr/bin/env bash
# Here, before the call to a lent GPU machine that has no package index and takes a small upload (64 MiB with the
# repository): the wheels of the packages its image lacks, at this environment's versions, into .whl/, and FER+'s rows
# into .gpudata/ (both ignored by git). Name both in the call's carry, then run there:
#   bash benchmarks/gpu.sh --wheels .whl --packed .gpudata ...
# Options: --root DATA_DIR (default ../shared/data/fer2013), --python-version X.Y of that machine (default 3.12).
# The pack keeps the rows of majority labels with 8 classes, the label mode of every `gpu` suite run (49.3 MiB; all
# modes: 55.0 MiB, too much beside the wheels and the 6 MiB repository).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
ROOT=../shared/data/fer2013; PYVER=3.12
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$2; shift ;;
    --python-version) PYVER=$2; shift ;;
    *) echo "usage: bash benchmarks/gpu_prepare.sh [--root DATA_DIR] [--python-version X.Y]" >&2; exit 2 ;;
  esac
  shift
done
# The lent H100's image (2026-11-28) had no albumentations; its package list names none of the rest either. Each at
# the version installed here, but stringzilla (albucore's need, >= 3.10.4) at 3.12.6: 0.3 MB, where 5.x is 4.2 MB.
PACKAGES=(albumentations albucore simsimd pydantic pydantic_core annotated-types typing-inspection jsonargparse
          docstring_parser typeshed_client)
specs=("stringzilla==3.12.6")
for p in "${PACKAGES[@]}"; do
  v=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$p") \
    || { echo "[gpu_prepare] $p is not installed here: pip install -e '.[dev]' first" >&2; exit 2; }
  specs+=("$p==$v")
done
rm -rf .whl && mkdir .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d .whl "${specs[@]}"
if [ -f .gpudata/pixels.xz ]; then  # packing takes minutes: a pack already there is kept
  echo "[gpu_prepare] .gpudata is there already (delete it to pack again)"
else
  "$PY" -m benchmarks.device_data pack --root "$ROOT" --out .gpudata --label-modes majority --num-classes 8
fi
mib() { echo $(( ($1 + 1048575) / 1048576 )); }
tree=$(git ls-files -z | xargs -0 cat | wc -c)
whl=$(cat .whl/*.whl | wc -c); data=$(cat .gpudata/* | wc -c)
echo "[gpu_prepare] upload: repository $(mib "$tree") MiB + .whl $(mib "$whl") MiB + .gpudata $(mib "$data") MiB" \
     "= $(mib $((tree + whl + data))) MiB (the lent machine takes 64)"
