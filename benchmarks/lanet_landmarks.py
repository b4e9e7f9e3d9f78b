"""Landmarks for FER+: failure rate and time per image of the extraction, and a PNG of landmarks on sample faces.

Reads the caches written by (run it first; about 5 minutes on 2 CPU cores)::

    ferkit landmarks extract --dataset fer2013 --root ../shared/data/fer2013 --split all \\
        --backend dlib --out ~/.cache/ferkit/landmarks/

attaches them to the FER+ splits (majority labels; samples matched by id), optionally re-times the dlib backend on a
random sample of images, and writes ``benchmarks/results/lanet_landmarks_ferplus.json`` and a PNG of landmarks
drawn on FER+ training faces (``runs/lanet_landmarks/ferplus_landmarks.png``, outside version control)::

    python benchmarks/lanet_landmarks.py --time-sample 500

``--smoke`` needs neither the FER+ files nor dlib: it extracts the exact landmarks of a few synthetic faces (the
``dataset`` backend) into a temporary cache and runs the same counting, attaching and drawing on them, writing
everything to a temporary folder (or ``--output``).
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, environment, result_path, shared_data_root, smoke_dir, write_results  # noqa: E402

SPLITS = ("train", "val", "test")
# tiny synthetic splits of --smoke
SMOKE_SIZES = {"num_train": 24, "num_val": 8, "num_test": 8, "image_size": 48}


def make_source(name: str, root: str | None, kwargs: dict):
    """A dataset source by the short name ``ferkit landmarks`` uses (fer2013, ferplus, synthetic, ...) or class path."""
    from ferkit.commands.landmarks import SOURCES

    module, _, cls = SOURCES.get(name, name).rpartition(".")
    source_cls = getattr(importlib.import_module(module or "ferkit.data"), cls)
    return source_cls(**({"root": root} if root is not None else {}), **kwargs)


def extract_smoke_caches(cache_dir: Path) -> None:
    """Caches of the synthetic faces' own landmarks (no detector, no real data) for --smoke."""
    from ferkit.landmarks.cache import cache_file_name, extract_landmarks
    from ferkit.landmarks.extract import create_backend

    source = make_source("synthetic", None, SMOKE_SIZES)
    for split in SPLITS:
        extract_landmarks(source.build(split, None), create_backend("dataset"), cache_dir / cache_file_name("synthetic", split),
                          resume=False, progress=False, meta={"dataset": "synthetic", "split": split})


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(shared_data_root() / "fer2013"), help="the folder with fer2013.csv(.gz) and fer2013new.csv")
    p.add_argument("--cache", default=str(Path.home() / ".cache/ferkit/landmarks"))
    p.add_argument("--cache-dataset", default="fer2013", help="the dataset name the caches were extracted for")
    p.add_argument("--time-sample", type=int, default=0, help="re-time the dlib backend on this many random images")
    # FER2013 / FER+ faces may not be redistributed: the figure goes to runs/ (git-ignored), never into the repository
    p.add_argument("--png", default=str(REPO / "runs" / "lanet_landmarks" / "ferplus_landmarks.png"),
                   help="PNG of landmarks on training faces (default under runs/, which is not committed)")
    p.add_argument("--output", default=None,
                   help="result file (default: benchmarks/results/lanet_landmarks_ferplus.json; --smoke: a temporary folder)")
    p.add_argument("--smoke", action="store_true", help="a few synthetic faces, no FER+ files or dlib needed (seconds)")
    args = p.parse_args(argv)
    output = result_path(args.output, "lanet_landmarks_ferplus", args.smoke)

    from ferkit.commands.landmarks import main as landmarks_main
    from ferkit.landmarks.cache import LandmarkCache, attach_landmarks, cache_file_name
    from ferkit.landmarks.extract import LandmarkStatus

    if args.smoke:
        cache_dir = smoke_dir() / "landmark_cache"
        extract_smoke_caches(cache_dir)
        args.cache_dataset, args.time_sample = "synthetic", 0
        target, root, target_kwargs, key = "synthetic", None, dict(SMOKE_SIZES), "synthetic"
        if args.png == p.get_default("png"):
            args.png = str(smoke_dir() / "landmarks.png")
    else:
        cache_dir = Path(args.cache).expanduser()
        if not Path(args.root).exists():
            raise SystemExit(f"FER+ data not found at {args.root}: pass --root (the folder with fer2013.csv(.gz) and "
                             "fer2013new.csv) or set FERKIT_SHARED_DATA")
        target, root, target_kwargs, key = "ferplus", args.root, {"label_mode": "majority", "num_classes": 8}, "ferplus_majority"
    missing = [s for s in SPLITS if not (cache_dir / cache_file_name(args.cache_dataset, s)).is_file()]
    if missing:
        raise SystemExit(f"no landmark cache for split(s) {missing} in {cache_dir}: run `ferkit landmarks extract --dataset "
                         f"{args.cache_dataset} --root {args.root} --split all --backend dlib --out {cache_dir}` first")

    target_source = make_source(target, root, target_kwargs)
    splits, totals = {}, {"images": 0, "detected": 0, "fallback": 0, "failed": 0, "seconds": 0.0}
    backend = None
    for split in SPLITS:
        file = cache_dir / cache_file_name(args.cache_dataset, split)
        c = LandmarkCache.load(file)
        s = c.summary()
        backend = c.meta.get("backend")
        splits[split] = {k: s[k] for k in ("num_samples", "detected", "fallback", "failed")}
        splits[split]["seconds_per_image_ms"] = round(1000 * s["seconds_per_image"], 2)
        totals["images"] += s["num_samples"]
        for k in ("detected", "fallback", "failed"):
            totals[k] += s[k]
        totals["seconds"] += float(c.meta.get("seconds", 0.0))
        # what the target data set (FER+ with majority labels) gets from it: its samples matched by id
        ds = target_source.build(split, None)
        attach_landmarks(ds, file, split=split)
        row = {sid: r for r, sid in enumerate(c.ids.tolist())}
        status = c.status[[row[str(i)] for i in ds.ids]]
        splits[split][key] = {
            "images": len(ds), "detected": int((status == LandmarkStatus.DETECTED).sum()),
            "fallback": int((status == LandmarkStatus.FALLBACK).sum()),
            "failed": int((status == LandmarkStatus.FAILED).sum()),
            "without_landmarks": int((~np.isfinite(ds.landmarks).all(axis=(1, 2))).sum()),
        }
    n = totals["images"]
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    result = {
        "benchmark": "landmark extraction for FER2013 / FER+ (all 35,887 48x48 crops), dlib 68-point backend",
        "command": f"ferkit landmarks extract --dataset {args.cache_dataset} --root ../shared/data/fer2013 --split all "
                   f"--backend dlib --out ~/.cache/ferkit/landmarks/  (then: python benchmarks/lanet_landmarks.py {argv_text})",
        "smoke": args.smoke,
        "backend": backend,
        "strategy": "upsample each 48x48 crop 3x (bicubic, 144x144), dlib HOG face detector; when it finds no face, "
                    "predict the 68 points inside a fixed box (ferkit.landmarks.CROP_FACE_BOX, the mean detected box) "
                    "and record status FALLBACK",
        "images": n,
        "detector_found_face": totals["detected"],
        "fallback_box": totals["fallback"],
        "failed_no_landmarks": totals["failed"],
        "failure_rate": round(totals["failed"] / n, 4),
        "detector_miss_rate": round((totals["fallback"] + totals["failed"]) / n, 4),
        "extraction_seconds_total": round(totals["seconds"], 1),
        "extraction_ms_per_image": round(1000 * totals["seconds"] / n, 2),
        "note": "extraction time measured during the extraction run on a shared 2-core CPU (other jobs were running)",
        "splits": splits,
        "environment": environment(),
    }
    if args.smoke:
        result["benchmark"] = "smoke run: the synthetic faces' exact landmarks (dataset backend), not a measurement"
        result["strategy"] = "the dataset's own landmarks"
    if args.time_sample:
        from ferkit.landmarks.extract import DlibBackend

        ds = make_source(args.cache_dataset, args.root, {}).build("test", None)
        idx = np.random.default_rng(0).choice(len(ds), size=min(args.time_sample, len(ds)), replace=False)
        images = [ds.load_image(int(i)) for i in idx]
        b = DlibBackend()
        b.predict(images[:5])  # warm-up
        t0 = time.perf_counter()
        b.predict(images)
        result["retimed_ms_per_image"] = round(1000 * (time.perf_counter() - t0) / len(images), 2)
        result["retimed_images"] = len(images)
    draw = ["draw", "--dataset", target, "--split", "train", "--dataset-kwargs", json.dumps(target_kwargs),
            "--cache", str(cache_dir / cache_file_name(args.cache_dataset, "train")), "--out", args.png,
            "--n", "8" if args.smoke else "24", "--cols", "8", "--scale", "4", "--seed", "1"]
    if root is not None:
        draw += ["--root", root]
    landmarks_main(draw)
    png = Path(args.png).resolve()
    result["png"] = str(png.relative_to(REPO)) if png.is_relative_to(REPO) else str(png)
    write_results(output, result)
    return result


if __name__ == "__main__":
    main()
