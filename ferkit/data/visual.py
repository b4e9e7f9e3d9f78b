"""Inspection figures for any :class:`~ferkit.data.base.FERDataset`: :func:`contact_sheet`."""
from __future__ import annotations

import cv2
import numpy as np

from ferkit.data.base import FERDataset

__all__ = ["contact_sheet"]


def contact_sheet(
    dataset: FERDataset, per_class: int = 6, upscale: int = 3, draw_landmarks: bool | str = True
) -> np.ndarray:
    """A grid image (uint8 RGB) with one row per class and ``per_class`` samples per row, for inspection.

    ``draw_landmarks``: True draws the landmarks (when the dataset has them) as green dots, False does not,
    ``"both"`` shows every face twice, plain and then with its landmarks. Rows start with the class name.
    Write the sheet with ``cv2.imwrite(path, sheet[..., ::-1])`` (cv2 expects BGR).
    """
    if draw_landmarks not in (True, False, "both"):
        raise ValueError(f"draw_landmarks must be True, False or 'both', got {draw_landmarks!r}")
    labels = np.asarray(dataset.labels)
    h, w = dataset.load_image(0).shape[:2]
    th, tw = h * upscale, w * upscale
    label_w = 90
    modes = [False, True] if draw_landmarks == "both" else [bool(draw_landmarks)]
    cols = per_class * len(modes)
    sheet = np.full((dataset.num_classes * (th + 4) + 4, label_w + cols * (tw + 4) + 4, 3), 255, np.uint8)
    for c, name in enumerate(dataset.class_names):
        y0 = 4 + c * (th + 4)
        cv2.putText(sheet, name, (4, y0 + th // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for j, idx in enumerate(np.flatnonzero(labels == c)[:per_class]):
            img = dataset.load_image(int(idx))
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            for m, with_points in enumerate(modes):
                tile = cv2.resize(img, (tw, th), interpolation=cv2.INTER_NEAREST)
                if with_points and dataset.landmarks is not None:
                    for x, y in np.asarray(dataset.landmarks[idx], np.float64):
                        if np.isfinite(x) and np.isfinite(y):
                            centre = (int(round((x + 0.5) * upscale - 0.5)), int(round((y + 0.5) * upscale - 0.5)))
                            cv2.circle(tile, centre, max(1, upscale // 3), (0, 255, 0), -1, cv2.LINE_AA)
                x0 = label_w + 4 + (j * len(modes) + m) * (tw + 4)
                sheet[y0 : y0 + th, x0 : x0 + tw] = tile
    return sheet

