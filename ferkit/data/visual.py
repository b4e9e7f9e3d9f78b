"""Inspection figures for any :class:`~ferkit.data.base.FERDataset`: :func:`contact_sheet` and :func:`save_rgb`."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from ferkit.data.base import FERDataset

__all__ = ["contact_sheet", "save_rgb"]

_CAPTION_H = 16


def contact_sheet(
    dataset: FERDataset,
    per_class: int = 6,
    upscale: int = 3,
    draw_landmarks: bool | str = True,
    rows: Sequence[Sequence[int]] | None = None,
    captions: Mapping[int, str] | None = None,
    frames: Mapping[int, tuple[int, int, int]] | None = None,
    label_width: int = 90,
) -> np.ndarray:
    """A grid image (uint8 RGB) with one row per class and up to ``per_class`` samples per row, for inspection.

    Args:
        dataset: any FERDataset (``load_image``, ``labels``, ``class_names``; ``landmarks`` if it has them).
        per_class: tiles per row.
        upscale: tile size = image size x ``upscale`` (nearest neighbour, so pixels stay visible).
        draw_landmarks: True draws the landmarks (when the dataset has them) as green dots, False does not,
            ``"both"`` shows every face twice, plain and then with its landmarks.
        rows: which samples each class row shows, in order (one index list per class); default: the first
            ``per_class`` samples labelled with the class. A report passes e.g. its least confident samples.
        captions: sample index -> text written under its tile (adds a caption strip to every row).
        frames: sample index -> RGB colour of a frame drawn around its tile (e.g. by mining subset).
        label_width: pixels left of each row for the class name.

    Rows start with the class name. Write the sheet with :func:`save_rgb` (cv2 itself expects BGR).
    """
    if draw_landmarks not in (True, False, "both"):
        raise ValueError(f"draw_landmarks must be True, False or 'both', got {draw_landmarks!r}")
    if rows is not None and len(rows) != dataset.num_classes:
        raise ValueError(f"rows needs one index list per class ({dataset.num_classes}), got {len(rows)}")
    labels = np.asarray(dataset.labels)
    if rows is None:
        rows = [np.flatnonzero(labels == c)[:per_class].tolist() for c in range(dataset.num_classes)]
    h, w = dataset.load_image(0).shape[:2]
    th, tw = h * upscale, w * upscale
    cap_h = _CAPTION_H if captions else 0
    row_h = th + cap_h + 4
    modes = [False, True] if draw_landmarks == "both" else [bool(draw_landmarks)]
    cols = per_class * len(modes)
    sheet = np.full((dataset.num_classes * row_h + 4, label_width + cols * (tw + 4) + 4, 3), 255, np.uint8)
    for c, name in enumerate(dataset.class_names):
        y0 = 4 + c * row_h
        cv2.putText(sheet, name[:14], (4, y0 + th // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for j, idx in enumerate(list(rows[c])[:per_class]):
            idx = int(idx)
            img = dataset.load_image(idx)
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            elif img.shape[2] == 1:
                img = np.repeat(img, 3, axis=2)
            for m, with_points in enumerate(modes):
                tile = cv2.resize(img, (tw, th), interpolation=cv2.INTER_NEAREST)
                if with_points and dataset.landmarks is not None:
                    for x, y in np.asarray(dataset.landmarks[idx], np.float64):
                        if np.isfinite(x) and np.isfinite(y):
                            centre = (int(round((x + 0.5) * upscale - 0.5)), int(round((y + 0.5) * upscale - 0.5)))
                            cv2.circle(tile, centre, max(1, upscale // 3), (0, 255, 0), -1, cv2.LINE_AA)
                if frames and idx in frames:
                    cv2.rectangle(tile, (0, 0), (tw - 1, th - 1), tuple(int(v) for v in frames[idx]), 2)
                x0 = label_width + 4 + (j * len(modes) + m) * (tw + 4)
                sheet[y0 : y0 + th, x0 : x0 + tw] = tile
                if captions and idx in captions:
                    cv2.putText(sheet, captions[idx], (x0 + 1, y0 + th + cap_h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.36,
                                (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def save_rgb(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image (e.g. a :func:`contact_sheet`) as PNG/JPEG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f"could not write {path}")
    return path
