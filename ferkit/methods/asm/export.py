"""Export ASM's inference model: the two networks with averaged logits, as one plain ``nn.Module``.

* :func:`export_inference_model` returns an eval-mode copy of the :class:`~ferkit.methods.asm.torch_model.ASMNet`
  of a trained module (or checkpoint), on the CPU, without the miner, the loss or Lightning.
* :func:`save_inference_model` writes it as TorchScript (``format="torchscript"``, traced; loads with
  ``torch.jit.load`` and needs no ferkit) or as a plain state dict plus the constructor arguments
  (``format="state_dict"``; rebuild with :func:`load_inference_model`).

Command line::

    python -m ferkit.methods.asm.export --ckpt runs/.../last.ckpt --out asm.pt [--format torchscript|state_dict]
"""
from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ferkit.methods.asm.torch_model import ASMNet

__all__ = ["export_inference_model", "save_inference_model", "load_inference_model", "main"]

_NET_ARGS = ("backbone", "pool", "num_classes", "in_chans", "img_size", "small_input", "dropout", "pool_kwargs")


def _load_module(module_or_ckpt: Any):
    if isinstance(module_or_ckpt, (str, os.PathLike)):
        from ferkit.methods.asm.lightning_model import ASM

        return ASM.load_from_checkpoint(str(module_or_ckpt), map_location="cpu")
    return module_or_ckpt


def export_inference_model(module_or_ckpt: Any) -> ASMNet:
    """An eval-mode CPU copy of the averaged two-network model of an :class:`ASM` module or checkpoint path.

    Its ``forward(x)`` returns ``1/2 (f1(x) + f2(x))``, the logits ASM is evaluated with; its ``class_names``
    attribute carries the label names in order.
    """
    module = _load_module(module_or_ckpt)
    net = getattr(module, "model", module)
    if not isinstance(net, ASMNet):
        raise TypeError(f"expected an ASM LightningModule or ASMNet, got {type(module).__name__}")
    out = copy.deepcopy(net).cpu().eval()
    out.class_names = list(getattr(module, "class_names", []) or [])
    out.config = {k: module.hparams.get(k) for k in _NET_ARGS} if hasattr(module, "hparams") else {}
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def save_inference_model(module_or_ckpt: Any, path: str | os.PathLike, format: str = "torchscript") -> Path:
    """Write the inference model to ``path`` (TorchScript, traced on a zero image; or a state-dict bundle)."""
    net = export_inference_model(module_or_ckpt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "torchscript":
        example = torch.zeros(1, net.in_chans, net.img_size, net.img_size)
        traced = torch.jit.trace(net, example, check_trace=False)
        traced.save(str(path), _extra_files={"class_names.txt": "\n".join(net.class_names)})
    elif format == "state_dict":
        torch.save({"config": net.config, "class_names": net.class_names, "state_dict": net.state_dict()}, path)
    else:
        raise ValueError(f"format must be 'torchscript' or 'state_dict', got {format!r}")
    return path


def load_inference_model(path: str | os.PathLike) -> nn.Module:
    """Load a file written by :func:`save_inference_model` (either format) as an eval-mode module."""
    path = Path(path)
    try:
        files = {"class_names.txt": ""}
        m = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        m.class_names = [n for n in files["class_names.txt"].split("\n") if n] if isinstance(files["class_names.txt"], str) \
            else [n for n in files["class_names.txt"].decode().split("\n") if n]
        return m.eval()
    except RuntimeError:
        pass
    bundle = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(bundle, dict) or "state_dict" not in bundle:
        raise ValueError(f"{path}: neither TorchScript nor an ASM state-dict bundle written by save_inference_model")
    net = ASMNet(**{k: v for k, v in bundle["config"].items() if v is not None})
    net.load_state_dict(bundle["state_dict"])
    net.class_names = bundle.get("class_names", [])
    return net.eval()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ferkit.methods.asm.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="an ASM Lightning checkpoint")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--format", default="torchscript", choices=["torchscript", "state_dict"])
    a = p.parse_args(argv)
    path = save_inference_model(a.ckpt, a.out, a.format)
    print(f"[ferkit] wrote the ASM inference model ({a.format}) to {path}")


if __name__ == "__main__":
    main()
