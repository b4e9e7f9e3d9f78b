"""FER2013 (ICML 2013 challenge) from the Kaggle ``fer2013.csv`` (plain or ``.gz``).

The file has a header ``emotion,pixels,Usage`` and one row per face: ``emotion`` 0..6 (angry, disgust, fear,
happy, sad, surprise, neutral), ``pixels`` 2304 space-separated grey levels of a 48x48 crop (row-major) and
``Usage`` Training / PublicTest / PrivateTest, which ferkit calls train / val / test.

:func:`read_fer2013_csv` parses the whole file once (vectorised, a few seconds for 35,887 rows) and caches the
arrays under :func:`ferkit.data.io.cache_dir`, keyed by the file's path, size and mtime; FER+ reuses it.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ferkit.core.errors import DataError
from ferkit.data.base import FERDataset
from ferkit.data.io import PathLike, cache_dir, file_cache_key, load_cached_arrays, read_bytes, save_cached_arrays
from ferkit.core.labels import FER2013_IDS, LabelSpace, make_mapping

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
USAGE_TO_SPLIT: dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
IMAGE_SIZE = 48
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
_CACHE_VERSION = 1
_CHUNK_ROWS = 2048  # rows range-checked together: an int64 block of ~38 MB

# Parsed tables of this process, so train/val/test (and FER+) share one parse; the key changes with the file.
_MEMO: dict[str, "Fer2013Table"] = {}


@dataclass(frozen=True)
class Fer2013Table:
    """All rows of a ``fer2013.csv`` in file order (row ``r`` is the r-th data row, 0-based)."""

    path: Path
    pixels: np.ndarray  # uint8 [N, 48, 48]
    emotion: np.ndarray  # int64 [N], FER2013's own ids 0..6
    split: np.ndarray  # int8 [N], index into SPLITS

    def __len__(self) -> int:
        return int(self.emotion.shape[0])


def check_split(split: str, allowed: tuple[str, ...] = SPLITS) -> str:
    if split not in allowed:
        raise ValueError(f"split must be one of {allowed}, not {split!r}")
    return split


def read_fer2013_csv(path: PathLike, use_cache: bool = True) -> Fer2013Table:
    """Parse a Kaggle ``fer2013.csv`` / ``fer2013.csv.gz`` into arrays (cached on disk and in memory).

    Raises :class:`DataError` naming the file and the row for a bad header, a wrong pixel count, a
    non-numeric or out-of-range pixel, a label outside 0..6 or an unknown ``Usage``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: FER2013 csv not found (expected the Kaggle fer2013.csv or fer2013.csv.gz)")
    key = file_cache_key(path, _CACHE_VERSION)
    if use_cache and key in _MEMO:
        return _MEMO[key]
    cache_file = cache_dir("fer2013") / f"{key}.npz"
    arrays = load_cached_arrays(cache_file) if use_cache else None
    if arrays is not None and {"pixels", "emotion", "split"} <= arrays.keys():
        table = Fer2013Table(path, arrays["pixels"], arrays["emotion"], arrays["split"])
        log.debug("%s: loaded %d rows from cache %s", path, len(table), cache_file)
    else:
        table = _parse(path)
        if use_cache:
            save_cached_arrays(cache_file, {"pixels": table.pixels, "emotion": table.emotion, "split": table.split})
    for a in (table.pixels, table.emotion, table.split):
        a.flags.writeable = False  # shared by every dataset built from this file (they index copies out of it)
    if use_cache:
        _MEMO.clear()  # keep one file's table in memory: it is ~85 MB
        _MEMO[key] = table
    return table


