"""Dataset sources: one small typed class per dataset layout, the object a config names with ``class_path``.

A source holds where a dataset lives and its own options, each declared once in its ``__init__``; it knows its
label space and which canonical splits it has, and builds a :class:`~ferkit.data.base.FERDataset` per split::

    data:
      dataset:
        class_path: ferkit.data.FERPlusSource
        init_args: {root: /data/fer2013, label_mode: soft}

:func:`available_sources` lists them with one line each (``ferkit info`` prints it). A new layout is a subclass
of :class:`DatasetSource` implementing :meth:`~DatasetSource.build` (and :attr:`~DatasetSource.label_space`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, ClassVar, Mapping

from tqdm.auto import tqdm

from ferkit.core.errors import DataError
from ferkit.core.labels import LabelSpace
from ferkit.data.affectnet import AffectNet
from ferkit.data.base import FERDataset
from ferkit.data.fer2013 import FER2013
from ferkit.data.ferplus import FER2013RealNoise, FERPlus
from ferkit.data.folder import VAL_FOLDER_NAMES, ImageFolderFER
from ferkit.data.rafdb import RAFDB
from ferkit.data.synthetic import SyntheticFaces

log = logging.getLogger(__name__)

__all__ = [
    "AffectNetSource", "DatasetSource", "FER2013Source", "FERPlusSource", "FolderSource", "RAFDBSource",
    "SyntheticSource", "available_sources", "validate_dataset",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")
FER2013_FILES: tuple[str, ...] = ("fer2013.csv", "fer2013.csv.gz")


def _find(root: str | Path, names: tuple[str, ...], what: str, argument: str = "root") -> Path:
    """``root`` itself when it is a file, else the first of ``names`` inside it."""
    path = Path(root).expanduser()
    if path.is_file():
        return path
    for n in names:
        if (path / n).exists():
            return path / n
    raise DataError(f"{what}: none of {list(names)} found in {path}; pass {argument}= the folder that holds it "
                    "(or the file itself)")


class DatasetSource:
    """A dataset on disk (or generated) with typed options.

    Subclasses set :attr:`splits` (the canonical splits they have), implement :meth:`build` and
    :attr:`label_space`. ``root`` is where the files are (``None`` for generated data).
    """

    #: canonical split names this source can build
    splits: ClassVar[tuple[str, ...]] = SPLITS
    #: whether items carry 68-point landmarks without a landmark cache
    has_landmarks: ClassVar[bool] = False

    root: str | None = None

    @property
    def label_space(self) -> LabelSpace:
        raise NotImplementedError

    def has_split(self, split: str) -> bool:
        return split in self.splits

    def build(self, split: str, transform: Callable[..., dict] | None = None) -> FERDataset:
        """The dataset of canonical split ``split`` ("train" | "val" | "test")."""
        raise NotImplementedError

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise DataError(f"{type(self).__name__} has no {split!r} split (it has {list(self.splits)})"
                            + ("; set data.val_fraction to hold out part of train" if split == "val" else ""))

    def validate(self, splits: tuple[str, ...] | None = None, progress: bool = True) -> list[tuple[str, str]]:
        """Read every file of ``splits`` (default: all) once; return every problem as ``(id or path, reason)``."""
        problems: list[tuple[str, str]] = []
        for split in splits or self.splits:
            try:
                ds = self.build(split)
            except DataError as exc:
                problems.append((f"{type(self).__name__}({self.root}) split {split}", str(exc)))
                continue
            problems.extend(validate_dataset(ds, progress=progress, desc=f"checking {split}"))
        return problems

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        return (cls.__doc__ or cls.__name__).strip().splitlines()[0]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def validate_dataset(ds: FERDataset, progress: bool = True, desc: str = "checking") -> list[tuple[str, str]]:
    """Load every image of ``ds`` once (with a progress bar); return ``(id, reason)`` for each one that fails."""
    problems: list[tuple[str, str]] = []
    for i in tqdm(range(len(ds)), desc=desc, disable=not progress, unit="img", leave=False):
        try:
            image = ds.load_image(i)
            if image is None or getattr(image, "size", 0) == 0:
                raise DataError("empty image")
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the check
            problems.append((str(ds.ids[i]), str(exc) or type(exc).__name__))
    return problems


class SyntheticSource(DatasetSource):
    """Procedurally generated faces with exact 68-point landmarks (no files; the default)."""

    has_landmarks = True

    def __init__(self, num_train: int = 4000, num_val: int = 1000, num_test: int = 1000, image_size: int = 64,
                 num_classes: int = 7, seed: int = 0, difficulty: float = 1.0, ambiguity: float = 1.0,
                 grayscale: bool = False, cache: bool = False) -> None:
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.image_size, self.num_classes, self.seed = image_size, num_classes, seed
        self.difficulty, self.ambiguity, self.grayscale, self.cache = difficulty, ambiguity, grayscale, cache
        if num_classes not in (7, 8):
            raise ValueError(f"SyntheticSource: num_classes must be 7 or 8, got {num_classes}")

    @property
    def label_space(self) -> LabelSpace:
        return LabelSpace.basic(self.num_classes)

    def build(self, split: str, transform=None) -> FERDataset:
        self._check_split(split)
        size = {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]
        return SyntheticFaces(num_samples=size, split=split, image_size=self.image_size, num_classes=self.num_classes,
                              seed=self.seed, grayscale=self.grayscale, transform=transform,
                              difficulty=self.difficulty, ambiguity=self.ambiguity, cache=self.cache)


class FER2013Source(DatasetSource):
    """Kaggle fer2013.csv(.gz): Training / PublicTest / PrivateTest; optional FER+ majority as clean labels.

    Args:
        root: the folder holding ``fer2013.csv`` (or ``.gz``), or the file itself.
        clean_labels: ``None``, or ``"ferplus"``: real label noise with its ground truth. The training split keeps
            FER2013's own labels as training labels and carries the FER+ 7-class majority vote (Barsoum et al.
            2016) as ``clean_label``; validation and test are labelled with the FER+ majority, so they are
            evaluated against the clean labels. Images without a 7-class FER+ majority (no majority, unknown,
            not a face, contempt, or dropped by FER+) are **dropped** from every split, and the count is logged.
        ferplus_csv: Microsoft's ``fer2013new.csv``; default: ``fer2013new.csv`` beside ``fer2013.csv``.
    """

    def __init__(self, root: str, clean_labels: str | None = None, ferplus_csv: str | None = None) -> None:
        if clean_labels not in (None, "ferplus"):
            raise ValueError(f"FER2013Source: clean_labels must be None or 'ferplus', got {clean_labels!r}")
        self.root, self.clean_labels, self.ferplus_csv = root, clean_labels, ferplus_csv

    @property
    def label_space(self) -> LabelSpace:
        return LabelSpace.basic(7)

    def build(self, split: str, transform=None) -> FERDataset:
        self._check_split(split)
        csv = _find(self.root, FER2013_FILES, "FER2013")
        if self.clean_labels is None:
            return FER2013(csv, split=split, transform=transform)
        votes = Path(self.ferplus_csv) if self.ferplus_csv else csv.parent / "fer2013new.csv"
        return FER2013RealNoise(csv, votes, split=split, transform=transform)


class FERPlusSource(DatasetSource):
    """fer2013.csv(.gz) pixels + fer2013new.csv votes (Barsoum et al. 2016); label_mode majority | soft.

    Args:
        root: the folder holding ``fer2013.csv`` (or ``.gz``) and ``fer2013new.csv``, or ``fer2013.csv`` itself.
        label_mode: the training labels: ``"majority"`` (one label per image; images without a majority dropped)
            or ``"soft"`` (items also carry ``soft_label``, the FER+ vote distribution, and modules train on it).
        eval_label_mode: the labels of the validation and test splits, ``"majority"`` by default whatever
            ``label_mode`` is, as the FER+ authors evaluate: so a soft-trained model is tested on the very images and
            labels a majority-trained one is. Set ``"soft"`` to evaluate on the soft mode's images and argmax labels.
        num_classes: 8 (with contempt) or 7 (contempt images dropped).
        ferplus_csv: the votes file when it is not ``fer2013new.csv`` beside ``fer2013.csv``.
    """

    def __init__(self, root: str, label_mode: str = "majority", num_classes: int = 8,
                 ferplus_csv: str | None = None, eval_label_mode: str = "majority") -> None:
        if eval_label_mode not in ("majority", "soft"):
            raise ValueError(f"FERPlusSource: eval_label_mode must be 'majority' or 'soft', got {eval_label_mode!r}")
        self.eval_label_mode = eval_label_mode
        if label_mode not in ("majority", "soft"):
            raise ValueError(f"FERPlusSource: label_mode must be 'majority' or 'soft', got {label_mode!r} "
                             "(the former 'probability' and 'crossentropy' modes are both 'soft' now)")
        if num_classes not in (7, 8):
            raise ValueError(f"FERPlusSource: num_classes must be 7 or 8, got {num_classes}")
        self.root, self.label_mode, self.num_classes, self.ferplus_csv = root, label_mode, num_classes, ferplus_csv

    @property
    def label_space(self) -> LabelSpace:
        return LabelSpace.basic(self.num_classes)

    def build(self, split: str, transform=None) -> FERDataset:
        self._check_split(split)
        csv = _find(self.root, FER2013_FILES, "FER2013 pixels for FER+")
        votes = Path(self.ferplus_csv) if self.ferplus_csv else csv.parent / "fer2013new.csv"
        mode = self.label_mode if split == "train" else self.eval_label_mode
        return FERPlus(csv, votes, split=split, label_mode=mode, num_classes=self.num_classes, transform=transform)


class RAFDBSource(DatasetSource):
    """RAF-DB basic: EmoLabel/list_patition_label.txt + Image/aligned/ (train and test; no validation split)."""

    splits = ("train", "test")

    def __init__(self, root: str) -> None:
        self.root = root

    @property
    def label_space(self) -> LabelSpace:
        return LabelSpace.basic(7)

    def build(self, split: str, transform=None) -> FERDataset:
        self._check_split(split)
        return RAFDB(self.root, split=split, transform=transform)


class AffectNetSource(DatasetSource):
    """AffectNet manual annotations: training.csv / validation.csv + Manually_Annotated_Images/ (with landmarks).

    AffectNet's test set is not public: ferkit's ``test`` split is its ``validation.csv``; there is no ``val``
    split (set ``data.val_fraction`` to hold out part of train).
    """

    splits = ("train", "test")
    has_landmarks = True

    def __init__(self, root: str, num_classes: int = 7, crop_faces: bool = True, check_files: bool = True) -> None:
        if num_classes not in (7, 8):
            raise ValueError(f"AffectNetSource: num_classes must be 7 or 8, got {num_classes}")
        self.root, self.num_classes, self.crop_faces, self.check_files = root, num_classes, crop_faces, check_files

    @property
    def label_space(self) -> LabelSpace:
        return LabelSpace.basic(self.num_classes)

    def build(self, split: str, transform=None) -> FERDataset:
        self._check_split(split)
        return AffectNet(self.root, split="train" if split == "train" else "val", num_classes=self.num_classes,
                         transform=transform, crop_faces=self.crop_faces, check_files=self.check_files)


class FolderSource(DatasetSource):
    """Class-per-folder images root/<split>/<class>/**/*.png|jpg|... (CK+, JAFFE, SFEW, your own).

    Args:
        root: the dataset folder, holding ``train/`` and ``test/`` and optionally a validation folder named
            ``val/``, ``valid/`` or ``validation/`` (without one, set ``data.val_fraction``).
        class_names: folder name -> expression name for non-standard folder names (``{"HA": "happy"}``).
        num_classes: 7 or 8; by default inferred from the training folders (8 when there is a contempt folder).
        grayscale: read images as grayscale.
    """

    def __init__(self, root: str, class_names: Mapping[str, str] | None = None, num_classes: int | None = None,
                 grayscale: bool = False) -> None:
        self.root, self.class_names, self.num_classes, self.grayscale = root, class_names, num_classes, grayscale
        self._space: LabelSpace | None = None

    def _folder(self, split: str) -> str | None:
        base = Path(self.root).expanduser()
        names = VAL_FOLDER_NAMES if split == "val" else (split,)
        return next((n for n in names if (base / n).is_dir()), None)

    @property
    def splits(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(s for s in SPLITS if self._folder(s) is not None)

    @property
    def label_space(self) -> LabelSpace:
        if self._space is None:
            first = "train" if self._folder("train") else "test"
            self._space = self.build(first).label_space
        return self._space

    def build(self, split: str, transform=None) -> FERDataset:
        folder = self._folder(split)
        if folder is None:
            root = Path(self.root).expanduser()
            present = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
            if len(present) > 12:
                present = present[:12] + [f"... {len(present) - 12} more"]
            if split == "val":
                raise DataError(
                    f"{root}: no validation folder (looked for {list(VAL_FOLDER_NAMES)}; found {present}); add one, "
                    "or set data.val_fraction (e.g. 0.1) to hold out part of train for validation")
            raise DataError(f"{root}: no {split!r} folder (found {present}); expected {root}/{split}/<class>/<images>")
        ds = ImageFolderFER(self.root, split=folder, class_names=self.class_names, num_classes=self.num_classes,
                            grayscale=self.grayscale, transform=transform)
        if split != "train" and self.num_classes is None and self._folder("train") is not None:
            train = self.label_space
            if ds.num_classes != train.num_classes:
                extra = sorted(set(ds.class_names) ^ set(train.names))
                raise DataError(
                    f"{Path(self.root) / folder}: the {split!r} split has {ds.num_classes} classes but train has "
                    f"{train.num_classes} (class {extra} is in only one of them); add its images to the other split, "
                    f"remove its folder, or set num_classes= on the source (7 drops contempt everywhere)")
        elif split == "train" and self._space is None:
            self._space = ds.label_space
        return ds


_SOURCES: tuple[type[DatasetSource], ...] = (SyntheticSource, FER2013Source, FERPlusSource, RAFDBSource,
                                             AffectNetSource, FolderSource)


def available_sources() -> dict[str, str]:
    """``{class path: one-line description}`` of every dataset source ferkit ships (what ``ferkit info`` lists)."""
    return {f"ferkit.data.{cls.__name__}": cls.summary() for cls in _SOURCES}
