"""RAF-DB basic emotions (Li et al., CVPR 2017) in its distributed layout.

::

    root/EmoLabel/list_patition_label.txt     lines "train_00001.jpg 5" (the file name's typo is RAF-DB's)
    root/Image/aligned/train_00001_aligned.jpg  100x100 aligned RGB faces

Labels 1..7 are surprise, fear, disgust, happiness, sadness, anger, neutral; ferkit maps them to its canonical
ids (e.g. RAF-DB 4, happiness, is canonical 3, happy). The split is the file name's prefix (train / test);
RAF-DB has no validation split.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ferkit.core.errors import DataError
from ferkit.data.base import FERDataset
from ferkit.data.fer2013 import check_split
from ferkit.data.io import PathLike, read_image, read_text_lines
from ferkit.core.labels import RAFDB_IDS, LabelSpace, make_mapping

log = logging.getLogger(__name__)

LIST_FILE = Path("EmoLabel", "list_patition_label.txt")
IMAGE_DIR = Path("Image", "aligned")
SPLITS: tuple[str, ...] = ("train", "test")


def aligned_name(name: str) -> str:
    """``train_00001.jpg`` -> ``train_00001_aligned.jpg`` (how RAF-DB names the aligned images)."""
    stem, ext = os.path.splitext(name)
    return f"{stem}_aligned{ext}"


class RAFDB(FERDataset):
    """RAF-DB basic set, aligned 100x100 RGB images, 7 classes.

    Args:
        root: the RAF-DB ``basic`` folder (holding ``EmoLabel/`` and ``Image/aligned/``).
        split: ``"train"`` (12,271 images) or ``"test"`` (3,068).
        transform: see :class:`~ferkit.data.base.FERDataset`.

    Every listed image is checked to exist when the dataset is built (one directory listing), so a
    partial download fails at once with the missing files named, not hours into training.

    Attributes:
        paths: the image path of each sample; ``ids`` are the list file's names (``train_00001.jpg``).
    """

    def __init__(self, root: PathLike, split: str = "train", transform: Callable[..., dict] | None = None) -> None:
        super().__init__(LabelSpace.basic(7), transform)
        check_split(split, SPLITS)
        self.root, self.split = Path(root), split
        list_file = self.root / LIST_FILE
        if not list_file.is_file():
            raise DataError(
                f"{list_file}: RAF-DB label list not found; `root` must be the RAF-DB basic folder containing "
                f"{LIST_FILE} and {IMAGE_DIR}/ (got root={self.root})"
            )
        mapping = make_mapping(RAFDB_IDS, self.label_space)
        names: list[str] = []
        labels: list[int] = []
        for lineno, line in enumerate(read_text_lines(list_file, "RAF-DB label list"), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise DataError(f"{list_file}: line {lineno}: expected '<image name> <label 1..7>', got {line!r}")
            name, raw = parts
            try:
                label = int(raw)
            except ValueError:
                raise DataError(f"{list_file}: line {lineno}: label {raw!r} is not an integer 1..7") from None
            if label not in RAFDB_IDS:
                raise DataError(
                    f"{list_file}: line {lineno}: label {label} is outside 1..7 "
                    f"({', '.join(f'{k} {v}' for k, v in RAFDB_IDS.items())})"
                )
            prefix = name.split("_", 1)[0]
            if prefix not in SPLITS:
                raise DataError(f"{list_file}: line {lineno}: image name {name!r} does not start with train_ or test_")
            if prefix == split:
                names.append(name)
                labels.append(mapping[label])
        if not names:
            raise DataError(f"{list_file}: no {split} images listed")

        image_dir = self.root / IMAGE_DIR
        if not image_dir.is_dir():
            raise DataError(
                f"{image_dir}: RAF-DB aligned image folder not found; unzip aligned.zip so that images are at "
                f"{image_dir / aligned_name(names[0])}"
            )
        present = set(os.listdir(image_dir))
        files = [aligned_name(n) for n in names]
        missing = [f for f in files if f not in present]
        if missing:
            raise DataError(
                f"{image_dir}: {len(missing)} of the {len(files)} {split} images listed in {list_file} are missing, "
                f"e.g. {', '.join(missing[:5])}"
            )
        self.paths = [image_dir / f for f in files]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.ids = names
        self.check_labels(str(list_file))
        log.info("RAF-DB %s: %d images from %s", split, len(names), self.root)

    def load_image(self, index: int) -> np.ndarray:
        return read_image(self.paths[index])
