"""Save a confusion matrix as CSV and as a PNG figure (drawn with Pillow; no plotting library needed)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ferkit.metrics.classification import classification_scores

__all__ = ["save_confusion_matrix"]


def save_confusion_matrix(cm, class_names: Sequence[str], csv_path: str | Path | None = None,
                          png_path: str | Path | None = None, title: str = "confusion matrix") -> None:
    """Rows are true classes, columns predictions. The PNG shows row-normalised recall colours and raw counts."""
    cm = np.asarray(cm.cpu() if hasattr(cm, "cpu") else cm, dtype=np.int64)
    names = list(class_names)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(names):
        raise ValueError(f"save_confusion_matrix: need a C x C matrix for the {len(names)} class names, got shape {cm.shape}")
    if (cm < 0).any():
        raise ValueError("save_confusion_matrix: counts must be >= 0")
    if csv_path is not None:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["true\\pred", *names])
            for name, row in zip(names, cm):
                w.writerow([name, *row.tolist()])
    if png_path is not None:
        _draw(cm, names, Path(png_path), title)


def _draw(cm: np.ndarray, names: list[str], path: Path, title: str) -> None:
    c = len(names)
    cell, left, top = 64, 110, 70
    w, h = left + c * cell + 20, top + c * cell + 90
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, np.maximum(rows, 1), dtype=np.float64)
    d.text((10, 10), title, fill="black", font=font)
    d.text((left, top - 40), "predicted", fill="black", font=font)
    for j, name in enumerate(names):
        d.text((left + j * cell + 4, top - 20), name[:9], fill="black", font=font)
    for i, name in enumerate(names):
        d.text((10, top + i * cell + cell // 2 - 5), name[:14], fill="black", font=font)
        for j in range(c):
            v = float(norm[i, j])
            shade = int(255 * (1 - v))
            colour = (shade, shade, 255) if i == j else (255, shade, shade)
            x0, y0 = left + j * cell, top + i * cell
            d.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour, outline=(200, 200, 200))
            ink = "white" if v > 0.6 else "black"
            d.text((x0 + 6, y0 + 18), f"{100 * v:.0f}%", fill=ink, font=font)
            d.text((x0 + 6, y0 + 34), f"n={cm[i, j]}", fill=ink, font=font)
    # the same numbers as FERMetrics: the matrix expanded back to (prediction, target) pairs and scored once
    c_idx = torch.arange(c)
    counts = torch.as_tensor(cm).reshape(-1)
    scores = classification_scores(c_idx.repeat(c).repeat_interleave(counts), c_idx.repeat_interleave(c).repeat_interleave(counts), c)
    acc, mca = float(scores["acc"]), float(scores["mean_class_acc"])
    d.text((10, top + c * cell + 15), f"true class (rows).  overall acc {100 * acc:.2f} %   mean-class acc {100 * mca:.2f} %", fill="black", font=font)
    d.text((10, top + c * cell + 35), "cells: row-normalised share (recall on the diagonal) and count", fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
