"""ASM's network: two FER networks of one architecture whose logits are averaged at inference.

Pure torch (no Lightning). ``ASMModel(net, ...)(x)`` is the inference model ``1/2 (f1(x) + f2(x))``;
:meth:`ASMModel.forward_pair` returns both networks' logits for training (Zhang et al., PRCV 2023, after MAN).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ferkit.models import FERNet, FERNetConfig

__all__ = ["ASMModel"]


class ASMModel(nn.Module):
    """Two :class:`ferkit.models.FERNet` built from one :class:`FERNetConfig` (any backbone and pool, ARM
    included), initialised independently; ``forward`` averages their logits. With ``pretrained`` weights both
    start from the same backbone weights (as in MAN) and differ by their random heads (and pools).
    """

    def __init__(self, net: FERNetConfig | dict[str, Any] | None = None, num_classes: int = 7, in_chans: int = 3,
                 img_size: int = 112) -> None:
        super().__init__()
        self.config = FERNetConfig.coerce(net)
        self.net1 = self.config.build(num_classes, in_chans, img_size)
        self.net2 = self.config.build(num_classes, in_chans, img_size)
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
