"""FERNet: the generic FER classifier, backbone -> pool -> dropout -> linear head. Pure torch (no Lightning)."""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ferkit.backbones import create_backbone
from ferkit.layers.pools import create_pool

__all__ = ["FERNet"]


class FERNet(nn.Module):
    """Backbone (unpooled timm model) -> pool from the registry -> dropout -> ``Linear(pool.out_features, C)``.

    ``FERNet(pool="arm")`` is the ARM model of METHODS.md section 1 (with the ARM configuration in ``pool_kwargs``;
    the pool is built for ``feat_size = backbone.feature_size(img_size)``, so ``img_size`` must be the training
    image size). ``FERNet(pool="avg")`` is the plain baseline.

    Args:
        backbone: timm architecture name.
        pool: registered pool name (``ferkit.layers.available_pools()``).
        num_classes: output classes.
        in_chans: image channels.
        img_size: side of the (square) input images; fixes the feature-map size given to the pool.
        pretrained: ``None``, a weights path or a tag (see :func:`ferkit.backbones.create_backbone`).
        small_input: drop the backbone's stem max-pool (48-64 px inputs).
        dropout: dropout probability before the head.
        pool_kwargs: extra arguments of the pool (e.g. ``{"affinity": "batch", "shuffle": 16}`` for ARM).
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        pool: str = "avg",
        num_classes: int = 7,
        in_chans: int = 3,
        img_size: int = 112,
        pretrained: str | os.PathLike | None = None,
        small_input: bool = False,
        dropout: float = 0.0,
        pool_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"FERNet: num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"FERNet: dropout must be in [0, 1), got {dropout}")
        self.img_size = int(img_size)
        self.num_classes = int(num_classes)
        self.backbone = create_backbone(backbone, pretrained=pretrained, in_chans=in_chans, small_input=small_input)
        self.feat_size = self.backbone.feature_size(self.img_size)
        self.pool = create_pool(
            pool, in_channels=self.backbone.num_features, feat_size=self.feat_size, **(pool_kwargs or {})
        )
        self.num_features = int(self.pool.out_features)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(self.num_features, self.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``B x in_chans x img_size x img_size`` -> pooled features ``B x num_features``."""
        return self.pool(self.backbone(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features -> logits ``B x num_classes`` (dropout, then the linear head)."""
        return self.head(self.drop(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a new randomly initialised ``Linear(num_features, num_classes)``."""
        self.num_classes = int(num_classes)
        self.head = nn.Linear(self.num_features, self.num_classes).to(self.head.weight.device)
