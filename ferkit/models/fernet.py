"""FERNetConfig and FERNet: the one network factory of ferkit. Pure torch (no Lightning).

``FERNetConfig`` is the only place that lists a FER network's architecture arguments; every method takes one
(``net:`` in a config) and builds its network(s) with :meth:`FERNetConfig.build`.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ferkit.backbones import Backbone, create_backbone
from ferkit.layers.arm import ARM
from ferkit.layers.pools import create_pool

__all__ = ["FERNetConfig", "FERNet", "MIN_ARM_FEATURES"]

# ARM with fewer output features than this is a degenerate classifier input (a 1-feature linear head was seen at
# 32 px); fewer than 1/16 of the backbone's channels is allowed but worth a warning
MIN_ARM_FEATURES = 4


@dataclass
class FERNetConfig:
    """The architecture of a FER network: backbone -> pool -> dropout -> linear head.

    The label space and input geometry (``num_classes``, ``in_chans``, ``img_size``) are not part of it: they come
    from the data module (the CLI links them) and are passed to :meth:`build`.

    Args:
        backbone: a timm architecture name, created unpooled (``"resnet18"``, ``"efficientnet_b0"``, ...).
        pool: a pool registry name (``"avg"``, ``"max"``, ``"arm"``; see ``ferkit.layers.available_pools()``).
        pool_kwargs: arguments of the pool (ARM: ``shuffle``, ``kernel_size``, ``stride``, ``affinity``). With
            ``pool="arm"`` and no ``shuffle`` / ``kernel_size`` / ``stride``, the geometry is chosen for the real
            feature-map size by :meth:`ferkit.layers.ARM.suggest_config`.
        pretrained: None, a weights file path, or a tag resolved under ``$FERKIT_WEIGHTS`` (never downloaded).
        small_input: drop the stem max-pool (ResNets) for 48-64 px inputs: a 2x larger final map.
        output_stride: the backbone's total stride (timm's ``output_stride``: 32 by default, 16 or 8 replace the
            strides of the last stage(s) by dilation). ``None`` keeps the architecture's own. A 2x or 4x larger final
            map at the same input size; ARM needs a map of about 6x6, e.g. 48 px with 8 (about 2x the step cost,
            cheaper than ``small_input`` with 16: ``benchmarks/arm_geometry.py``).
        dropout: dropout probability before the head.
    """

    backbone: str = "resnet18"
    pool: str = "avg"
    pool_kwargs: dict[str, Any] | None = None
    pretrained: str | None = None
    small_input: bool = False
    output_stride: int | None = None
    dropout: float = 0.0

    @classmethod
    def coerce(cls, value: FERNetConfig | dict[str, Any] | None) -> FERNetConfig:
        """A copy of ``value``: a config, a plain dict of its fields (a checkpoint's hyper-parameters) or None."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return dataclasses.replace(value)
        if isinstance(value, dict):
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise TypeError(f"net: unknown argument(s) {unknown}; a FERNetConfig has {sorted(known)}")
            return cls(**value)
        raise TypeError(f"net must be a FERNetConfig or a dict of its fields, got {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (stored in checkpoints, which Lightning's CLI reads with ``weights_only=True``)."""
        return dataclasses.asdict(self)

    def create_backbone(self, in_chans: int) -> Backbone:
        extra: dict[str, Any] = {}
        if self.output_stride is not None:
            if self.output_stride not in (8, 16, 32):
                raise ValueError(f"net.output_stride must be 8, 16, 32 or null, got {self.output_stride}")
            extra["output_stride"] = self.output_stride
        try:
            return create_backbone(self.backbone, pretrained=self.pretrained, in_chans=in_chans,
                                   small_input=self.small_input, **extra)
        except TypeError as err:
            if extra and "output_stride" in str(err):
                raise ValueError(f"net.output_stride={self.output_stride}: backbone {self.backbone!r} does not take an "
                                 "output stride (timm's ResNets, EfficientNets and other CNNs do); set it to null") from err
            raise

    def create_pool(self, backbone: Backbone, img_size: int) -> nn.Module:
        """The pool for ``backbone``'s final map at ``img_size`` (ARM's geometry checked, or suggested if unset)."""
        feat_size = backbone.feature_size(img_size)
        kwargs = dict(self.pool_kwargs or {})
        is_arm = self.pool.lower() == "arm"
        if is_arm and not {"shuffle", "kernel_size", "stride"} & set(kwargs):
            kwargs.update(ARM.suggest_config(backbone.num_features, feat_size))
        pool = create_pool(self.pool, in_channels=backbone.num_features, feat_size=feat_size, **kwargs)
        if is_arm:
            n = int(pool.out_features)
            if n < MIN_ARM_FEATURES:
                raise ValueError(
                    f"ARM with {kwargs} on {self.backbone}'s {backbone.num_features} x {feat_size} x {feat_size} map "
                    f"({img_size} px input) gives only {n} feature(s), fewer than {MIN_ARM_FEATURES}: remove "
                    f"net.pool_kwargs' shuffle/kernel_size/stride to let ferkit choose them "
                    f"({ARM.suggest_config(backbone.num_features, feat_size)}), use a larger data.img_size, or set "
                    "net.output_stride=8 (a 4x larger map, same weights) or net.small_input=true")
            if n * 16 < backbone.num_features:
                warnings.warn(
                    f"ARM gives {n} features where average pooling would give {backbone.num_features} "
                    f"({backbone.num_features} x {feat_size} x {feat_size} map): a very narrow classifier input; "
                    "net.output_stride=8 or 16, a larger data.img_size or net.small_input=true gives ARM a larger map",
                    UserWarning, stacklevel=3)
        return pool

    def build(self, num_classes: int, in_chans: int, img_size: int) -> FERNet:
        """The :class:`FERNet` of this architecture for the given label space and input geometry."""
        return FERNet(self, num_classes=num_classes, in_chans=in_chans, img_size=img_size)


class FERNet(nn.Module):
    """Backbone (unpooled timm model) -> pool from the registry -> dropout -> ``Linear(pool.out_features, C)``.

    ``FERNet(FERNetConfig(pool="arm"), ...)`` is the ARM network (Shi et al., 2021); ``pool="avg"`` the plain
    baseline. The pool is built for the backbone's map at ``img_size``, so ``img_size`` must be the training size.

    Args:
        config: the architecture (:class:`FERNetConfig`, or a dict of its fields).
        num_classes: output classes. in_chans: image channels. img_size: side of the (square) input images.
        **arch: shorthand for fields of the config (``FERNet(pool="arm", small_input=True, img_size=48)``); they
            override ``config``'s.
    """

    def __init__(self, config: FERNetConfig | dict[str, Any] | None = None, num_classes: int = 7, in_chans: int = 3,
                 img_size: int = 112, **arch: Any) -> None:
        super().__init__()
        config = FERNetConfig.coerce(config)
        if arch:
            config = FERNetConfig.coerce({**config.to_dict(), **arch})
        if num_classes < 1:
            raise ValueError(f"FERNet: num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= config.dropout < 1.0:
            raise ValueError(f"FERNet: net.dropout must be in [0, 1), got {config.dropout}")
        self.config = config
        self.img_size, self.num_classes, self.in_chans = int(img_size), int(num_classes), int(in_chans)
        self.backbone = config.create_backbone(self.in_chans)
        self.feat_size = self.backbone.feature_size(self.img_size)
        self.pool = config.create_pool(self.backbone, self.img_size)
        self.num_features = int(self.pool.out_features)
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
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
