"""AffectNet (Mollahosseini et al., 2017), manually annotated part, in its distributed layout.

::

    root/training.csv, root/validation.csv
        subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal
        689/737db2...a.jpg,134,134,899,899,181.64;530.91;188.32;627.82;...,1,0.785714,-0.055556
    root/Manually_Annotated_Images/689/737db2...a.jpg

``expression`` 0..7 = neutral, happy, sad, surprise, fear, disgust, anger, contempt; 8 none, 9 uncertain and
10 no-face are not expressions and are dropped. ``facial_landmarks`` are 68 points ``x1;y1;x2;y2;...`` in the
full image's pixels. Some copies of ``validation.csv`` have no header row; both forms are read.
The parsed csv is cached under :func:`ferkit.data.io.cache_dir` (keyed by the file's path, size and mtime).
"""
from __future__ import annotations

import csv
import logging
import os
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np

from ferkit.core.errors import DataError
from ferkit.data.base import FERDataset
from ferkit.data.fer2013 import check_split
from ferkit.data.io import (
    PathLike,
    cache_dir,
    file_cache_key,
    load_cached_arrays,
    read_image,
    read_text_lines,
    save_cached_arrays,
)
from ferkit.core.labels import AFFECTNET_IDS, LabelSpace, make_mapping

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (
    "subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
    "facial_landmarks", "expression", "valence", "arousal",
)
CSV_FILES: dict[str, str] = {"train": "training.csv", "val": "validation.csv"}
IMAGE_DIR = "Manually_Annotated_Images"
NUM_LANDMARKS = 68
NOT_EXPRESSIONS = {8: "none", 9: "uncertain", 10: "no-face"}
_CACHE_VERSION = 1


