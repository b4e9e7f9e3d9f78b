"""Export LA-Net for inference: the expression path alone, as a plain :class:`ferkit.models.FERNet`.

LA-Net's landmark branch, LDE scorers, contrastive heads and momentum encoder are training-time only. The exported
model holds the trunk, the expression layer2-4, the pool and the classifier under FERNet's module names, so it is
*the same network* as the plain backbone classifier of the same depth and costs exactly as much.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ferkit.methods.lanet.torch_model import LANetModel
from ferkit.models import FERNet

__all__ = ["export_inference_model", "save_inference_model"]

_KEEP = ("backbone.", "pool.", "head.")


def export_inference_model(model: nn.Module | Any) -> FERNet:
    """A FERNet with LA-Net's expression path (weights copied; the result is independent of ``model``).

    ``model`` is a :class:`LANetModel` or anything with a ``model`` attribute holding one (the LightningModule).
    The export is in eval mode and gives the same logits as ``model(x)`` in eval mode.
    """
    net = getattr(model, "model", model)
    if not isinstance(net, LANetModel):
        raise TypeError(f"export_inference_model expects a LANetModel (or a module whose .model is one), got {type(net).__name__}")
    cfg = dict(
        backbone=net.backbone.name, num_classes=net.num_classes, in_chans=net.backbone.in_chans, img_size=net.img_size,
        small_input=net.backbone.small_input, dropout=0.0,
    )
    pool_name = _pool_name(net.pool)
    plain = FERNet(pool=pool_name, pool_kwargs=getattr(net, "_pool_kwargs", None), **cfg)
    state = {k: v for k, v in net.state_dict().items() if k.startswith(_KEEP)}
    plain.load_state_dict(state, strict=True)
    plain.eval()
    return plain.to(next(net.parameters()).device)


def _pool_name(pool: nn.Module) -> str:
    from ferkit.layers.pools import POOLS

    for name, factory in POOLS.items():
        if isinstance(factory, type) and type(pool) is factory:
            return name
    raise ValueError(f"cannot export: pool {type(pool).__name__} is not a registered pool class")


def save_inference_model(model: nn.Module | Any, path: str | os.PathLike, example: torch.Tensor | None = None,
                         torchscript: bool = False) -> Path:
    """Export and save: a state dict loadable into FERNet (``.pth``; with its constructor arguments under
    ``"ferkit_config"``), or a TorchScript trace (``torchscript=True``; needs ``example`` input)."""
    plain = export_inference_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if torchscript:
        if example is None:
            raise ValueError("torchscript=True needs an example input batch")
        with torch.no_grad():
            torch.jit.trace(plain, example.to(next(plain.parameters()).device)).save(str(path))
        return path
    net = getattr(model, "model", model)
    torch.save({"state_dict": plain.state_dict(), "ferkit_config": {
        "backbone": net.backbone.name, "pool": _pool_name(net.pool), "pool_kwargs": getattr(net, "_pool_kwargs", None),
        "num_classes": net.num_classes, "in_chans": net.backbone.in_chans, "img_size": net.img_size,
        "small_input": net.backbone.small_input}}, path)
    return path
