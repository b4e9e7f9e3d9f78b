"""The ARM network: a timm backbone, unpooled, followed by the ARM layer and a linear classifier."""
from __future__ import annotations

from typing import Any

from ferkit.models import FERNet


def ARMNet(backbone: str = "resnet18", num_classes: int = 7, in_chans: int = 3, img_size: int = 224,
           pretrained: str | None = None, small_input: bool = False, dropout: float = 0.0, **arm_kwargs: Any) -> FERNet:
    """FERNet with ``pool="arm"``; ``arm_kwargs`` go to :class:`ferkit.layers.ARM` (shuffle, kernel_size, stride, affinity...).

    With the defaults (ResNet-18, 224 px -> 512 x 7 x 7) this is the paper's configuration: 121 features.
    """
    return FERNet(backbone=backbone, pool="arm", num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                  pretrained=pretrained, small_input=small_input, dropout=dropout, pool_kwargs=arm_kwargs or None)
