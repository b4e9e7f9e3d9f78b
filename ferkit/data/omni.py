"""OmniSource: a labelled source (optionally only a fraction of its training labels) plus a mined set.

The data side of Omni-supervised FER (Liu et al., arXiv 2005.08551): the training split is the labelled images
plus, when a manifest is given, the mined pool images with their pseudo-labels. Every training item carries
``source`` (0 = labelled, 1 = mined) so that the LightningModule can weight each source's loss; evaluation splits
are the labelled source's, untouched.

``labelled_fraction`` keeps a class-stratified fraction of the training labels (seeded) and makes the rest the
``"pool"`` split: unlabelled for mining, with the true labels kept as ``hidden_labels`` so that mining precision and
recall are measurable (the FER+ 10 %-labelled protocol). A manifest mined from that pool refers to its rows by
``pool_index``; a manifest mined from a folder refers to files (``mined_root`` is the folder).

::

    data:
      dataset:
        class_path: ferkit.data.OmniSource
        init_args:
          labelled: {class_path: ferkit.data.FERPlusSource, init_args: {root: ../shared/data/fer2013}}
          labelled_fraction: 0.1
          mined_manifest: runs/omni/mined.csv
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ferkit.core.errors import DataError
from ferkit.core.labels import LabelSpace
from ferkit.data.base import FERDataset, SubsetFER
from ferkit.data.manifest import ManifestDataset, read_manifest
from ferkit.data.sources import DatasetSource

log = logging.getLogger(__name__)

__all__ = ["OmniSource", "OmniTrainSet", "stratified_fraction"]

LABELLED, MINED = 0, 1


def stratified_fraction(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a class-stratified ``fraction`` of ``labels`` (at least one per present class), by ``seed``."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n = max(1, int(round(fraction * len(members))))
        keep.append(rng.choice(members, size=n, replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


class OmniTrainSet(FERDataset):
    """Labelled and mined samples in one dataset; items carry ``source`` (0 labelled, 1 mined).

    The mined part's labels are its pseudo-labels. When the labelled part carries ``soft_label``, mined items carry
    the one-hot of their pseudo-label, so that every item has the same keys.
    """

    def __init__(self, labelled: FERDataset, mined: FERDataset | None = None) -> None:
        super().__init__(labelled.label_space, labelled.transform)
        self.parts = [labelled] + ([mined] if mined is not None else [])
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.sources = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, p in enumerate(self.parts)])
        self.labels = np.concatenate([np.asarray(p.labels) for p in self.parts])
        self.ids = [str(i) for p in self.parts for i in p.ids]
        self.on_bad_image = labelled.on_bad_image
        self.has_soft = labelled.soft_labels is not None
        if self.has_soft:
            eye = np.eye(self.num_classes, dtype=np.float32)
            self.soft_labels = np.concatenate([np.asarray(labelled.soft_labels, dtype=np.float32)]
                                              + [eye[np.asarray(p.labels)] for p in self.parts[1:]])

    def _locate(self, index: int) -> tuple[int, int]:
        part = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return part, int(index - self.offsets[part])

    def load_image(self, index: int) -> np.ndarray:
        part, i = self._locate(index)
        return self.parts[part].load_image(i)

    def get_raw(self, index: int) -> dict[str, Any]:
        item = super().get_raw(index)
        item["source"] = int(self.sources[index])
        return item


class OmniSource(DatasetSource):
    """Labelled data (all or a stratified fraction of its training labels) plus a mined set (Omni).

    Args:
        labelled: the labelled dataset source (FER+, RAF-DB, a folder, synthetic faces, ...).
        labelled_fraction: keep this fraction of the training labels (class-stratified, by ``seed``); the rest
            is the ``"pool"`` split. 1.0 keeps all (then there is no pool split).
        mined_manifest: a manifest written by ``ferkit omni mine``; None trains on labelled data only.
        mined_root: the folder the manifest's paths are relative to (a folder pool). Without it, the manifest must
            refer to this source's ``"pool"`` split by ``pool_index``.
        seed: seed of the labelled fraction (and of the pool sample).
        pool_limit: keep only this many pool images (a seeded random sample of the rest, in index order), e.g. to
            try the mining on part of a large pool first; None keeps the whole rest.
    """

    def __init__(self, labelled: DatasetSource, labelled_fraction: float = 1.0, mined_manifest: str | None = None,
                 mined_root: str | None = None, seed: int = 0, pool_limit: int | None = None) -> None:
        if not 0.0 < labelled_fraction <= 1.0:
            raise ValueError(f"OmniSource: labelled_fraction must be in (0, 1], got {labelled_fraction}")
        if pool_limit is not None and pool_limit < 1:
            raise ValueError(f"OmniSource: pool_limit must be a positive number of images or null, got {pool_limit}")
        self.pool_limit = pool_limit
        if not isinstance(labelled, DatasetSource):
            raise TypeError(f"OmniSource: labelled must be a DatasetSource (class_path: ferkit.data.FERPlusSource, "
                            f"...), got {type(labelled).__name__}")
        self.labelled, self.labelled_fraction, self.seed = labelled, float(labelled_fraction), int(seed)
        self.mined_manifest, self.mined_root = mined_manifest, mined_root
        self.root = getattr(labelled, "root", None)
        self.splits = tuple(labelled.splits) + (("pool",) if labelled_fraction < 1.0 else ())  # type: ignore[misc]
        self.has_landmarks = labelled.has_landmarks  # type: ignore[misc]

    @property
    def label_space(self) -> LabelSpace:
        return self.labelled.label_space

    def _labelled_split(self) -> tuple[FERDataset, np.ndarray, np.ndarray]:
        full = self.labelled.build("train", None)
        if self.labelled_fraction >= 1.0:
            idx = np.arange(len(full))
        else:
            idx = stratified_fraction(np.asarray(full.labels), self.labelled_fraction, self.seed)
        rest = np.setdiff1d(np.arange(len(full)), idx)
        if self.pool_limit is not None and self.pool_limit < len(rest):
            rest = np.sort(np.random.default_rng(self.seed).permutation(rest)[:self.pool_limit])
        return full, idx, rest

    def build(self, split: str, transform: Callable[..., dict] | None = None) -> FERDataset:
        self._check_split(split)
        if split in ("val", "test"):
            return self.labelled.build(split, transform)
        full, idx, rest = self._labelled_split()
        if split == "pool":
            pool = SubsetFER(full, rest, transform)
            pool.hidden_labels = np.asarray(pool.labels).copy()  # for mining precision / recall only
            pool.ids = [f"pool:{i}" for i in range(len(rest))]
            return pool
        labelled = SubsetFER(full, idx, transform) if len(idx) < len(full) else full
        labelled.transform = transform
        mined = self._mined(full, rest) if self.mined_manifest else None
        ds = OmniTrainSet(labelled, mined)
        ds.transform = transform
        log.info("Omni training set: %d labelled + %d mined images", len(labelled), 0 if mined is None else len(mined))
        return ds

    def _mined(self, full: FERDataset, rest: np.ndarray) -> FERDataset:
        manifest = Path(str(self.mined_manifest)).expanduser()
        if self.mined_root is not None:
            return ManifestDataset(manifest, self.label_space, root=self.mined_root)
        rows = read_manifest(manifest, self.label_space)
        pidx = np.asarray([r.pool_index for r in rows], dtype=np.int64)
        if len(rest) == 0:
            raise DataError(f"{manifest}: no mined_root given and this source has no pool split (labelled_fraction=1): "
                            "pass data.dataset.init_args.mined_root= the folder the manifest's paths are in")
        bad = np.flatnonzero((pidx < 0) | (pidx >= len(rest)))
        if bad.size:
            raise DataError(f"{manifest}, row {int(bad[0]) + 2}: pool_index {int(pidx[bad[0]])} is not a row of the pool "
                            f"split (0..{len(rest) - 1}); was it mined with another labelled_fraction or seed? For a "
                            "folder pool pass mined_root=")
        mined = SubsetFER(full, rest[pidx])
        mined.labels = np.asarray([r.pseudo_label for r in rows], dtype=np.int64)
        mined.clean_labels = None
        mined.soft_labels = None
        mined.ids = [f"mined:{r.path}" for r in rows]
        return mined
