"""Synthetic label noise for noisy-label experiments, usable with any :class:`~ferkit.data.base.FERDataset`.

Two corruption models, both drawn from a ``numpy.random.Generator(seed)`` (never a global RNG):

* **symmetric** -- with probability ``rate`` a label y becomes ``(y + U{1..C-1}) mod C``, i.e. a uniformly
  chosen *other* class (the protocol of LA-Net / SCN / RUL / EAC: "shift by U{1..6} mod 7");
* **class-dependent** (asymmetric) -- with probability ``rate`` a label becomes ``mapping[y]``, with the map
  given by *class name* so it does not depend on a dataset's label order. The default is LA-Net's map
  (:data:`DEFAULT_CLASS_MAPPING`).

For a fixed seed the draws do not depend on ``rate``: a sample flipped at rate r is also flipped at every
rate above r, and (in symmetric mode) to the same class, so noise levels are nested.

Noisy labels should be persisted per (rate, seed) with :func:`save_noisy_labels` so that every method in a
comparison trains on the same corruption.
"""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ferkit.core.errors import DataError
from ferkit.data.base import FERDataset
from ferkit.core.labels import LabelSpace, canonical_name

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CLASS_MAPPING", "NOISE_MODES", "symmetric_noise", "class_dependent_noise", "apply_label_noise",
    "save_noisy_labels", "load_noisy_labels",
]

NOISE_MODES = ("symmetric", "class_dependent")

# LA-Net's asymmetric map (by class name), contempt -> disgust added for 8-class spaces.
DEFAULT_CLASS_MAPPING: dict[str, str] = {
    "angry": "disgust", "disgust": "angry", "fear": "surprise", "happy": "neutral", "sad": "neutral",
    "surprise": "angry", "neutral": "sad", "contempt": "disgust",
}


def _check_rate(rate: float) -> float:
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"noise rate must be in [0, 1), got {rate}")
    return rate


def _check_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got shape {y.shape} and dtype {y.dtype}")
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        raise ValueError(
            f"label {int(y[bad[0]])} at position {int(bad[0])} is outside 0..{num_classes - 1} ({bad.size} such labels)"
        )
    return y.astype(np.int64)


def symmetric_noise(labels: np.ndarray, rate: float, num_classes: int, seed: int) -> np.ndarray:
    """Return a copy of ``labels`` where each label, with probability ``rate``, moves to another class.

    The new class is ``(y + k) mod C`` with k uniform in 1..C-1, so a flipped label never stays the same.
    """
    rate = _check_rate(rate)
    if int(num_classes) < 2:
        raise ValueError(f"symmetric noise needs at least 2 classes, got num_classes={num_classes}")
    y = _check_labels(labels, int(num_classes))
    rng = np.random.default_rng(seed)
    flip = rng.random(y.shape[0]) < rate
    shift = rng.integers(1, int(num_classes), size=y.shape[0])
    return np.where(flip, (y + shift) % int(num_classes), y)


def _mapping_array(label_space: LabelSpace, mapping: Mapping[str, str] | None) -> np.ndarray:
    """Class-id lookup table for a name->name mapping; classes the mapping leaves out map to themselves."""
    table = np.arange(label_space.num_classes, dtype=np.int64)
    if mapping is None:
        # The default map, restricted to pairs whose both ends exist in this label space.
        pairs = [(s, t) for s, t in DEFAULT_CLASS_MAPPING.items() if s in label_space.names and t in label_space.names]
    else:
        pairs = []
        for src, dst in mapping.items():
            names = []
            for name in (src, dst):
                try:
                    cname = canonical_name(name)
                except KeyError:
                    cname = None
                if cname is None or cname not in label_space.names:
                    raise ValueError(
                        f"noise mapping {src!r} -> {dst!r}: class {name!r} is not in the label space "
                        f"{list(label_space.names)}; name classes from that list"
                    )
                names.append(cname)
            pairs.append((names[0], names[1]))
    for src, dst in pairs:
        table[label_space.index(src)] = label_space.index(dst)
    return table


