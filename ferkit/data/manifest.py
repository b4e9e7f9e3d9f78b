"""The mined-set manifest (a CSV of pseudo-labelled pool images), its dataset, and evaluation-overlap exclusion.

A manifest is what ``ferkit omni mine`` writes and what training reads::

    path,pseudo_label,similarity,confidence,pool_index
    faces/0001/img_03.jpg,happy,0.912,0.973,17
    ...

``path`` is relative to the pool folder (or absolute); ``pseudo_label`` is a class name of the model's label space
(a class index is accepted too); ``similarity`` is the cosine to the class prototype, ``confidence`` the primitive
model's max probability (empty when unknown); ``pool_index`` the row in the pool (optional).

Images of the pool that also appear in an evaluation set must not be mined (they would leak test images into
training): :func:`overlap_mask` finds them by id (equal sample ids) and by a hash
of the decoded pixels, which catches a copy under another name or format (a lossless re-encoding); a resized or
re-compressed JPEG copy is not caught.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ferkit.core.errors import DataError
from ferkit.core.labels import LabelSpace
from ferkit.data.base import FERDataset
from ferkit.data.io import PathLike, read_image

log = logging.getLogger(__name__)

__all__ = ["ManifestRow", "ManifestDataset", "write_manifest", "read_manifest", "pixel_hash", "overlap_mask",
           "MANIFEST_COLUMNS"]

MANIFEST_COLUMNS = ("path", "pseudo_label", "similarity", "confidence", "pool_index")


@dataclass
class ManifestRow:
    path: str
    pseudo_label: int
    similarity: float
    confidence: float = float("nan")
    pool_index: int = -1


def write_manifest(path: PathLike, rows: Iterable[ManifestRow], class_names: Sequence[str]) -> Path:
    """Write ``rows`` (pseudo-labels as class names) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(MANIFEST_COLUMNS)
        for r in rows:
            conf = "" if math.isnan(r.confidence) else f"{r.confidence:.5f}"
            w.writerow([r.path, class_names[r.pseudo_label], f"{r.similarity:.5f}", conf, r.pool_index])
    tmp.replace(path)
    return path


