"""The pool registry: every entry maps a ``B x C x H x W`` feature map to ``B x D`` features.

A pool is an ``nn.Module`` with an ``out_features`` attribute, built by a factory called as
``factory(in_channels=..., feat_size=..., **kwargs)``. ``"avg"`` and ``"max"`` are global poolings;
``"arm"`` is the Amend Representation Module (:class:`ferkit.layers.arm.ARM`). Register your own with::

    @register_pool("gem")
    class GeMPool(nn.Module):
        def __init__(self, in_channels: int, feat_size: int | None = None, p: float = 3.0): ...
"""
from __future__ import annotations

from typing import Callable, TypeVar

import torch
from torch import nn

from ferkit.layers.arm import ARM

__all__ = ["POOLS", "register_pool", "create_pool", "available_pools", "GlobalAvgPool", "GlobalMaxPool"]

PoolFactory = Callable[..., nn.Module]
T = TypeVar("T", bound=PoolFactory)

#: name -> factory(in_channels, feat_size, **kwargs)
POOLS: dict[str, PoolFactory] = {}


def register_pool(name: str) -> Callable[[T], T]:
    """Decorator registering a pool class or factory under ``name`` (lower-case; must be new)."""
    key = name.lower()

    def deco(factory: T) -> T:
        if key in POOLS and POOLS[key] is not factory:
            raise ValueError(f"pool {key!r} is already registered ({POOLS[key]!r})")
        POOLS[key] = factory
        return factory

    return deco


def available_pools() -> list[str]:
    """Sorted names of the registered pools."""
    return sorted(POOLS)


def create_pool(name: str, in_channels: int, feat_size: int | None = None, **kwargs) -> nn.Module:
    """Build the pool ``name`` for a ``in_channels x feat_size x feat_size`` map; ``kwargs`` go to its factory."""
    key = name.lower()
    if key not in POOLS:
        raise ValueError(f"unknown pool {name!r}; available pools: {', '.join(available_pools())}")
    try:
        pool = POOLS[key](in_channels=in_channels, feat_size=feat_size, **kwargs)
    except TypeError as err:
        raise TypeError(f"pool {key!r}: bad arguments {sorted(kwargs)} ({err})") from err
    if not hasattr(pool, "out_features"):
        raise TypeError(f"pool {key!r} ({type(pool).__name__}) has no out_features attribute")
    return pool


class _GlobalPool(nn.Module):
    def __init__(self, in_channels: int, feat_size: int | None = None) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.feat_size = feat_size
        self.out_features = self.in_channels

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects B x {self.in_channels} x H x W, got shape {tuple(x.shape)}"
            )

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_features={self.out_features}"


@register_pool("avg")
class GlobalAvgPool(_GlobalPool):
    """Global average pooling: ``B x C x H x W -> B x C``. Works for any spatial size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return x.mean(dim=(2, 3))


@register_pool("max")
class GlobalMaxPool(_GlobalPool):
    """Global max pooling: ``B x C x H x W -> B x C``. Works for any spatial size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return x.amax(dim=(2, 3))


register_pool("arm")(ARM)