def read_affectnet_csv(path: PathLike, use_cache: bool = True) -> dict[str, np.ndarray]:
    """Parse an AffectNet annotation csv into arrays over all its rows (file order).

    Returns ``image`` (str [N], the subDirectory_filePath), ``box`` (int64 [N, 4]: x, y, width, height),
    ``landmarks`` (float32 [N, 68, 2], NaN where the string is empty or the row is not an expression),
    ``expression`` (int64 [N], 0..10), ``valence`` / ``arousal`` (float32 [N]). Raises :class:`DataError` naming the file and row on bad input.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: AffectNet annotation csv not found (expected training.csv / validation.csv)")
    cache_file = cache_dir("affectnet") / f"{file_cache_key(path, _CACHE_VERSION)}.npz"
    if use_cache:
        cached = load_cached_arrays(cache_file)
        if cached is not None and {"image", "box", "landmarks", "expression", "valence", "arousal"} <= cached.keys():
            return cached
    table = _parse(path)
    if use_cache:
        save_cached_arrays(cache_file, table)
    return table


def _parse(path: Path) -> dict[str, np.ndarray]:
    rows = list(csv.reader(read_text_lines(path, "AffectNet csv")))
    while rows and not any(c.strip() for c in rows[-1]):
        rows.pop()
    if not rows:
        raise DataError(f"{path}: file is empty; expected the header {','.join(COLUMNS)}")
    header = [c.strip() for c in rows[0]]
    first_line = 2
    if header == list(COLUMNS):
        rows = rows[1:]
    elif len(header) == len(COLUMNS) and header[6].strip().lstrip("-").isdigit():
        first_line = 1  # a headerless copy (validation.csv is often distributed so): standard column order
        log.info("%s: no header row; reading the columns as %s", path, ",".join(COLUMNS))
    else:
        raise DataError(f"{path}: bad header {header}; expected the AffectNet columns {','.join(COLUMNS)}")
    n = len(rows)
    files: list[str] = []
    box = np.zeros((n, 4), dtype=np.int64)
    expression = np.zeros(n, dtype=np.int64)
    va = np.zeros((n, 2), dtype=np.float32)
    for r, row in enumerate(rows):
        where = f"{path}: row {r} (line {r + first_line})"
        if len(row) != len(COLUMNS):
            raise DataError(f"{where} has {len(row)} fields, expected {len(COLUMNS)} ({','.join(COLUMNS)})")
        files.append(row[0].strip())
        try:
            box[r] = [int(round(float(x))) for x in row[1:5]]
            expression[r] = int(row[6])
            va[r] = [float(row[7]), float(row[8])]
        except ValueError:
            raise DataError(
                f"{where}: face box {row[1:5]}, expression {row[6]!r} or valence/arousal {row[7:9]} is not a number"
            ) from None
        if not 0 <= expression[r] <= 10:
            raise DataError(f"{where}: expression {expression[r]} is outside 0..10")
    # Landmarks only of expression rows: the dropped categories (no-face, ...) need not carry valid ones.
    landmarks = np.full((n, NUM_LANDMARKS, 2), np.nan, dtype=np.float32)
    wanted = [r for r in np.flatnonzero(expression <= 7).tolist() if rows[r][5].strip()]
    strings = [rows[r][5].strip().rstrip(";") for r in wanted]
    landmarks[wanted] = _parse_landmarks(strings, wanted, path, first_line)
    return {
        "image": np.asarray(files, dtype=str),
        "box": box,
        "landmarks": landmarks,
        "expression": expression,
        "valence": va[:, 0].copy(),
        "arousal": va[:, 1].copy(),
    }


def _parse_landmarks(strings: list[str], rows: list[int], path: Path, first_line: int) -> np.ndarray:
    """``"x1;y1;...;x68;y68"`` strings -> float32 [len, 68, 2]; a bad string is a DataError naming its row."""
    expected = 2 * NUM_LANDMARKS
    for s, r in zip(strings, rows):
        if s.count(";") != expected - 1:
            _bad_landmarks(s, r, path, first_line)
    values = None
    if strings:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # NumPy < 2.3 warns instead of raising
                values = np.fromstring(";".join(strings), dtype=np.float32, sep=";")
        except ValueError:
            values = None
    if values is None or values.size != expected * len(strings) or not np.isfinite(values).all():
        for s, r in zip(strings, rows):  # slow path only to find the culprit
            try:
                if not np.isfinite(np.array(s.split(";"), dtype=np.float32)).all():
                    raise ValueError
            except ValueError:
                _bad_landmarks(s, r, path, first_line)
        raise DataError(f"{path}: cannot parse the facial_landmarks column")  # pragma: no cover
    return values.reshape(len(strings), NUM_LANDMARKS, 2)


def _bad_landmarks(s: str, r: int, path: Path, first_line: int) -> None:
    shown = s if len(s) <= 60 else s[:57] + "..."
    raise DataError(
        f"{path}: row {r} (line {r + first_line}): facial_landmarks {shown!r} is not {2 * NUM_LANDMARKS} numbers "
        f"'x1;y1;...;x{NUM_LANDMARKS};y{NUM_LANDMARKS}' (found {len(s.split(';')) if s else 0} fields)"
    )


class AffectNet(FERDataset):
    """AffectNet manually annotated images with their 68 landmarks, valence and arousal.

    Args:
        root: folder holding ``training.csv``, ``validation.csv`` and ``Manually_Annotated_Images/``.
        split: ``"train"`` (training.csv) or ``"val"`` (validation.csv; AffectNet's test set is not public).
        num_classes: 7 (contempt dropped) or 8. Rows labelled none / uncertain / no-face are always dropped.
        transform: see :class:`~ferkit.data.base.FERDataset`.
        crop_faces: return the face box crop (clipped to the image) instead of the whole image; landmarks
            are then in the crop's coordinates, so they always match the image :meth:`load_image` returns.
        check_files: verify at construction that every image exists (one listing per sub-directory).

    Attributes:
        landmarks: float32 [N, 68, 2] (x, y) in the returned image's pixels; NaN where the csv has none.
        boxes: int64 [N, 4] face box (x, y, width, height) in the full image.
        valence, arousal: float32 [N]. rows: int64 [N] csv data-row index. ids: ``subDirectory_filePath``.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        num_classes: int = 7,
        transform: Callable[..., dict] | None = None,
        crop_faces: bool = True,
        check_files: bool = True,
    ) -> None:
        if num_classes not in (7, 8):
            raise ValueError(f"AffectNet has 8 expression classes, or 7 without contempt; num_classes={num_classes}")
        super().__init__(LabelSpace.basic(num_classes), transform)
        check_split(split, tuple(CSV_FILES))
        self.root, self.split, self.crop_faces = Path(root), split, crop_faces
        self.csv_path = self.root / CSV_FILES[split]
        table = read_affectnet_csv(self.csv_path)
        expression = table["expression"]
        mapping = make_mapping(AFFECTNET_IDS, self.label_space)
        lut = np.full(11, -1, dtype=np.int64)
        for src, dst in mapping.items():
            lut[src] = dst
        keep = lut[expression] >= 0
        dropped = {NOT_EXPRESSIONS.get(e, AFFECTNET_IDS.get(e)): int(c) for e, c in
                   zip(*np.unique(expression[~keep], return_counts=True))}
        self.drop_counts = dropped
        self.rows = np.flatnonzero(keep).astype(np.int64)
        self.labels = lut[expression[self.rows]]
        self.boxes = table["box"][self.rows]
        self.valence = table["valence"][self.rows]
        self.arousal = table["arousal"][self.rows]
        landmarks = table["landmarks"][self.rows].copy()
        if crop_faces:  # into the crop's frame; the crop's corner is the box corner clipped to the image
            landmarks -= np.maximum(self.boxes[:, None, :2], 0).astype(np.float32)
        self.landmarks = landmarks
        self.ids = [str(f) for f in table["image"][self.rows]]
        self.paths = [self.root / IMAGE_DIR / f for f in self.ids]
        self.check_labels(str(self.csv_path))
        if check_files:
            self._check_files()
        n_nan = int(np.isnan(landmarks[:, 0, 0]).sum())
        log.info(
            "AffectNet %s (%d classes): %d images; dropped %s%s", split, num_classes, len(self.rows),
            ", ".join(f"{c} {k}" for k, c in dropped.items()) or "none",
            f"; {n_nan} without landmarks (NaN)" if n_nan else "",
        )

    def _check_files(self) -> None:
        by_dir: dict[Path, list[str]] = defaultdict(list)
        for p in self.paths:
            by_dir[p.parent].append(p.name)
        missing: list[Path] = []
        for d, names in by_dir.items():
            present = set(os.listdir(d)) if d.is_dir() else set()
            missing.extend(d / n for n in names if n not in present)
        if missing:
            raise DataError(
                f"{self.root / IMAGE_DIR}: {len(missing)} of the {len(self.paths)} images listed in {self.csv_path} "
                f"are missing, e.g. {', '.join(map(str, missing[:5]))} (pass check_files=False to skip this check)"
            )

    def load_image(self, index: int) -> np.ndarray:
        image = read_image(self.paths[index])
        if not self.crop_faces:
            return image
        x, y, w, h = (int(v) for v in self.boxes[index])
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, image.shape[1]), min(y + h, image.shape[0])
        if x1 <= x0 or y1 <= y0:
            raise DataError(
                f"{self.paths[index]}: face box (x={x}, y={y}, w={w}, h={h}) from {self.csv_path} row "
                f"{int(self.rows[index])} lies outside the {image.shape[1]}x{image.shape[0]} image"
            )
        return image[y0:y1, x0:x1]
