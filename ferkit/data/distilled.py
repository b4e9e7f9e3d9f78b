"""DistilledImages: a distilled set (a few synthetic images per class) as a :class:`FERDataset`, for viewing.

Distilled images live in the network's input space (normalised tensors); this dataset maps them back to uint8
pixels with the normalisation they were made under, so that :func:`ferkit.data.contact_sheet` can show them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ferkit.core.labels import LabelSpace
from ferkit.data.base import FERDataset

__all__ = ["DistilledImages"]


class DistilledImages(FERDataset):
    """``images`` float ``[N, C, H, W]`` (normalised with ``mean`` / ``std``), ``labels`` ``[N]``, ``class_names``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str],
                 mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__(LabelSpace(tuple(class_names)), None)
        if images.ndim != 4 or images.shape[1] not in (1, 3) or len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise ValueError(f"DistilledImages: images must be [N, 1 or 3, H, W] with one mean/std per channel, got "
                             f"{tuple(images.shape)}, mean {list(mean)}, std {list(std)}")
        x = images.detach().cpu().float() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
        self.pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        self.labels = labels.cpu().numpy().astype(np.int64)
        self.ids = [f"distilled:{i}" for i in range(len(self.labels))]

    def load_image(self, index: int) -> np.ndarray:
        img = self.pixels[index]
        return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
