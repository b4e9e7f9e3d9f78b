"""The dataset contract every ferkit dataset follows.

A dataset holds, for its N samples:
  * ``labels``      int64 [N], canonical class ids (see :mod:`ferkit.core.labels`); these are the labels
                    training uses (possibly noisy), ``clean_labels`` keeps the originals when noise is injected;
  * ``soft_labels`` optional float32 [N, C] (FER+ vote distributions, ...);
  * ``landmarks``   optional float32 [N, K, 2] in the raw image's pixel coordinates (x, y), NaN where missing;
  * ``ids``         a string per sample that names its source (a path, or ``file.csv:row``) for reports.

``__getitem__(i)`` returns a dict: ``image`` (after ``transform``; extra views such as ``image_strong``
when the transform makes them), ``label`` (int), ``index`` (= i, the key of all per-sample state), and
``landmarks`` / ``soft_label`` / ``clean_label`` when the dataset has them.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from ferkit.core.errors import DataError
from ferkit.core.labels import LabelSpace

log = logging.getLogger(__name__)


class FERDataset(Dataset):
    """Base class: subclasses set the arrays in ``__init__`` and implement :meth:`load_image`."""

    label_space: LabelSpace
    labels: np.ndarray
    clean_labels: np.ndarray | None = None
    soft_labels: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    ids: Sequence[str]
    #: "raise" (default) or "skip": an unreadable image makes ``__getitem__`` return a marker item
    #: ``{"bad_image": id, "reason": ...}`` that :func:`skip_bad_collate` drops and the data module counts
    on_bad_image: str = "raise"

    def __init__(self, label_space: LabelSpace, transform: Callable[..., dict] | None = None) -> None:
        self.label_space = label_space
        self.transform = transform

    # -- to implement -------------------------------------------------------------------------------
    def load_image(self, index: int) -> np.ndarray:
        """Return the raw image as uint8 HxW (grayscale) or HxWx3 (RGB)."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(len(self.labels))

    @property
    def num_classes(self) -> int:
        return self.label_space.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.label_space.names

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)

    def check_labels(self, source: str) -> None:
        """Raise :class:`DataError` naming ``source`` and the first bad row if a label is out of range."""
        labels = np.asarray(self.labels)
        bad = np.flatnonzero((labels < 0) | (labels >= self.num_classes))
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{source}: label {int(labels[i])} of sample {i} ({self.ids[i]}) is outside 0..{self.num_classes - 1} "
                f"({bad.size} such samples)"
            )

    def get_raw(self, index: int) -> dict[str, Any]:
        """The untransformed sample: uint8 image plus the per-sample arrays."""
        item: dict[str, Any] = {"image": self.load_image(index), "label": int(self.labels[index]), "index": int(index)}
        if self.landmarks is not None:
            item["landmarks"] = np.asarray(self.landmarks[index], dtype=np.float32)
        if self.soft_labels is not None:
            item["soft_label"] = np.asarray(self.soft_labels[index], dtype=np.float32)
        if self.clean_labels is not None:
            item["clean_label"] = int(self.clean_labels[index])
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            item = self.get_raw(index)
        except DataError as exc:
            if self.on_bad_image != "skip":
                raise
            return {"bad_image": str(self.ids[index]), "reason": str(exc)}
        if self.transform is not None:
            out = self.transform(image=item["image"], landmarks=item.get("landmarks"))
            item.update(out)
        else:
            item["image"] = torch.from_numpy(np.ascontiguousarray(item["image"]))
        if "landmarks" in item and not isinstance(item["landmarks"], torch.Tensor):
            item["landmarks"] = torch.as_tensor(item["landmarks"], dtype=torch.float32)
        if "soft_label" in item:
            item["soft_label"] = torch.as_tensor(item["soft_label"], dtype=torch.float32)
        return item


class SubsetFER(FERDataset):
    """A re-indexed selection of another dataset: item ``index`` runs over 0..len(subset)-1, so per-sample
    state sized by ``len(dataset)`` stays dense; ``parent_indices`` maps back to the parent."""

    def __init__(self, parent: FERDataset, indices: Sequence[int] | np.ndarray, transform: Callable[..., dict] | None = None) -> None:
        super().__init__(parent.label_space, transform if transform is not None else parent.transform)
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(parent)):
            raise IndexError(f"subset indices must lie in 0..{len(parent) - 1}")
        self.parent, self.parent_indices = parent, idx
        self.labels = np.asarray(parent.labels)[idx]
        self.clean_labels = None if parent.clean_labels is None else np.asarray(parent.clean_labels)[idx]
        self.soft_labels = None if parent.soft_labels is None else np.asarray(parent.soft_labels)[idx]
        self.landmarks = None if parent.landmarks is None else np.asarray(parent.landmarks)[idx]
        self.ids = [parent.ids[i] for i in idx]
        self.on_bad_image = parent.on_bad_image

    def load_image(self, index: int) -> np.ndarray:
        return self.parent.load_image(int(self.parent_indices[index]))


def skip_bad_collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate`` over the readable items; the ids and reasons of skipped ones go to ``batch["bad_images"]``.

    Used with ``on_bad_image="skip"``; the data module pops ``bad_images`` before the batch reaches the model,
    counts them and logs each one.
    """
    bad = [(it["bad_image"], it["reason"]) for it in items if "bad_image" in it]
    good = [it for it in items if "bad_image" not in it]
    if not good:
        raise DataError("every image of a batch is unreadable: " + "; ".join(f"{i}: {r}" for i, r in bad[:5])
                        + " -- run the data check (FERDataModule.check) to list all bad files")
    batch = default_collate(good)
    if bad:
        batch["bad_images"] = bad
    return batch