def class_dependent_noise(
    labels: np.ndarray,
    rate: float,
    label_space: LabelSpace,
    mapping: Mapping[str, str] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Return a copy of ``labels`` where each label, with probability ``rate``, becomes ``mapping[label]``.

    ``mapping`` maps class names to class names (any spelling :func:`~ferkit.core.labels.canonical_name`
    accepts); classes it leaves out keep their label. The default is :data:`DEFAULT_CLASS_MAPPING`
    restricted to ``label_space``.
    """
    rate = _check_rate(rate)
    table = _mapping_array(label_space, mapping)
    y = _check_labels(labels, label_space.num_classes)
    rng = np.random.default_rng(seed)
    flip = rng.random(y.shape[0]) < rate
    return np.where(flip, table[y], y)


def apply_label_noise(
    dataset: FERDataset,
    rate: float,
    mode: str = "symmetric",
    seed: int = 0,
    mapping: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Corrupt ``dataset.labels`` in place and return the boolean mask of samples whose label changed.

    The first call stores the original labels in ``dataset.clean_labels``; every call derives the noisy
    labels from ``clean_labels``, so calling again with the same arguments gives the same labels, and
    calling with ``rate=0`` restores the clean labels.
    """
    if mode not in NOISE_MODES:
        raise ValueError(f"unknown label-noise mode {mode!r}; use one of {NOISE_MODES}")
    if mode == "symmetric" and mapping is not None:
        raise ValueError("a noise mapping only applies to mode='class_dependent'")
    rate = _check_rate(rate)
    if dataset.clean_labels is None:
        dataset.clean_labels = np.asarray(dataset.labels, dtype=np.int64).copy()
    clean = np.asarray(dataset.clean_labels, dtype=np.int64)
    if mode == "symmetric":
        noisy = symmetric_noise(clean, rate, dataset.num_classes, seed)
    else:
        noisy = class_dependent_noise(clean, rate, dataset.label_space, mapping, seed)
    dataset.labels = noisy
    flipped = noisy != clean
    log.info(
        "label noise on %s: mode=%s rate=%.3f seed=%d -> %d of %d labels changed (realised rate %.4f)",
        type(dataset).__name__, mode, rate, seed, int(flipped.sum()), len(clean),
        float(flipped.mean()) if len(clean) else 0.0,
    )
    return flipped


def save_noisy_labels(path: str | Path, noisy: np.ndarray, clean: np.ndarray, meta: Mapping[str, Any]) -> Path:
    """Persist noisy and clean labels with their metadata (rate, seed, mode, class names, ...).

    ``.npz`` stores the arrays and ``meta`` as JSON; ``.csv`` writes a ``# meta: {json}`` first line and
    the columns ``index,clean,noisy``. Returns the path written.
    """
    path = Path(path)
    noisy = np.asarray(noisy, dtype=np.int64)
    clean = np.asarray(clean, dtype=np.int64)
    if noisy.shape != clean.shape or noisy.ndim != 1:
        raise ValueError(
            f"noisy and clean labels must be 1-D arrays of one length, got {noisy.shape} and {clean.shape}"
        )
    meta_json = json.dumps(dict(meta), sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        np.savez(path, noisy=noisy, clean=clean, meta=np.array(meta_json))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as f:
            f.write(f"# meta: {meta_json}\n")
            w = csv.writer(f)
            w.writerow(["index", "clean", "noisy"])
            w.writerows(zip(range(len(clean)), clean.tolist(), noisy.tolist()))
    else:
        raise ValueError(f"{path}: unsupported noisy-label file type {path.suffix!r}; use .npz or .csv")
    return path


def load_noisy_labels(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read a file written by :func:`save_noisy_labels`: returns ``(noisy, clean, meta)``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no noisy-label file here; create it with save_noisy_labels")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            missing = {"noisy", "clean", "meta"} - set(z.files)
            if missing:
                raise DataError(f"{path}: missing arrays {sorted(missing)}; expected noisy, clean and meta")
            return z["noisy"].astype(np.int64), z["clean"].astype(np.int64), json.loads(str(z["meta"]))
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            first = f.readline()
            if not first.startswith("# meta: "):
                raise DataError(f"{path}, row 1: expected '# meta: {{json}}', got {first.strip()[:60]!r}")
            meta = json.loads(first[len("# meta: "):])
            reader = csv.reader(f)
            header = next(reader, None)
            if header != ["index", "clean", "noisy"]:
                raise DataError(f"{path}, row 2: expected header index,clean,noisy, got {header}")
            clean, noisy = [], []
            for row_no, row in enumerate(reader, start=3):
                try:
                    idx, c, n = (int(v) for v in row)
                except ValueError:
                    raise DataError(
                        f"{path}, row {row_no}: expected three integers index,clean,noisy, got {row}"
                    ) from None
                if idx != len(clean):
                    raise DataError(f"{path}, row {row_no}: index {idx} out of order, expected {len(clean)}")
                clean.append(c)
                noisy.append(n)
        return np.asarray(noisy, np.int64), np.asarray(clean, np.int64), meta
    raise ValueError(f"{path}: unsupported noisy-label file type {path.suffix!r}; use .npz or .csv")
