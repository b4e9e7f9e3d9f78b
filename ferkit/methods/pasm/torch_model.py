"""PASM's networks in plain torch: the student is a :class:`ferkit.models.FERNet`; the teacher is the previous
generation's network read from its checkpoint and frozen.

Nothing else is needed at inference: PASM adds no architecture (Liu et al., IEEE TCYB 2022, arXiv 2008.11401), so
the exported model of a PASM run is its student, a plain FERNet.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ferkit.models import FERNet, FERNetConfig

__all__ = ["load_network", "freeze"]


def freeze(net: nn.Module) -> nn.Module:
    """``net`` in eval mode with every parameter's ``requires_grad`` off (returned for chaining)."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_network(ckpt_path: str | os.PathLike, num_classes: int | None = None, in_chans: int | None = None,
                 img_size: int | None = None, prefix: str = "model.") -> FERNet:
    """The :class:`FERNet` of a ferkit checkpoint (any single-network method: the CE baseline, ARM, PASM), frozen.

    Its architecture is read from the checkpoint's ``net`` hyper-parameters. ``num_classes`` / ``in_chans`` /
    ``img_size``, when given, must match the checkpoint's: a teacher must share its student's label space and input.
    """
    path = str(ckpt_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"teacher checkpoint {path} does not exist; train the previous generation first "
                                "(`ferkit pasm` does) or pass another teacher_ckpt")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    hp: dict[str, Any] = dict(ckpt.get("hyper_parameters") or {})
    if "net" not in hp or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a ferkit checkpoint of a single-network method (no 'net' hyper-parameter)")
    for name, want in (("num_classes", num_classes), ("in_chans", in_chans), ("img_size", img_size)):
        if want is not None and hp.get(name) is not None and int(hp[name]) != int(want):
            raise ValueError(f"teacher checkpoint {path} has {name}={hp[name]} but the student has {want}: the teacher must "
                             "be trained on the same label space and input size")
    net = FERNetConfig.coerce(hp["net"]).build(num_classes=int(hp["num_classes"]), in_chans=int(hp["in_chans"]),
                                               img_size=int(hp["img_size"]))
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: its '{prefix}*' weights do not fit a FERNet of {hp['net']} (missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]}); the teacher must be a single-network ferkit model")
    return freeze(net)