def _parse(path: Path) -> Fer2013Table:
    lines = read_bytes(path, "FER2013 csv").split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path}: file is empty; expected a header 'emotion,pixels,Usage' and one row per image")
    header = [c.strip().strip('"').strip() for c in lines[0].decode("utf-8-sig", "replace").split(",")]
    lower = [c.lower() for c in header]
    missing = [c for c in ("emotion", "pixels", "usage") if c not in lower]
    if missing:
        first = lines[0].decode("utf-8-sig", "replace")
        quoted = first if len(first) <= 80 else f"{first[:77]}..."
        raise DataError(
            f"{path}: bad header {quoted!r} ({len(first)} characters); expected the columns 'emotion', 'pixels' "
            f"and 'Usage' (Kaggle fer2013.csv), missing {missing}; if the file has no header, add the first line "
            "'emotion,pixels,Usage'"
        )
    i_emo, i_pix, i_use = lower.index("emotion"), lower.index("pixels"), lower.index("usage")
    ncols = len(header)
    rows = lines[1:]
    n = len(rows)
    emotion = np.empty(n, dtype=np.int64)
    split = np.empty(n, dtype=np.int8)
    pix_fields: list[bytes] = [b""] * n
    split_of_usage = {u.encode(): SPLITS.index(s) for u, s in USAGE_TO_SPLIT.items()}
    for r, line in enumerate(rows):
        fields = line.rstrip(b"\r").split(b",")
        if len(fields) != ncols:
            raise DataError(
                f"{path}: row {r} (line {r + 2}) has {len(fields)} comma-separated fields, expected {ncols} ({header})"
            )
        try:
            emotion[r] = int(fields[i_emo].strip(b' "'))
        except ValueError:
            raise DataError(
                f"{path}: row {r} (line {r + 2}): emotion {fields[i_emo][:20]!r} is not an integer"
            ) from None
        usage = fields[i_use].strip(b' "')
        if usage not in split_of_usage:
            raise DataError(
                f"{path}: row {r} (line {r + 2}): Usage {usage.decode(errors='replace')!r} is not one of "
                f"{list(USAGE_TO_SPLIT)}"
            )
        split[r] = split_of_usage[usage]
        pix_fields[r] = fields[i_pix].strip(b'"')
    bad = np.flatnonzero((emotion < 0) | (emotion > 6))
    if bad.size:
        r = int(bad[0])
        raise DataError(
            f"{path}: row {r} (line {r + 2}): emotion {emotion[r]} is outside 0..6 "
            f"(angry, disgust, fear, happy, sad, surprise, neutral); {bad.size} such rows"
        )
    pixels = _parse_pixels(pix_fields, path)
    log.info("%s: parsed %d rows", path, n)
    return Fer2013Table(path, pixels, emotion, split)


def _parse_pixels(fields: list[bytes], path: Path) -> np.ndarray:
    """All pixel fields -> uint8 [N, 48, 48]; NumPy's C parser per row, the strict parser explains failures."""
    n = len(fields)
    pixels = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    block = np.empty((_CHUNK_ROWS, NUM_PIXELS), dtype=np.int64)
    with warnings.catch_warnings():
        # NumPy < 2.3 warns (instead of raising) on unparsable text and returns what it read: the size check catches it.
        warnings.simplefilter("ignore", DeprecationWarning)
        for start in range(0, n, _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, n)
            for r in range(start, stop):
                try:
                    values = np.fromstring(fields[r], dtype=np.int64, sep=" ")
                except ValueError:
                    values = None
                if values is None or values.size != NUM_PIXELS:
                    _parse_pixel_rows([fields[r]], path, r)  # raises a DataError that says what is wrong
                    raise DataError(f"{path}: row {r} (line {r + 2}): cannot parse the pixels")
                block[r - start] = values
            chunk = block[: stop - start]
            bad = np.flatnonzero((chunk < 0).any(axis=1) | (chunk > 255).any(axis=1))
            if bad.size:
                r = start + int(bad[0])
                _parse_pixel_rows([fields[r]], path, r)
                raise DataError(f"{path}: row {r} (line {r + 2}): a pixel value is outside 0..255")
            pixels[start:stop] = chunk.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    return pixels


