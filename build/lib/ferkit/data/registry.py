"""Dataset registry: one name per supported dataset layout, with its label space and split names.

``build_dataset(name, root, split, transform, **kwargs)`` is what the DataModule and CLI use; new layouts
register with :func:`register_dataset`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ferkit.core.errors import DataError
from ferkit.data.base import FERDataset
from ferkit.core.labels import LabelSpace


@dataclass
class DatasetEntry:
    builder: Callable[..., FERDataset]
    # canonical split name -> the dataset's own split, or None when the dataset has no such split
    splits: dict[str, str | None]
    label_space: Callable[[dict], LabelSpace | None]
    needs_root: bool = True
    doc: str = ""
    has_landmarks: bool = False


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, entry: DatasetEntry) -> None:
    DATASETS[name] = entry


def available_datasets() -> list[str]:
    return sorted(DATASETS)


def get_entry(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {available_datasets()}")
    return DATASETS[name]


def _find(root: str | os.PathLike, names: tuple[str, ...], what: str) -> Path:
    root = Path(root).expanduser()
    if root.is_file():
        return root
    for n in names:
        if (root / n).exists():
            return root / n
    raise DataError(f"{what}: none of {list(names)} found in {root}; pass data.root= the folder that holds it (or the file itself)")


def _synthetic(root, split, transform, **kw):
    from ferkit.data.synthetic import SyntheticFaces

    sizes = {"train": kw.pop("num_train", 4000), "val": kw.pop("num_val", 1000), "test": kw.pop("num_test", 1000)}
    return SyntheticFaces(num_samples=sizes[split], split=split, transform=transform, **kw)


def _fer2013(root, split, transform, **kw):
    from ferkit.data.fer2013 import FER2013

    return FER2013(_find(root, ("fer2013.csv", "fer2013.csv.gz"), "FER2013"), split=split, transform=transform, **kw)


def _ferplus(root, split, transform, **kw):
    from ferkit.data.ferplus import FERPlus

    base = _find(root, ("fer2013.csv", "fer2013.csv.gz"), "FER2013 pixels for FER+")
    votes = Path(kw.pop("ferplus_csv", None) or (Path(root) if Path(root).is_dir() else Path(root).parent) / "fer2013new.csv")
    return FERPlus(base, votes, split=split, transform=transform, **kw)


def _rafdb(root, split, transform, **kw):
    from ferkit.data.rafdb import RAFDB

    return RAFDB(root, split=split, transform=transform, **kw)


def _affectnet(root, split, transform, **kw):
    from ferkit.data.affectnet import AffectNet

    return AffectNet(root, split=split, transform=transform, **kw)


def _folder(root, split, transform, **kw):
    from ferkit.data.folder import ImageFolderFER

    return ImageFolderFER(root, split=split, transform=transform, **kw)


register_dataset("synthetic", DatasetEntry(
    _synthetic, {"train": "train", "val": "val", "test": "test"},
    lambda kw: LabelSpace.basic(kw.get("num_classes", 7)), needs_root=False, has_landmarks=True,
    doc="procedurally generated faces with exact 68-point landmarks (no files)"))
register_dataset("fer2013", DatasetEntry(
    _fer2013, {"train": "train", "val": "val", "test": "test"}, lambda kw: LabelSpace.basic(7),
    doc="Kaggle fer2013.csv(.gz): Training / PublicTest / PrivateTest"))
register_dataset("ferplus", DatasetEntry(
    _ferplus, {"train": "train", "val": "val", "test": "test"}, lambda kw: LabelSpace.basic(kw.get("num_classes", 8)),
    doc="fer2013.csv(.gz) + fer2013new.csv votes, label_mode majority / probability / crossentropy"))
register_dataset("rafdb", DatasetEntry(
    _rafdb, {"train": "train", "val": None, "test": "test"}, lambda kw: LabelSpace.basic(7),
    doc="RAF-DB basic: EmoLabel/list_patition_label.txt + Image/aligned/"))
register_dataset("affectnet", DatasetEntry(
    _affectnet, {"train": "train", "val": None, "test": "val"}, lambda kw: LabelSpace.basic(kw.get("num_classes", 7)),
    has_landmarks=True, doc="AffectNet manual annotations: training.csv / validation.csv + Manually_Annotated_Images/"))
register_dataset("folder", DatasetEntry(
    _folder, {"train": "train", "val": "val", "test": "test"}, lambda kw: None,
    doc="class-per-folder layout root/<split>/<class>/*.png (CK+, JAFFE, SFEW, FER2013 folders)"))


def build_dataset(name: str, root: str | None, split: str, transform=None, **kwargs: Any) -> FERDataset:
    """Build split ``split`` ('train' | 'val' | 'test') of dataset ``name``."""
    entry = get_entry(name)
    own = entry.splits.get(split)
    if own is None:
        raise DataError(f"dataset {name!r} has no {split!r} split (it has {[k for k, v in entry.splits.items() if v]})")
    if entry.needs_root and not root:
        raise DataError(f"dataset {name!r} needs data.root= (the folder holding its files): {entry.doc}")
    return entry.builder(root, own, transform, **kwargs)
