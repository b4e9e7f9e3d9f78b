"""Export the inference network of any ferkit method, from a LightningModule, a torch model or a checkpoint.

* :func:`export_inference_model` returns an eval-mode CPU copy of what a method deploys, without losses, miners,
  memories or Lightning: FERNet for the CE baseline and ARM, the two-network average :class:`ASMModel` for ASM, the
  expression path of LA-Net as a plain FERNet (a torch model defines ``inference_network()`` when it deploys less
  than itself). Its ``class_names`` attribute carries the label names in order.
* :func:`save_inference_model` writes it as TorchScript (traced; loads with ``torch.jit.load``, no ferkit needed)
  or as a state-dict bundle with the constructor arguments (``format="state_dict"``).
* :func:`load_inference_model` reads either format back.

Command line: ``ferkit export --ckpt runs/.../last.ckpt --out model.pt [--format torchscript|state_dict]``.
"""
from __future__ import annotations

import copy
import importlib
import os
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ferkit.methods import FERModule
from ferkit.models import FERNetConfig

__all__ = ["load_module", "export_inference_model", "save_inference_model", "load_inference_model"]


def _import(path: str) -> Any:
    mod, _, name = path.rpartition(".")
    return getattr(importlib.import_module(mod), name)


def load_module(ckpt_path: str | os.PathLike) -> FERModule:
    """The ferkit LightningModule saved in ``ckpt_path`` (its class is read from the checkpoint), on the CPU."""
    ckpt = torch.load(str(ckpt_path), map_location="cpu", weights_only=False)
    meta = ckpt.get("ferkit") or {}
    path = meta.get("class_path") or (ckpt.get("hyper_parameters") or {}).get("_class_path")
    if not path:
        raise ValueError(f"{ckpt_path}: not a ferkit checkpoint (no ferkit.class_path entry); load the LightningModule "
                         "yourself and pass it to export_inference_model")
    cls = _import(path)
    return cls.load_from_checkpoint(str(ckpt_path), map_location="cpu")


def export_inference_model(module_or_ckpt: nn.Module | str | os.PathLike) -> nn.Module:
    """An eval-mode CPU copy of the deployable network of a method (module, torch model or checkpoint path)."""
    module = load_module(module_or_ckpt) if isinstance(module_or_ckpt, (str, os.PathLike)) else module_or_ckpt
    net = module.model if isinstance(module, FERModule) else module
    out = net.inference_network() if hasattr(net, "inference_network") else copy.deepcopy(net)
    out = out.cpu().eval()
    for p in out.parameters():
        p.requires_grad_(False)
    out.class_names = list(getattr(module, "class_names", None) or getattr(net, "class_names", None) or [])
    return out


def save_inference_model(module_or_ckpt: nn.Module | str | os.PathLike, path: str | os.PathLike,
                         format: Literal["torchscript", "state_dict"] = "torchscript") -> Path:
    """Export and write to ``path``: TorchScript traced on a zero image, or a state-dict bundle."""
    net = export_inference_model(module_or_ckpt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "torchscript":
        example = torch.zeros(1, net.in_chans, net.img_size, net.img_size)
        traced = torch.jit.trace(net, example, check_trace=False)
        traced.save(str(path), _extra_files={"class_names.txt": "\n".join(net.class_names)})
    elif format == "state_dict":
        torch.save({"class_path": f"{type(net).__module__}.{type(net).__qualname__}", "net": net.config.to_dict(),
                    "num_classes": net.num_classes, "in_chans": net.in_chans, "img_size": net.img_size,
                    "class_names": net.class_names, "state_dict": net.state_dict()}, path)
    else:
        raise ValueError(f"format must be 'torchscript' or 'state_dict', got {format!r}")
    return path


def load_inference_model(path: str | os.PathLike) -> nn.Module:
    """Read a file written by :func:`save_inference_model` (either format) as an eval-mode module."""
    path = Path(path)
    files = {"class_names.txt": ""}
    try:
        m = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    except RuntimeError:
        m = None
    if m is not None:
        text = files["class_names.txt"]
        m.class_names = [n for n in (text.decode() if isinstance(text, bytes) else text).split("\n") if n]
        return m.eval()
    bundle = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(bundle, dict) or "state_dict" not in bundle or "class_path" not in bundle:
        raise ValueError(f"{path}: neither TorchScript nor a bundle written by ferkit.export.save_inference_model")
    net = _import(bundle["class_path"])(FERNetConfig.coerce(bundle["net"]), num_classes=bundle["num_classes"],
                                        in_chans=bundle["in_chans"], img_size=bundle["img_size"])
    net.load_state_dict(bundle["state_dict"])
    net.class_names = list(bundle.get("class_names", []))
    return net.eval()
