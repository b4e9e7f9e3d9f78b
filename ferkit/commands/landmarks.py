"""``ferkit landmarks extract|draw|summary``: build and inspect landmark caches.

Examples::

    # all FER2013 / FER+ images (35,887; the cache serves every FER+ label mode, matched by sample id)
    ferkit landmarks extract --dataset fer2013 --root ../shared/data/fer2013 --split all \\
        --backend dlib --out ~/.cache/ferkit/landmarks/
    # then train with: --data.landmarks_cache ~/.cache/ferkit/landmarks/
    ferkit landmarks summary ~/.cache/ferkit/landmarks/fer2013_train.npz
    ferkit landmarks draw --dataset fer2013 --root ../shared/data/fer2013 --split train \\
        --cache ~/.cache/ferkit/landmarks/ --out faces.png

``extract`` is resumable: rerun the same command after an interruption and it continues where it stopped
(``--no-resume`` starts over). Faces where no landmarks could be found are recorded in the cache (status FAILED)
and become NaN landmarks when the cache is attached to a dataset.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ferkit.data.sources import DatasetSource
from ferkit.landmarks.cache import LandmarkCache, attach_landmarks, cache_file_name, extract_landmarks
from ferkit.landmarks.extract import CROP_FACE_BOX, LandmarkStatus, _as_rgb, create_backend
from ferkit.landmarks.heatmaps import LANET19

__all__ = ["main", "draw_landmarks_grid"]

_SPLITS = ("train", "val", "test")
# short names for the shipped sources (also the cache file prefix: <name>_<split>.npz)
SOURCES = {"fer2013": "ferkit.data.FER2013Source", "ferplus": "ferkit.data.FERPlusSource", "rafdb": "ferkit.data.RAFDBSource",
           "affectnet": "ferkit.data.AffectNetSource", "folder": "ferkit.data.FolderSource",
           "synthetic": "ferkit.data.SyntheticSource"}


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help=f"a dataset source: {', '.join(SOURCES)} (or a class path, e.g. ferkit.data.FERPlusSource)")
    p.add_argument("--root", default=None, help="folder (or file) holding the dataset")
    p.add_argument("--split", default="all", help="train, val, test, or all (every split the dataset has)")
    p.add_argument("--dataset-kwargs", default="{}", help="JSON of extra source arguments, e.g. '{\"label_mode\": \"soft\"}'")


def _source(args: argparse.Namespace) -> DatasetSource:
    """The dataset source named by ``--dataset`` (a short name or a class path), with ``--root`` and its kwargs."""
    path = SOURCES.get(args.dataset, args.dataset)
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module or "ferkit.data"), name)
    except (ImportError, AttributeError) as err:
        raise SystemExit(f"--dataset {args.dataset}: unknown; use one of {', '.join(SOURCES)} or a class path") from err
    kwargs = json.loads(args.dataset_kwargs)
    if args.root is not None:
        kwargs["root"] = args.root
    return cls(**kwargs)


def _splits(source: DatasetSource, split: str) -> list[str]:
    if split == "all":
        return [s for s in _SPLITS if source.has_split(s)]
    if split not in _SPLITS:
        raise SystemExit(f"--split must be one of {_SPLITS} or all, got {split!r}")
    return [split]


def _build(args: argparse.Namespace, split: str):
    return _source(args).build(split, None)


def _backend(args: argparse.Namespace):

    box = None if args.no_fallback else (tuple(args.face_box) if args.face_box else CROP_FACE_BOX)
    if args.backend == "dlib":
        return create_backend("dlib", model_path=args.model, min_size=args.min_size, fallback_box=box,
                              detect=not args.no_detect)
    if args.backend in ("face-alignment", "fan"):
        return create_backend("face-alignment", model_path=args.model, model_dir=args.model_dir,
                              detector=args.detector, detector_path=args.detector_path, face_box=box,
                              device=args.device, min_size=args.min_size)
    return create_backend("dataset")


def _out_file(out: str, dataset: str, split: str, multi: bool) -> Path:

    path = Path(out).expanduser()
    if path.suffix == ".npz":
        if multi:
            raise SystemExit("--out is a single .npz file but several splits are extracted: pass a folder")
        return path
    return path / cache_file_name(dataset, split)


def cmd_extract(args: argparse.Namespace) -> list[dict[str, Any]]:

    backend = _backend(args)
    splits = _splits(_source(args), args.split)
    summaries = []
    for split in splits:
        ds = _build(args, split)
        out = _out_file(args.out, args.dataset, split, len(splits) > 1)
        print(f"[ferkit] {args.dataset}/{split}: {len(ds)} images -> {out}", flush=True)
        cache = extract_landmarks(ds, backend, out, batch_size=args.batch_size, resume=not args.no_resume,
                                  progress=not args.no_progress, limit=args.limit,
                                  meta={"dataset": args.dataset, "split": split, "root": str(args.root)})
        s = dict(cache.summary(), dataset=args.dataset, split=split, file=str(out))
        summaries.append(s)
        print(f"[ferkit] {split}: {s['done']}/{s['num_samples']} done, detected {s['detected']}, fallback box "
              f"{s['fallback']}, failed {s['failed']} ({100 * s['failure_rate']:.2f} %), "
              f"{1000 * s['seconds_per_image']:.2f} ms/image", flush=True)
    return summaries


def cmd_summary(args: argparse.Namespace) -> None:

    for f in args.cache:
        c = LandmarkCache.load(f)
        print(json.dumps({"file": f, **c.summary(), "meta": {k: v for k, v in c.meta.items() if k != "summary"}}, indent=2))


def draw_landmarks_grid(images: list[np.ndarray], points: list[np.ndarray | None], labels: list[str] | None = None,
                        scale: int = 4, cols: int = 8) -> np.ndarray:
    """A uint8 RGB grid of faces (upsampled ``scale`` x) with their landmarks drawn in green and a red cross
    over faces without landmarks."""
    import cv2


    tiles = []
    for k, (img, pts) in enumerate(zip(images, points)):
        rgb = _as_rgb(img)
        h, w = rgb.shape[:2]
        tile = cv2.resize(rgb, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC).copy()
        if pts is None or not np.isfinite(pts).all():
            cv2.line(tile, (0, 0), (w * scale - 1, h * scale - 1), (220, 30, 30), 2)
            cv2.line(tile, (w * scale - 1, 0), (0, h * scale - 1), (220, 30, 30), 2)
        else:
            for x, y in pts:
                cv2.circle(tile, (int(round((x + 0.5) * scale - 0.5)), int(round((y + 0.5) * scale - 0.5))), 2, (40, 230, 40), -1, cv2.LINE_AA)
        if labels is not None:
            cv2.putText(tile, labels[k], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    th, tw = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    grid = np.full((rows * (th + 4) + 4, cols * (tw + 4) + 4, 3), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[4 + r * (th + 4) : 4 + r * (th + 4) + th, 4 + c * (tw + 4) : 4 + c * (tw + 4) + tw] = t
    return grid


def cmd_draw(args: argparse.Namespace) -> Path:
    import cv2


    split = _splits(_source(args), args.split)[0]
    ds = _build(args, split)
    cache = attach_landmarks(ds, args.cache, split=split)
    rng = np.random.default_rng(args.seed)
    order = rng.choice(len(ds), size=min(args.n, len(ds)), replace=False)
    status_name = {int(s): s.name.lower() for s in LandmarkStatus}
    # cache rows in dataset order (attach matched them by id)
    row = {sid: r for r, sid in enumerate(cache.ids.tolist())}
    images, pts, labels = [], [], []
    for i in order.tolist():
        images.append(ds.load_image(i))
        p = ds.landmarks[i]
        pts.append(p if np.isfinite(p).all() else None)
        st = int(cache.status[row[str(ds.ids[i])]]) if str(ds.ids[i]) in row else -1
        labels.append(f"{ds.class_names[int(ds.labels[i])][:7]} {status_name.get(st, '?')[:3]}")
    grid = draw_landmarks_grid(images, pts, labels, scale=args.scale, cols=args.cols)
    # overlay LA-Net's 19 points in red
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    th = images[0].shape[0] * args.scale
    tw = images[0].shape[1] * args.scale
    for k, p in enumerate(pts):
        if p is None:
            continue
        r, c = divmod(k, args.cols)
        sub = LANET19(p[None])[0]
        for x, y in sub:
            cx = 4 + c * (tw + 4) + int(round((x + 0.5) * args.scale - 0.5))
            cy = 4 + r * (th + 4) + int(round((y + 0.5) * args.scale - 0.5))
            cv2.circle(grid, (cx, cy), 3, (230, 30, 30), 1, cv2.LINE_AA)
    cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"[ferkit] wrote {out} ({len(images)} faces: green = 68 points, red circles = LA-Net's 19, cross = no landmarks)")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ferkit landmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("extract", help="extract landmarks for a dataset into cache files (resumable)")
    _add_dataset_args(e)
    e.add_argument("--backend", default="dlib", choices=["dlib", "face-alignment", "fan", "dataset"])
    e.add_argument("--out", required=True, help="output folder (<dataset>_<split>.npz per split) or a .npz file")
    e.add_argument("--model", default=None, help="model file (dlib: shape_predictor_68_face_landmarks.dat; FAN: 2DFAN4-*.pth.tar)")
    e.add_argument("--model-dir", default=None, help="face-alignment: folder of its model files (default: torch hub checkpoints)")
    e.add_argument("--detector", default="box", choices=["box", "sfd"], help="face-alignment: fixed crop box or S3FD detection")
    e.add_argument("--detector-path", default=None, help="face-alignment: S3FD weights file")
    e.add_argument("--device", default="cpu")
    e.add_argument("--min-size", type=int, default=144, help="upsample images whose shorter side is smaller, before detection")
    e.add_argument("--face-box", type=float, nargs=4, default=None, metavar=("X1", "Y1", "X2", "Y2"),
                   help="relative fallback face box (default: ferkit.landmarks.CROP_FACE_BOX)")
    e.add_argument("--no-fallback", action="store_true", help="no fallback box: faces the detector misses are FAILED")
    e.add_argument("--no-detect", action="store_true", help="dlib: skip detection, always use the face box")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--limit", type=int, default=None, help="process at most this many pending images per split")
    e.add_argument("--no-resume", action="store_true", help="start over instead of continuing an existing cache")
    e.add_argument("--no-progress", action="store_true")
    e.add_argument("--summary-json", default=None, help="also write the per-split summaries to this JSON file")

    s = sub.add_parser("summary", help="print a cache file's counts, failure rate and time per image")
    s.add_argument("cache", nargs="+")

    d = sub.add_parser("draw", help="draw landmarks of random samples into a PNG")
    _add_dataset_args(d)
    d.add_argument("--cache", required=True, help="cache file or folder")
    d.add_argument("--out", required=True)
    d.add_argument("--n", type=int, default=24)
    d.add_argument("--cols", type=int, default=8)
    d.add_argument("--scale", type=int, default=4)
    d.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "extract":
        summaries = cmd_extract(args)
        if args.summary_json:
            Path(args.summary_json).write_text(json.dumps(summaries, indent=2))
    elif args.command == "summary":
        cmd_summary(args)
    elif args.command == "draw":
        cmd_draw(args)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
