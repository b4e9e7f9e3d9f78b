"""Landmarks for FER+: failure rate and time per image of the extraction, and a PNG of landmarks on sample faces.

Reads the caches written by (run it first; about 5 minutes on 2 CPU cores)::

    python -m ferkit.landmarks extract --dataset fer2013 --root ../shared/data/fer2013 --split all \\
        --backend dlib --out ~/.cache/ferkit/landmarks/

attaches them to the FER+ splits (majority labels; samples matched by id), optionally re-times the backend on a
random sample of images, and writes ``benchmarks/results/lanet_landmarks_ferplus.json`` and
``docs/img/ferplus_landmarks.png``::

    python benchmarks/lanet_landmarks.py --time-sample 500
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(REPO.parent / "shared/data/fer2013"))
    p.add_argument("--cache", default=str(Path.home() / ".cache/ferkit/landmarks"))
    p.add_argument("--cache-dataset", default="fer2013", help="the dataset name the caches were extracted for")
    p.add_argument("--time-sample", type=int, default=0, help="re-time the dlib backend on this many random images")
    p.add_argument("--png", default=str(REPO / "docs/img/ferplus_landmarks.png"))
    p.add_argument("--output", default=str(REPO / "benchmarks/results/lanet_landmarks_ferplus.json"))
    args = p.parse_args()

    from ferkit.data.registry import build_dataset
    from ferkit.landmarks.cache import LandmarkCache, attach_landmarks
    from ferkit.landmarks.cli import main as lm_main
    from ferkit.landmarks.extract import LandmarkStatus

    cache_dir = Path(args.cache).expanduser()
    splits, totals = {}, {"images": 0, "detected": 0, "fallback": 0, "failed": 0, "seconds": 0.0}
    backend = None
    for split in ("train", "val", "test"):
        c = LandmarkCache.load(cache_dir / f"{args.cache_dataset}_{split}.npz")
        s = c.summary()
        backend = c.meta.get("backend")
        splits[split] = {k: s[k] for k in ("num_samples", "detected", "fallback", "failed")}
        splits[split]["seconds_per_image_ms"] = round(1000 * s["seconds_per_image"], 2)
        totals["images"] += s["num_samples"]
        for k in ("detected", "fallback", "failed"):
            totals[k] += s[k]
        totals["seconds"] += float(c.meta.get("seconds", 0.0))
        # what FER+ (majority labels) gets from it
        ds = build_dataset("ferplus", args.root, split, None, label_mode="majority", num_classes=8)
        attach_landmarks(ds, cache_dir, split=split)
        row = {sid: r for r, sid in enumerate(c.ids.tolist())}
        status = c.status[[row[str(i)] for i in ds.ids]]
        splits[split]["ferplus_majority"] = {
            "images": len(ds), "detected": int((status == LandmarkStatus.DETECTED).sum()),
            "fallback": int((status == LandmarkStatus.FALLBACK).sum()),
            "failed": int((status == LandmarkStatus.FAILED).sum()),
            "without_landmarks": int((~np.isfinite(ds.landmarks).all(axis=(1, 2))).sum()),
        }
    n = totals["images"]
    result = {
        "benchmark": "landmark extraction for FER2013 / FER+ (all 35,887 48x48 crops), dlib 68-point backend",
        "command": "python -m ferkit.landmarks extract --dataset fer2013 --root ../shared/data/fer2013 --split all "
                   "--backend dlib --out ~/.cache/ferkit/landmarks/  (then: python " + " ".join(sys.argv) + ")",
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
    if args.time_sample:
        from ferkit.landmarks.extract import DlibBackend

        ds = build_dataset(args.cache_dataset, args.root, "test", None)
        idx = np.random.default_rng(0).choice(len(ds), size=min(args.time_sample, len(ds)), replace=False)
        images = [ds.load_image(int(i)) for i in idx]
        b = DlibBackend()
        b.predict(images[:5])  # warm-up
        t0 = time.perf_counter()
        b.predict(images)
        result["retimed_ms_per_image"] = round(1000 * (time.perf_counter() - t0) / len(images), 2)
        result["retimed_images"] = len(images)
    lm_main(["draw", "--dataset", "ferplus", "--root", args.root, "--split", "train", "--dataset-kwargs",
             '{"label_mode": "majority", "num_classes": 8}', "--cache", str(cache_dir), "--out", args.png,
             "--n", "24", "--cols", "8", "--scale", "4", "--seed", "1"])
    result["png"] = str(Path(args.png).relative_to(REPO)) if Path(args.png).is_relative_to(REPO) else args.png
    write_results(args.output, result)


if __name__ == "__main__":
    main()
