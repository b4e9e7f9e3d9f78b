"""Unpooled timm backbones: ``B x in_chans x H x W`` image -> ``B x C x h x w`` feature map.

Pooling is not the backbone's job: ferkit's pool registry (``"avg"``, ``"arm"``, ...) consumes the map.
"""
from __future__ import annotations

import os
from typing import Any

import timm
import torch
from torch import nn

from ferkit.backbones.channels_last_pool import convert_max_pools
from ferkit.backbones.small_map_conv import convert_small_map_convs
from ferkit.backbones.weights import load_pretrained, resolve_weights

__all__ = ["Backbone", "create_backbone"]


class Backbone(nn.Module):
    """A timm model created with ``num_classes=0, global_pool=""``: ``forward`` returns the last feature map.

    Attributes:
        model: the wrapped timm model.
        name: the timm architecture name.
        num_features: channels ``C`` of the output map.
        in_chans: input channels.
        small_input: whether the stem max-pool was removed.
    """

    def __init__(self, model: nn.Module, name: str, in_chans: int = 3, small_input: bool = False) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.in_chans = int(in_chans)
        self.small_input = bool(small_input)
        self.num_features = int(model.num_features)
        self._feature_sizes: dict[int, int] = {}

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """timm's configuration of the architecture (normalisation ``mean`` / ``std``, ``first_conv``, ...)."""
        return dict(getattr(self.model, "pretrained_cfg", {}) or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"backbone {self.name!r} expects B x {self.in_chans} x H x W images, got shape {tuple(x.shape)}"
                + (" (set in_chans to match your images, e.g. in_chans=1 for grayscale)" if x.dim() == 4 else "")
            )
        out = self.model.forward_features(x)
        if out.dim() != 4:
            raise RuntimeError(
                f"backbone {self.name!r} returned a {out.dim()}-D tensor {tuple(out.shape)}; ferkit needs a "
                "convolutional B x C x h x w map (token-based models are not supported as unpooled backbones)"
            )
        return out

    @torch.no_grad()
    def feature_size(self, img_size: int) -> int:
        """Side of the output map for a square ``img_size`` input (dummy forward once per size, then cached).

        Runs in eval mode under ``no_grad`` and restores the training flags, so BN running statistics are untouched.
        """
        img_size = int(img_size)
        if img_size not in self._feature_sizes:
            flags = [(m, m.training) for m in self.modules()]
            self.eval()
            try:
                ref = next(iter(self.parameters()), None)
                device = ref.device if ref is not None else torch.device("cpu")
                dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
                out = self(torch.zeros(1, self.in_chans, img_size, img_size, device=device, dtype=dtype))
            finally:
                for module, training in flags:
                    module.training = training
            h, w = out.shape[-2:]
            if h != w:
                raise RuntimeError(f"backbone {self.name!r} gives a non-square {h}x{w} map for a square input")
            if h < 1:
                raise ValueError(f"input size {img_size} is too small for backbone {self.name!r}")
            self._feature_sizes[img_size] = int(h)
        return self._feature_sizes[img_size]

    def extra_repr(self) -> str:
        return f"name={self.name!r}, in_chans={self.in_chans}, num_features={self.num_features}, small_input={self.small_input}"


def _drop_stem_pool(model: nn.Module, name: str) -> None:
    pool = getattr(model, "maxpool", None)
    if isinstance(pool, (nn.MaxPool2d, nn.AvgPool2d)):
        model.maxpool = nn.Identity()
        return
    raise ValueError(
        f"small_input=True is not supported for backbone {name!r}: it works by removing the stem max-pool "
        "(attribute 'maxpool', as in timm's ResNet family: resnet18/34/50, resnet*d, seresnet*, ...), which "
        f"{type(model).__name__} does not have. Use a larger input image, a ResNet, or small_input=False."
    )


def create_backbone(
    name: str = "resnet18",
    pretrained: str | os.PathLike | None = None,
    in_chans: int = 3,
    small_input: bool = False,
    **timm_kwargs: Any,
) -> Backbone:
    """Create an unpooled timm backbone, optionally loading local weights.

    Args:
        name: timm architecture (``"resnet18"``, ``"resnet50"``, ...).
        pretrained: ``None``/``"none"`` (random), a weights file path, or a tag resolved to
            ``<weights_dir>/<name>_<tag>.pth`` (see :mod:`ferkit.backbones.weights`; nothing is ever downloaded).
        in_chans: image channels (1 for grayscale FER2013; pretrained RGB first convs are summed over RGB).
        small_input: remove the stem max-pool (ResNets) for 48-64 px inputs, doubling the map size.
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``drop_path_rate``).
    """
    for reserved in ("pretrained", "num_classes", "global_pool", "in_chans", "pretrained_cfg_overlay"):
        if reserved in timm_kwargs:
            raise TypeError(f"create_backbone: {reserved!r} is set by ferkit and cannot be passed to timm")
    path = resolve_weights(name, pretrained)  # fail early, before building the model
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="", in_chans=in_chans, **timm_kwargs)
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise ValueError(f"unknown timm backbone {name!r}; see timm.list_models() for valid names") from err
        raise
    if small_input:
        _drop_stem_pool(model, name)
    if path is not None:
        load_pretrained(model, path, in_chans=in_chans)
    convert_small_map_convs(model)  # same parameters and sums; faster on tiny maps where the CPU has AMX
    convert_max_pools(model)  # the same maxima; the stem pool ~3x faster on channels-first CPU tensors
    return Backbone(model, name=name, in_chans=in_chans, small_input=small_input)