def _parse_pixel_rows(fields: list[bytes], path: Path, first_row: int) -> np.ndarray:
    """Strict vectorised parse of space-separated grey levels, one row per field -> uint8 [len(fields), 48, 48].

    Accepts exactly digits, single-byte spaces and 0..255 values; raises a :class:`DataError` that names the
    row and what is wrong (stray character, pixel count, range). Used to explain rows the fast parser rejects.
    """
    buf = np.frombuffer(b"\n".join(fields) + b"\n", dtype=np.uint8)
    newlines = np.cumsum(np.fromiter((len(f) + 1 for f in fields), dtype=np.int64, count=len(fields))) - 1
    digit = buf - np.uint8(48)  # wraps around for bytes below '0', so `digit < 10` is exactly "is a digit"
    is_digit = digit < 10
    n_space = int(np.count_nonzero(buf == 32))
    if n_space + len(fields) + int(np.count_nonzero(is_digit)) != buf.size:
        bad = int(np.flatnonzero(~is_digit & (buf != 32) & (buf != 10))[0])
        r = first_row + int(np.searchsorted(newlines, bad))
        raise DataError(
            f"{path}: row {r} (line {r + 2}): pixels contain {chr(buf[bad])!r}; expected "
            f"{NUM_PIXELS} space-separated integers 0..255"
        )
    ends = np.flatnonzero(is_digit[:-1] & ~is_digit[1:])  # last digit of each value (buf ends with a newline)
    counts = np.diff(np.searchsorted(ends, newlines), prepend=0)
    wrong = np.flatnonzero(counts != NUM_PIXELS)
    if wrong.size:
        r = first_row + int(wrong[0])
        raise DataError(
            f"{path}: row {r} (line {r + 2}) has {int(counts[wrong[0]])} pixel values, expected {NUM_PIXELS} "
            f"({IMAGE_SIZE}x{IMAGE_SIZE} grey levels)"
        )
    # value = last digit + 10 * the one before + 100 * the one before that, while they are digits.
    # Negative indices wrap to the final newline, which is not a digit, so the first value is safe.
    value = digit[ends].astype(np.int16)
    has2 = is_digit[ends - 1]
    value += 10 * digit[ends - 1].astype(np.int16) * has2
    has3 = has2 & is_digit[ends - 2]
    value += 100 * digit[ends - 2].astype(np.int16) * has3
    too_long = has3 & is_digit[ends - 3]
    out_of_range = np.flatnonzero(too_long | (value > 255))
    if out_of_range.size:
        e = int(ends[out_of_range[0]])
        r = first_row + int(np.searchsorted(newlines, e))
        s = e
        while s > 0 and is_digit[s - 1]:
            s -= 1
        token = bytes(buf[s : e + 1]).decode()
        raise DataError(f"{path}: row {r} (line {r + 2}): pixel value {token} is outside 0..255")
    return value.astype(np.uint8).reshape(len(fields), IMAGE_SIZE, IMAGE_SIZE)


class FER2013(FERDataset):
    """FER2013 from the Kaggle ``fer2013.csv`` (``.gz`` allowed): 48x48 grayscale faces held in memory.

    Args:
        csv_path: ``fer2013.csv`` or ``fer2013.csv.gz`` with header ``emotion,pixels,Usage``.
        split: ``"train"`` (Training, 28,709), ``"val"`` (PublicTest, 3,589) or ``"test"`` (PrivateTest, 3,589).
        transform: called as ``transform(image=..., landmarks=None)`` returning a dict (see FERDataset).

    Attributes:
        rows: int64 [N], each sample's 0-based data-row index in the csv (FER+ joins on it).
        ids: ``"fer2013.csv:row=123"`` per sample.
    """

    def __init__(self, csv_path: PathLike, split: str = "train", transform: Callable[..., dict] | None = None) -> None:
        super().__init__(LabelSpace.basic(7), transform)
        check_split(split)
        self.split = split
        self.csv_path = Path(csv_path)
        table = read_fer2013_csv(self.csv_path)
        self.rows = np.flatnonzero(table.split == SPLITS.index(split)).astype(np.int64)
        lut = _lookup(make_mapping(FER2013_IDS, self.label_space), size=7)
        self.labels = lut[table.emotion[self.rows]]
        self.images = table.pixels[self.rows]
        name = os.path.basename(self.csv_path)
        self.ids = [f"{name}:row={r}" for r in self.rows.tolist()]
        self.check_labels(str(self.csv_path))

    def load_image(self, index: int) -> np.ndarray:
        return self.images[index]


def _lookup(mapping: dict[int, int], size: int) -> np.ndarray:
    """Source id -> canonical id as an array; ids absent from ``mapping`` map to -1."""
    lut = np.full(size, -1, dtype=np.int64)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut
