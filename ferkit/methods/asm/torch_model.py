"""ASM's network: two independent FER networks whose logits are averaged at inference (METHODS.md 2.2).

Pure torch (no Lightning). ``ASMNet(...)(x)`` is the inference model ``1/2 (f1(x) + f2(x))``;
:meth:`ASMNet.forward_pair` returns both networks' logits for training.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ferkit.models import FERNet

__all__ = ["ASMNet"]


class ASMNet(nn.Module):
    """Two :class:`ferkit.models.FERNet` of the same architecture (any backbone and pool, ARM included),
    initialised independently; ``forward`` averages their logits.

    Args: those of :class:`FERNet` (``backbone``, ``pool``, ``num_classes``, ``in_chans``, ``img_size``,
    ``pretrained``, ``small_input``, ``dropout``, ``pool_kwargs``); both networks get the same ones. With
    ``pretrained`` weights both start from the same backbone weights (as in MAN) and differ by their random heads
    (and pools).
    """

    def __init__(self, backbone: str = "resnet18", pool: str = "avg", num_classes: int = 7, in_chans: int = 3,
                 img_size: int = 112, pretrained: str | os.PathLike | None = None, small_input: bool = False,
                 dropout: float = 0.0, pool_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        kw = dict(backbone=backbone, pool=pool, num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                  pretrained=pretrained, small_input=small_input, dropout=dropout, pool_kwargs=pool_kwargs)
        self.net1 = FERNet(**kw)
        self.net2 = FERNet(**kw)
        self.num_classes, self.img_size, self.in_chans = int(num_classes), int(img_size), int(in_chans)

    @property
    def networks(self) -> tuple[FERNet, FERNet]:
        return self.net1, self.net2

    def forward_pair(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of both networks on ``x`` (one forward each)."""
        return self.net1(x), self.net2(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: the mean of the two networks' logits."""
        z1, z2 = self.forward_pair(x)
        return 0.5 * (z1 + z2)