def read_manifest(path: PathLike, label_space: LabelSpace) -> list[ManifestRow]:
    """The rows of a manifest, checked: every error names the file, the row and the fix."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: mined-set manifest not found; write one with `ferkit omni mine`")
    rows: list[ManifestRow] = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"path", "pseudo_label"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: manifest lacks column(s) {sorted(missing)}; expected a header "
                            f"{','.join(MANIFEST_COLUMNS)} (similarity, confidence, pool_index optional)")
        names = {n.lower(): i for i, n in enumerate(label_space.names)}
        for line, r in enumerate(reader, start=2):
            lab = (r["pseudo_label"] or "").strip()
            if lab.lower() in names:
                k = names[lab.lower()]
            elif lab.lstrip("-").isdigit() and 0 <= int(lab) < label_space.num_classes:
                k = int(lab)
            else:
                raise DataError(f"{path}, row {line}: pseudo_label {lab!r} is not one of {list(label_space.names)} "
                                f"(or an index 0..{label_space.num_classes - 1}); the manifest was made for another "
                                "label space?")
            if not r["path"]:
                raise DataError(f"{path}, row {line}: empty path")
            try:
                sim = float(r.get("similarity") or "nan")
                conf = float(r.get("confidence") or "nan")
                pidx = int(r.get("pool_index") or -1)
            except ValueError as exc:
                raise DataError(f"{path}, row {line}: {exc}; similarity/confidence must be numbers and pool_index an "
                                "integer") from None
            rows.append(ManifestRow(r["path"], k, sim, conf, pidx))
    return rows


class ManifestDataset(FERDataset):
    """The images of a mined-set manifest, labelled with their pseudo-labels.

    Args:
        manifest: the CSV. root: the folder relative paths are resolved in (default: the manifest's folder).
        label_space: the classes pseudo-labels name (the primitive model's).
        grayscale: read images as grayscale. transform: see :class:`FERDataset`.

    Attributes: ``paths``, ``labels`` (pseudo-labels), ``similarity``, ``confidence``, ``pool_index``; ``ids`` are
    the manifest's paths.
    """

    def __init__(self, manifest: PathLike, label_space: LabelSpace, root: PathLike | None = None,
                 grayscale: bool = False, transform: Callable[..., dict] | None = None) -> None:
        super().__init__(label_space, transform)
        manifest = Path(manifest)
        rows = read_manifest(manifest, label_space)
        if not rows:
            raise DataError(f"{manifest}: the manifest has no rows (nothing was mined: lower tau_sim / tau_conf / margin)")
        self.root = Path(root).expanduser() if root is not None else manifest.parent
        self.grayscale = grayscale
        self.paths = [Path(r.path) if Path(r.path).is_absolute() else self.root / r.path for r in rows]
        self.ids = [r.path for r in rows]
        self.labels = np.asarray([r.pseudo_label for r in rows], dtype=np.int64)
        self.similarity = np.asarray([r.similarity for r in rows], dtype=np.float32)
        self.confidence = np.asarray([r.confidence for r in rows], dtype=np.float32)
        self.pool_index = np.asarray([r.pool_index for r in rows], dtype=np.int64)
        absent = [str(p) for p in self.paths[:1000] if not p.is_file()]
        if absent:
            raise DataError(f"{manifest}: {len(absent)}+ image(s) not found, first {absent[0]}; pass the pool folder "
                            "as root= (paths in the manifest are relative to it)")

    def load_image(self, index: int) -> np.ndarray:
        return read_image(self.paths[index], grayscale=self.grayscale)


def pixel_hash(image: np.ndarray) -> str:
    """A hash of decoded pixels (shape included): equal for the same image saved losslessly under any name/format."""
    a = np.ascontiguousarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] == 3 and (a[:, :, 0] == a[:, :, 1]).all() and (a[:, :, 1] == a[:, :, 2]).all():
        a = np.ascontiguousarray(a[:, :, 0])  # a grey image stored as RGB equals its one-channel copy
    h = hashlib.sha1(str(a.shape).encode())
    h.update(a.astype(np.uint8, copy=False).tobytes())
    return h.hexdigest()


def _hashes(ds: FERDataset, progress: Callable[[int], None] | None) -> list[str]:
    out = []
    for i in range(len(ds)):
        out.append(pixel_hash(ds.load_image(i)))
        if progress is not None:
            progress(1)
    return out


def overlap_mask(pool: FERDataset, eval_sets: Sequence[FERDataset], by: Sequence[str] = ("id", "pixels"),
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Boolean ``[len(pool)]``: True for pool images that appear in any of ``eval_sets``.

    ``by``: ``"id"`` compares sample ids exactly (e.g. the same relative path, or a source's ``name:split:row``
    id); ``"pixels"`` compares
    :func:`pixel_hash` of the decoded images (reads every image once).
    """
    unknown = set(by) - {"id", "pixels"}
    if unknown:
        raise ValueError(f"overlap_mask: by must name 'id' and/or 'pixels', got {sorted(unknown)}")
    mask = np.zeros(len(pool), dtype=bool)
    if "id" in by:
        eval_ids = {str(i) for ds in eval_sets for i in ds.ids}
        mask |= np.asarray([str(i) in eval_ids for i in pool.ids], dtype=bool)
    if "pixels" in by:
        eval_hashes = {h for ds in eval_sets for h in _hashes(ds, progress)}
        mask |= np.asarray([h in eval_hashes for h in _hashes(pool, progress)], dtype=bool)
    if mask.any():
        log.info("excluding %d pool image(s) that overlap the evaluation sets", int(mask.sum()))
    return mask
