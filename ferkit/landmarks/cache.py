"""Landmark cache files: landmarks for a whole dataset split, keyed by dataset index.

A cache is one ``.npz`` file (written atomically) with

* ``landmarks`` float32 ``[N, 68, 2]``: raw-image pixel coordinates (x, y), NaN where there are none;
* ``status`` int8 ``[N]``: :class:`~ferkit.landmarks.extract.LandmarkStatus` (PENDING, DETECTED, FALLBACK, FAILED);
* ``score`` float32 ``[N]``: the backend's confidence;
* ``ids`` ``[N]``: the dataset's sample ids, to check that a cache belongs to the dataset it is attached to;
* ``meta``: JSON (dataset, split, backend configuration, extraction time).

:func:`extract_landmarks` fills a cache with a progress bar, saving every ``save_every`` images, and resumes an
interrupted run (only PENDING rows are processed). :func:`attach_landmarks` loads a cache onto a dataset:
``dataset.landmarks`` becomes ``[N, 68, 2]`` with NaN rows for faces where extraction failed.

What training does with failed faces (LA-Net): their landmark heatmaps get loss weight 0
(:class:`ferkit.landmarks.HeatmapTargets`), so they contribute no landmark loss; every other loss (CE, LDE, EL)
uses them as usual (the landmark *feature* comes from the image, not from the points). ``LANet`` logs the share of
such samples as ``train/lmk_missing``.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ferkit.core.errors import DataError
from ferkit.landmarks.extract import LandmarkBackend, LandmarkStatus

log = logging.getLogger(__name__)

__all__ = ["LandmarkCache", "extract_landmarks", "attach_landmarks", "resolve_cache_file", "cache_file_name"]

_VERSION = 1
NUM_POINTS = 68


def cache_file_name(dataset: str, split: str) -> str:
    """``<dataset>_<split>.npz``: the file name the extraction command writes inside an output folder."""
    return f"{dataset}_{split}.npz"


@dataclass
class LandmarkCache:
    """In-memory form of a landmark cache file (see the module docstring)."""

    landmarks: np.ndarray
    status: np.ndarray
    score: np.ndarray
    ids: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def empty(cls, ids: Sequence[str], meta: dict[str, Any] | None = None) -> "LandmarkCache":
        n = len(ids)
        return cls(
            landmarks=np.full((n, NUM_POINTS, 2), np.nan, dtype=np.float32),
            status=np.full(n, int(LandmarkStatus.PENDING), dtype=np.int8),
            score=np.full(n, np.nan, dtype=np.float32),
            ids=np.asarray([str(i) for i in ids]),
            meta=dict(meta or {}),
        )

    def __len__(self) -> int:
        return int(self.status.shape[0])

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LandmarkCache":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"landmark cache {str(path)!r} not found; create it with "
                                    "`ferkit landmarks extract ...` (see `ferkit landmarks extract --help`)")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as err:  # noqa: BLE001 - any reader error means "not a cache file"
            raise DataError(f"{path}: cannot read the landmark cache ({err}); delete it and extract again") from err
        missing = [k for k in ("landmarks", "status", "score", "ids", "meta") if k not in arrays]
        if missing:
            raise DataError(f"{path}: not a ferkit landmark cache (missing arrays {missing})")
        lm = arrays["landmarks"]
        n = arrays["status"].shape[0]
        if lm.shape != (n, NUM_POINTS, 2) or arrays["ids"].shape[0] != n or arrays["score"].shape[0] != n:
            raise DataError(f"{path}: inconsistent array shapes (landmarks {lm.shape}, status {arrays['status'].shape}, "
                            f"ids {arrays['ids'].shape}); delete it and extract again")
        meta = json.loads(str(arrays["meta"]))
        return cls(lm.astype(np.float32), arrays["status"].astype(np.int8), arrays["score"].astype(np.float32),
                   arrays["ids"].astype(str), meta)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temporary file + rename), so an interrupted save never corrupts the cache."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta, version=_VERSION, summary=self.summary())
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp.npz", dir=path.parent)
        os.close(fd)
        try:
            np.savez(tmp, landmarks=self.landmarks, status=self.status, score=self.score, ids=self.ids,
                     meta=np.asarray(json.dumps(meta)))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    # -- summaries --------------------------------------------------------------------------------------------
    def count(self, status: LandmarkStatus) -> int:
        return int(np.count_nonzero(self.status == int(status)))

    @property
    def pending(self) -> np.ndarray:
        return np.flatnonzero(self.status == int(LandmarkStatus.PENDING))

    @property
    def failed(self) -> np.ndarray:
        """Dataset indices whose extraction failed (no landmarks)."""
        return np.flatnonzero(self.status == int(LandmarkStatus.FAILED))

    def summary(self) -> dict[str, Any]:
        n = len(self)
        done = n - self.count(LandmarkStatus.PENDING)
        secs = float(self.meta.get("seconds", 0.0))
        processed = int(self.meta.get("processed", 0))
        return {
            "num_samples": n, "done": done, "detected": self.count(LandmarkStatus.DETECTED),
            "fallback": self.count(LandmarkStatus.FALLBACK), "failed": self.count(LandmarkStatus.FAILED),
            "failure_rate": self.count(LandmarkStatus.FAILED) / done if done else float("nan"),
            "detector_miss_rate": (self.count(LandmarkStatus.FAILED) + self.count(LandmarkStatus.FALLBACK)) / done if done else float("nan"),
            "seconds_per_image": secs / processed if processed else float("nan"),
        }


def _dataset_ids(dataset: Any) -> list[str]:
    ids = getattr(dataset, "ids", None)
    if ids is None:
        return [str(i) for i in range(len(dataset))]
    return [str(i) for i in ids]


def extract_landmarks(
    dataset: Any,
    backend: LandmarkBackend,
    out: str | os.PathLike,
    batch_size: int = 64,
    resume: bool = True,
    save_every: int = 2048,
    progress: bool = True,
    meta: dict[str, Any] | None = None,
    limit: int | None = None,
) -> LandmarkCache:
    """Extract landmarks for every sample of ``dataset`` into the cache file ``out`` (resumable).

    Args:
        dataset: a :class:`~ferkit.data.base.FERDataset` (``load_image``, ``ids``; ``landmarks`` for the dataset backend).
        backend: a landmark backend (:mod:`ferkit.landmarks.extract`).
        out: cache file path (``.npz``).
        batch_size: images per backend call.
        resume: continue an existing cache at ``out`` (its ids must match the dataset); False starts over.
        save_every: write the cache after about this many images (and at the end).
        progress: show a tqdm progress bar.
        meta: extra metadata stored in the file (dataset name, split, ...).
        limit: process at most this many pending samples in this call (the rest stay PENDING).

    Returns the cache (also written to ``out``). Raises :class:`DataError` if an existing cache belongs to other data.
    """
    out = Path(out)
    ids = _dataset_ids(dataset)
    cache = None
    if resume and out.is_file():
        cache = LandmarkCache.load(out)
        if len(cache) != len(ids) or not np.array_equal(cache.ids, np.asarray(ids)):
            raise DataError(
                f"{out}: existing landmark cache has {len(cache)} samples that do not match this dataset's {len(ids)} "
                "sample ids; delete the file or pass resume=False (--no-resume) to start over"
            )
        old = cache.meta.get("backend", {}).get("backend")
        if old is not None and old != backend.name:
            raise DataError(f"{out}: the cache was started with backend {old!r}, not {backend.name!r}; "
                            "resume with the same backend or start over (--no-resume)")
        log.info("resuming %s: %d of %d samples pending", out, cache.pending.size, len(cache))
    if cache is None:
        cache = LandmarkCache.empty(ids, meta)
    cache.meta.update(meta or {})
    cache.meta["backend"] = backend.config()
    cache.meta.setdefault("seconds", 0.0)
    cache.meta.setdefault("processed", 0)
    todo = cache.pending
    if limit is not None:
        todo = todo[: int(limit)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cache), initial=len(cache) - cache.pending.size, desc=f"landmarks ({backend.name})",
                   unit="img", dynamic_ncols=True)
    since_save = 0
    try:
        for start in range(0, todo.size, batch_size):
            chunk = todo[start : start + batch_size]
            t0 = time.perf_counter()
            results = backend.process(dataset, chunk.tolist())
            cache.meta["seconds"] = float(cache.meta["seconds"]) + time.perf_counter() - t0
            cache.meta["processed"] = int(cache.meta["processed"]) + len(chunk)
            if len(results) != len(chunk):
                raise RuntimeError(f"backend {backend.name!r} returned {len(results)} results for {len(chunk)} images")
            for i, res in zip(chunk, results):
                cache.status[i] = int(res.status)
                cache.score[i] = res.score
                if res.points is not None and res.status != LandmarkStatus.FAILED:
                    pts = np.asarray(res.points, np.float32)
                    if pts.shape != (NUM_POINTS, 2):
                        raise RuntimeError(f"backend {backend.name!r} returned points of shape {pts.shape} for sample {int(i)}")
                    cache.landmarks[i] = pts
                else:
                    cache.landmarks[i] = np.nan
                    cache.status[i] = int(LandmarkStatus.FAILED)
            since_save += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
                s = cache.summary()
                bar.set_postfix(failed=f"{s['failure_rate']:.1%}", fallback=s["fallback"], refresh=False)
            if since_save >= save_every:
                cache.save(out)
                since_save = 0
    finally:
        if bar is not None:
            bar.close()
        cache.save(out)
    return cache


def resolve_cache_file(cache_path: str | os.PathLike, dataset: Any, split: str | None = None) -> Path:
    """The cache file for ``dataset``: ``cache_path`` itself, or, for a folder, its ``*_<split>.npz`` file
    (the one whose ids match the dataset when there are several)."""
    path = Path(cache_path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"landmark cache {str(path)!r} does not exist; create it with "
                                "`ferkit landmarks extract --dataset ... --out <folder>`")
    pattern = f"*_{split}.npz" if split else "*.npz"
    candidates = sorted(path.glob(pattern))
    if not candidates:
        raise FileNotFoundError(f"no landmark cache for split {split!r} in {str(path)!r} (looked for {pattern}); "
                                f"run `ferkit landmarks extract ... --split {split or 'all'} --out {path}`")
    if len(candidates) == 1:
        return candidates[0]
    ids = np.asarray(_dataset_ids(dataset))
    for c in candidates:
        with np.load(c, allow_pickle=False) as z:
            if z["ids"].shape == ids.shape and np.array_equal(z["ids"].astype(str), ids):
                return c
    raise DataError(f"{path}: none of {[c.name for c in candidates]} matches the ids of this {type(dataset).__name__} "
                    f"split {split!r}; pass the cache file itself")


def _align(cache: LandmarkCache, ids: list[str], file: Path) -> np.ndarray:
    """Row of the cache for each dataset sample: identical ids, ids equal up to their folder, or a lookup by id."""
    cids = cache.ids
    if len(cids) == len(ids):
        if np.array_equal(cids, np.asarray(ids)):
            return np.arange(len(ids))
        if all(os.path.basename(a) == os.path.basename(b) for a, b in zip(cids, ids)):
            log.info("%s: sample ids match up to their folder (data moved?)", file)
            return np.arange(len(ids))
    row = {str(c): r for r, c in enumerate(cids)}
    order = np.empty(len(ids), dtype=np.int64)
    for i, sid in enumerate(ids):
        r = row.get(sid)
        if r is None:
            raise DataError(
                f"{file}: the landmark cache ({len(cids)} samples) does not match this dataset ({len(ids)} samples): "
                f"sample {i} ({sid!r}) is not in it. Extract landmarks for this dataset/split/label mode "
                "(ferkit landmarks extract ...) or pass the right cache"
            )
        order[i] = r
    log.info("%s: matched %d samples by id (the cache holds %d)", file, len(ids), len(cids))
    return order


def attach_landmarks(dataset: Any, cache_path: str | os.PathLike, split: str | None = None,
                     accept_fallback: bool = True) -> LandmarkCache:
    """Load a landmark cache onto ``dataset``: sets ``dataset.landmarks`` (``[N, 68, 2]``, NaN for failed faces).

    Args:
        dataset: the dataset (its ``ids`` are checked against the cache's).
        cache_path: a cache file, or a folder of ``<name>_<split>.npz`` files (see :func:`resolve_cache_file`).
        split: the split name, to find the file in a folder.
        accept_fallback: keep points predicted in the fixed crop box when no face was detected (FALLBACK); False
            turns them into NaN as well.

    Raises :class:`DataError` when the cache does not belong to the dataset, and warns when it is incomplete
    (PENDING rows become NaN). Returns the loaded cache.
    """
    file = resolve_cache_file(cache_path, dataset, split)
    cache = LandmarkCache.load(file)
    ids = _dataset_ids(dataset)
    order = _align(cache, ids, file)
    landmarks = cache.landmarks[order].copy()
    status = cache.status[order]
    drop = status != int(LandmarkStatus.DETECTED)
    if accept_fallback:
        drop &= status != int(LandmarkStatus.FALLBACK)
    landmarks[drop] = np.nan
    pending = int(np.count_nonzero(status == int(LandmarkStatus.PENDING)))
    if pending:
        log.warning("%s: %d of %d samples were never processed (interrupted extraction): they get no landmarks; "
                    "rerun the extract command to finish it", file, pending, len(ids))
    n_missing = int(np.count_nonzero(drop))
    log.info("%s: attached landmarks to %d samples of %s (%d without landmarks: %.1f%%)", file, len(ids),
             type(dataset).__name__, n_missing, 100.0 * n_missing / max(len(ids), 1))
    dataset.landmarks = landmarks
    return cache
