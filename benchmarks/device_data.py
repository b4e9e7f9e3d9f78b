"""Carry the FER+ data to a machine that can take only a small upload (a lent GPU machine takes 64 MiB in all).

The Kaggle ``fer2013.csv.gz`` is 94 MB. FER+ uses only the rows it gives a label to, so ``pack`` keeps the pixels of
exactly those rows (every split, every label mode ferkit has, 7 and 8 classes; ``--label-modes``/``--num-classes``
keep fewer), compressed with LZMA after a delta filter (each pixel stored as its difference from its left neighbour,
which saves about 2 MiB), with the FER+ votes gzipped, and ``unpack`` writes a ``fer2013.csv`` with the same 35,887 rows in the same order, the rows FER+ drops left black.
Every FER+ dataset built from the unpacked file is identical to the one built from the original (``pack`` checks it
before writing). FER2013's own 7-class labels and the real-noise suite need all rows: use the original file there.

    python -m benchmarks.device_data pack --root ../shared/data/fer2013 --out .gpudata
    python -m benchmarks.device_data unpack --src .gpudata --out /tmp/fer2013   # on the other machine
"""
from __future__ import annotations

import argparse
import gzip
import lzma
import shutil
import sys
from pathlib import Path

import numpy as np

USAGE = ("Training", "PublicTest", "PrivateTest")  # the order of ferkit.data.fer2013.SPLITS
#: neighbouring pixels are alike, so their differences compress better than the pixels (xz records the filter chain,
#: and ``lzma.decompress`` undoes it unasked)
PIXEL_FILTERS = [{"id": lzma.FILTER_DELTA, "dist": 1}, {"id": lzma.FILTER_LZMA2, "preset": 9}]


def used_rows(root: Path, modes: tuple[str, ...] | None = None, classes: tuple[int, ...] = (7, 8)) -> np.ndarray:
    """The rows of ``fer2013.csv`` that some FER+ dataset of these label modes (default: all) and class counts keeps
    (sorted, unique)."""
    from ferkit.data.ferplus import LABEL_MODES, FERPlus

    csv, plus = _files(root)
    rows = [FERPlus(csv, plus, split=s, label_mode=m, num_classes=c).rows
            for s in ("train", "val", "test") for m in (modes or LABEL_MODES) for c in classes]
    return np.unique(np.concatenate(rows))


def _files(root: Path) -> tuple[Path, Path]:
    csv = next((root / n for n in ("fer2013.csv", "fer2013.csv.gz") if (root / n).is_file()), None)
    if csv is None or not (root / "fer2013new.csv").is_file():
        raise SystemExit(f"{root}: expected fer2013.csv(.gz) and fer2013new.csv")
    return csv, root / "fer2013new.csv"


def pack(root: Path, out: Path, modes: tuple[str, ...] | None = None, classes: tuple[int, ...] = (7, 8)) -> None:
    """``modes``/``classes`` keep only the rows those datasets use (``majority`` with 8 classes: 31,412 rows, 10 %
    fewer); datasets of other modes built from the unpacked file would lose rows, so only these are checked."""
    from ferkit.data.fer2013 import read_fer2013_csv

    csv, plus = _files(root)
    table = read_fer2013_csv(csv)
    rows = used_rows(root, modes, classes)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "meta.npz", rows=rows, emotion=table.emotion, split=table.split)
    (out / "pixels.xz").write_bytes(lzma.compress(np.ascontiguousarray(table.pixels[rows]).tobytes(),
                                                  format=lzma.FORMAT_XZ, filters=PIXEL_FILTERS))
    (out / "fer2013new.csv").unlink(missing_ok=True)  # an older pack's plain copy
    with open(plus, "rb") as f, gzip.open(out / "fer2013new.csv.gz", "wb", compresslevel=9) as g:
        shutil.copyfileobj(f, g)
    unpack(out, out / "check")
    _check_same(root, out / "check", modes, classes)
    shutil.rmtree(out / "check")
    size = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    which = f"{'/'.join(modes) if modes else 'all label modes'}, {'/'.join(map(str, classes))} classes"
    print(f"packed {len(rows)} of {len(table)} rows into {out} ({size:.1f} MiB); FER+ datasets ({which}) checked identical")


def unpack(src: Path, out: Path) -> Path:
    meta = np.load(src / "meta.npz")
    rows, emotion, split = meta["rows"], meta["emotion"], meta["split"]
    pixels = np.zeros((len(emotion), 48 * 48), dtype=np.uint8)
    pixels[rows] = np.frombuffer(lzma.decompress((src / "pixels.xz").read_bytes()), dtype=np.uint8).reshape(-1, 48 * 48)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "fer2013.csv", "w") as f:
        f.write("emotion,pixels,Usage\n")
        for e, p, s in zip(emotion.tolist(), pixels, split.tolist()):
            f.write(f"{e},{' '.join(map(str, p.tolist()))},{USAGE[s]}\n")
    if (src / "fer2013new.csv.gz").is_file():
        with gzip.open(src / "fer2013new.csv.gz", "rb") as g, open(out / "fer2013new.csv", "wb") as f:
            shutil.copyfileobj(g, f)
    else:  # a pack made before the votes were gzipped
        shutil.copyfile(src / "fer2013new.csv", out / "fer2013new.csv")
    return out


def _check_same(root: Path, copy: Path, modes: tuple[str, ...] | None = None, classes: tuple[int, ...] = (7, 8)) -> None:
    from ferkit.data.ferplus import LABEL_MODES, FERPlus

    a_csv, a_plus = _files(root)
    b_csv, b_plus = _files(copy)
    for s in ("train", "val", "test"):
        for m in modes or LABEL_MODES:
            for c in classes:
                a = FERPlus(a_csv, a_plus, split=s, label_mode=m, num_classes=c)
                b = FERPlus(b_csv, b_plus, split=s, label_mode=m, num_classes=c)
                same = (np.array_equal(a.rows, b.rows) and np.array_equal(a.images, b.images)
                        and np.array_equal(a.labels, b.labels))
                if not same:
                    raise SystemExit(f"unpacked data differs from the original: split {s}, mode {m}, {c} classes")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.device_data", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack")
    a.add_argument("--root", type=Path, default=Path("../shared/data/fer2013"))
    a.add_argument("--out", type=Path, default=Path(".gpudata"))
    a.add_argument("--label-modes", nargs="+", default=None, metavar="MODE",
                   help="keep only the rows of these label modes (default: all)")
    a.add_argument("--num-classes", nargs="+", type=int, default=[7, 8], choices=[7, 8],
                   help="... and of these class counts (default: 7 8)")
    b = sub.add_parser("unpack")
    b.add_argument("--src", type=Path, default=Path(".gpudata"))
    b.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.cmd == "pack":
        pack(args.root, args.out, tuple(args.label_modes) if args.label_modes else None, tuple(args.num_classes))
    else:
        print(unpack(args.src, args.out))


if __name__ == "__main__":
    main(sys.argv[1:])
