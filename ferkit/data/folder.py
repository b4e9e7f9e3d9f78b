"""Any facial-expression dataset stored one folder per class (CK+, JAFFE, SFEW, FER2013-as-images, your own).

::

    root/[split/]<class>/**/*.png|jpg|jpeg|bmp|tif|tiff

Folder names are matched to ferkit's canonical classes by :func:`ferkit.core.labels.canonical_name`, so
``happiness``, ``Happy``, ``anger`` and ``angry`` all work; other names are mapped with ``class_names=``.
Images may sit in sub-folders of a class folder (e.g. CK+'s subject/session folders).
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ferkit.core.errors import DataError
from ferkit.data.base import FERDataset
from ferkit.data.io import IMAGE_EXTENSIONS, PathLike, read_image
from ferkit.core.labels import _ALIASES, LabelSpace, canonical_name  # _ALIASES: the accepted spellings

log = logging.getLogger(__name__)

#: folder names accepted as the validation split, in the order they are looked for
VAL_FOLDER_NAMES: tuple[str, ...] = ("val", "valid", "validation")

_SPLIT_LIKE = {"train", "training", "val", "valid", "validation", "test", "testing", "publictest", "privatetest"}


class ImageFolderFER(FERDataset):
    """A class-per-folder image dataset mapped onto the canonical label space.

    Args:
        root: the dataset folder.
        split: a sub-folder of ``root`` holding the class folders (``"train"``, ``"test"``, ...), or None when the
            class folders are directly in ``root``.
        class_names: folder name -> expression name for folders whose names are not standard
            (e.g. ``{"HA": "happy", "NE": "neutral"}``); standard names need no entry.
        num_classes: 7 or 8; by default 8 if there is a contempt folder, else 7. With 7, contempt images are
            dropped (and the count logged).
        grayscale: read images as HxW grayscale instead of HxWx3 RGB.
        transform: see :class:`~ferkit.data.base.FERDataset`.

    Attributes:
        paths: each sample's file; ``ids`` are the paths relative to ``root/[split]`` (``happy/img01.png``).
        folder_classes: ``{folder name: canonical class name}`` as resolved.
    """

    def __init__(
        self,
        root: PathLike,
        split: str | None = None,
        class_names: Mapping[str, str] | None = None,
        num_classes: int | None = None,
        grayscale: bool = False,
        transform: Callable[..., dict] | None = None,
    ) -> None:
        root = Path(root)
        base = root / split if split else root
        if not base.is_dir():
            subdirs = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
            where = f"; folders in {root}: {subdirs}" if root.is_dir() else ""
            fix = (f"; name the validation folder one of {list(VAL_FOLDER_NAMES)}, or set data.val_fraction to hold "
                   "out part of train") if split in VAL_FOLDER_NAMES else ""
            raise DataError(f"{base}: dataset folder not found{where}{fix}")
        class_dirs = sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not class_dirs:
            raise DataError(f"{base}: no class folders found; expected {base}/<class>/<images>")
        overrides = dict(class_names or {})
        resolved: dict[str, str] = {}
        unknown: list[str] = []
        for d in class_dirs:
            try:
                resolved[d.name] = canonical_name(overrides.get(d.name, d.name))
            except KeyError:
                unknown.append(d.name)
        if unknown:
            hint = ""
            if split is None and any(u.lower() in _SPLIT_LIKE for u in unknown):
                hint = " These look like split folders: pass split='<name>' to read one of them."
            raise DataError(
                f"{base}: cannot map folder(s) {unknown} to an expression. Accepted folder names (any case): "
                f"{sorted(_ALIASES)}; map other names with class_names={{'{unknown[0]}': 'happy', ...}}.{hint}"
            )
        has_contempt = "contempt" in resolved.values()
        if num_classes is None:
            num_classes = 8 if has_contempt else 7
        if num_classes not in (7, 8):
            raise ValueError(f"num_classes must be 7 or 8 (or None to infer), not {num_classes}")
        super().__init__(LabelSpace.basic(num_classes), transform)
        self.root, self.split, self.grayscale = root, split, grayscale
        self.folder_classes = resolved

        paths: list[Path] = []
        labels: list[int] = []
        dropped: Counter[str] = Counter()
        for d in class_dirs:
            files = sorted(
                p for p in d.rglob("*")
                if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(d).parts)
            )
            if not files:
                raise DataError(
                    f"{d}: class folder has no images (looked for {', '.join(IMAGE_EXTENSIONS)}); "
                    "remove the folder or add its images"
                )
            name = resolved[d.name]
            if name not in self.label_space.names:
                dropped[name] += len(files)
                continue
            paths.extend(files)
            labels.extend([self.label_space.index(name)] * len(files))
        if not paths:
            raise DataError(f"{base}: no images left in the {num_classes}-class label space")
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)
        self.ids = [p.relative_to(base).as_posix() for p in paths]
        self.check_labels(str(base))
        if dropped:
            log.info("%s: dropped %s (not in the %d-class label space)", base, dict(dropped), num_classes)
        log.info("%s: %d images in %d classes", base, len(paths), len(class_dirs))

    def load_image(self, index: int) -> np.ndarray:
        return read_image(self.paths[index], grayscale=self.grayscale)



class UnlabelledImageFolder(FERDataset):
    """Every image under ``root`` (recursively, any extension the loaders read), without labels: for ``predict``.

    Items carry ``image``, ``index`` and ``id`` (the path relative to ``root``) and no ``label``.

    Args:
        root: the folder of images.
        label_space: the classes predictions are named after (the trained model's).
        grayscale: read images as grayscale.
        transform: see :class:`~ferkit.data.base.FERDataset`.
    """

    def __init__(self, root: PathLike, label_space: LabelSpace, grayscale: bool = False,
                 transform: Callable[..., dict] | None = None) -> None:
        super().__init__(label_space, transform)
        self.root, self.grayscale = Path(root).expanduser(), grayscale
        if not self.root.is_dir():
            raise DataError(f"{self.root}: predict folder not found; pass data.predict_folder= a folder of images")
        self.paths = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                            and not any(part.startswith(".") for part in p.relative_to(self.root).parts))
        if not self.paths:
            raise DataError(f"{self.root}: no images found (looked recursively for {', '.join(IMAGE_EXTENSIONS)})")
        self.labels = np.full(len(self.paths), -1, dtype=np.int64)
        self.ids = [p.relative_to(self.root).as_posix() for p in self.paths]
        log.info("%s: %d unlabelled images to predict", self.root, len(self.paths))

    def load_image(self, index: int) -> np.ndarray:
        return read_image(self.paths[index], grayscale=self.grayscale)

    def get_raw(self, index: int) -> dict:
        return {"image": self.load_image(index), "index": int(index), "id": self.ids[index]}
