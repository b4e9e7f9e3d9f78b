"""Local pretrained weights: resolving a tag or path to a file, and loading it into a timm backbone.

ferkit never downloads anything. ``pretrained`` is either

* ``None`` / ``"none"``: random initialisation;
* a path to a ``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors`` file;
* a tag such as ``"imagenet"`` or ``"msceleb"``: the file ``<weights_dir>/<name>_<tag>.{pth,pt,safetensors}``, where
  ``weights_dir`` is ``$FERKIT_WEIGHTS`` or ``~/.cache/ferkit/weights``. For example ResNet-18 with MS-Celeb-1M
  weights (ASM/MAN, LA-Net) is ``~/.cache/ferkit/weights/resnet18_msceleb.pth``; ARM's ImageNet ResNet-18 is
  ``resnet18_imagenet.pth`` (torchvision's ``resnet18-f37072fd.pth`` has timm-compatible key names).

Loading unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` containers, strips ``module.`` / ``model.`` /
``backbone.`` prefixes, drops classifier keys (``fc.*``, ``classifier.*``, ``head.*``, ...), adapts the first
convolution to the requested number of input channels, and refuses shape mismatches with a list of the keys.

timm's own tools do the reading (``timm.models.load_state_dict``: torch pickles with ``weights_only=True`` and
safetensors, ``state_dict`` / ``model`` containers, the ``module.`` prefix) and the first-conv adaptation
(``timm.models.adapt_input_conv``). ferkit does not load through ``timm.create_model(pretrained=True,
pretrained_cfg_overlay=dict(file=...))``: that path would not unwrap Lightning checkpoints or strip
``model.`` / ``backbone.`` prefixes, would raise timm's error rather than ours naming the exact file to create
when the file is missing, and would fall back to a hub download for a configuration without a file.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from timm.models import adapt_input_conv
from timm.models import load_state_dict as timm_load_state_dict
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["weights_dir", "resolve_weights", "load_state_dict_file", "load_pretrained", "WEIGHT_SUFFIXES"]

#: suffixes tried for a tag, in order
TAG_SUFFIXES = (".pth", ".pt", ".safetensors")
#: suffixes accepted for an explicit path
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "params", "weights")
_PREFIXES = ("module.", "model.", "backbone.", "encoder.", "features.")
_CLASSIFIER_ROOTS = ("fc", "classifier", "head", "heads", "last_linear", "logits")
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


def weights_dir() -> Path:
    """The local weights folder: ``$FERKIT_WEIGHTS`` or ``~/.cache/ferkit/weights``."""
    env = os.environ.get("FERKIT_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ferkit" / "weights"


def _looks_like_path(spec: str) -> bool:
    return (
        os.sep in spec
        or "/" in spec
        or spec.startswith("~")
        or spec.lower().endswith(WEIGHT_SUFFIXES)
        or not _TAG_RE.match(spec)
    )


def resolve_weights(name: str, pretrained: str | os.PathLike | None) -> Path | None:
    """Turn ``pretrained`` (None, a path or a tag) into an existing file, or None for random initialisation.

    Raises:
        FileNotFoundError: the path does not exist, or no file for the tag is in the weights folder; the message
            gives the exact path to create and how to pass a path instead.
    """
    if pretrained is None:
        return None
    spec = os.fspath(pretrained)
    if spec.strip().lower() in ("", "none", "false", "random"):
        return None
    if isinstance(pretrained, os.PathLike) or _looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained weights file {str(path)!r} for backbone {name!r} does not exist. Pass an existing "
                f".pth/.pt/.bin/.safetensors file, a tag such as 'imagenet' (looked up in {weights_dir()}), "
                "or None for random initialisation."
            )
        return path
    folder = weights_dir()
    candidates = [folder / f"{name}_{spec}{suffix}" for suffix in TAG_SUFFIXES]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"pretrained={spec!r}: no weights file for backbone {name!r}. Expected {candidates[0]} "
        f"(or the same name with {', '.join(TAG_SUFFIXES[1:])}). ferkit never downloads weights: obtain the file "
        f"yourself and put it at that path (set $FERKIT_WEIGHTS to use another folder than {folder}), or pass "
        f"the file path directly, e.g. pretrained='/path/to/{name}_{spec}.pth'."
    )


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch pickle (``weights_only=True``) and unwrap containers."""
    path = Path(path)
    try:
        # timm reads safetensors or a torch pickle (weights_only=True), unwraps "state_dict" / "model" and strips
        # "module."; use_ema=False keeps the trained weights of a file that also holds an EMA copy
        obj: Any = timm_load_state_dict(str(path), use_ema=False, weights_only=True)
    except Exception as err:  # unpickling of arbitrary objects is refused on purpose
        raise RuntimeError(
            f"could not read weights from {str(path)!r} with torch.load(weights_only=True) / safetensors: {err}. If the "
            "file is a full pickled model or checkpoint from a source you trust, re-save only its tensors, e.g. "
            "torch.save(torch.load(p, weights_only=False).state_dict(), 'weights.pth'), and pass that file."
        ) from err
    # unwrap {"state_dict": {...}} / {"model": {...}} / Lightning checkpoints, possibly nested
    for _ in range(3):
        if isinstance(obj, Mapping) and not _is_tensor_dict(obj):
            inner = next((obj[k] for k in _CONTAINER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise RuntimeError(f"{str(path)!r} does not contain a state dict (found {type(obj).__name__})")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise RuntimeError(
            f"{str(path)!r} contains no tensors at the top level nor under any of {_CONTAINER_KEYS}; "
            f"top-level keys: {list(obj)[:10]}"
        )
    return tensors


def _is_tensor_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _first_conv_keys(model: nn.Module) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    first = cfg.get("first_conv")
    if first is None:
        return []
    names = [first] if isinstance(first, str) else list(first)
    return [f"{n}.weight" for n in names]


def _adapt_first_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Map a ``O x I x k x k`` first-conv weight to ``in_chans`` inputs with timm's rule: summed over the inputs for
    one channel (a grey image replicated to RGB gives the same activations), else repeated and scaled by
    ``I / in_chans``."""
    return adapt_input_conv(in_chans, weight, base_chans=weight.shape[1])


def load_pretrained(model: nn.Module, path: str | os.PathLike, in_chans: int = 3) -> tuple[list[str], list[str]]:
    """Load the weights file ``path`` into ``model`` (a timm model without classifier).

    Shapes are checked strictly: any key present in both with a different shape raises ``RuntimeError`` listing
    them. Missing / unexpected keys are logged (a warning with their count and first names); a file sharing no
    key with the model raises. Returns ``(missing, unexpected)``.
    """
    path = Path(path)
    state = load_state_dict_file(path)
    own = model.state_dict()

    cleaned: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        k = key
        changed = True
        while k not in own and changed:
            changed = False
            for prefix in _PREFIXES:
                if k.startswith(prefix):
                    k = k[len(prefix) :]
                    changed = True
                    break
        if k not in own and k.split(".", 1)[0] in _CLASSIFIER_ROOTS:
            dropped.append(key)
            continue
        cleaned[k] = value

    for k in _first_conv_keys(model):
        if k in cleaned and k in own and cleaned[k].dim() == 4 and cleaned[k].shape[1] != own[k].shape[1]:
            log.info("adapting %s from %d to %d input channels", k, cleaned[k].shape[1], own[k].shape[1])
            cleaned[k] = _adapt_first_conv(cleaned[k], own[k].shape[1])

    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in cleaned.items()
        if k in own and v.shape != own[k].shape
    ]
    if mismatched:
        raise RuntimeError(
            f"weights {str(path)!r} do not fit the backbone: {len(mismatched)} shape mismatch(es):\n  "
            + "\n  ".join(mismatched[:20])
            + ("\n  ..." if len(mismatched) > 20 else "")
            + "\nCheck that the file is for this architecture (and in_chans / small_input settings)."
        )
    matched = [k for k in cleaned if k in own]
    if not matched:
        raise RuntimeError(
            f"weights {str(path)!r} share no parameter name with backbone {type(model).__name__}: file keys look like "
            f"{list(state)[:5]}, model keys like {list(own)[:5]}. Is it the right architecture?"
        )
    result = model.load_state_dict({k: cleaned[k] for k in matched}, strict=False)
    missing = list(result.missing_keys)
    unexpected = [k for k in cleaned if k not in own]
    if dropped:
        log.info("ignored %d classifier tensors from %s (%s...)", len(dropped), path, dropped[:3])
    if missing or unexpected:
        log.warning(
            "loaded %s: %d tensors matched, %d missing in the file (%s), %d unexpected (%s)",
            path, len(matched), len(missing), missing[:5], len(unexpected), unexpected[:5],
        )
    else:
        log.info("loaded %s: all %d tensors matched", path, len(matched))
    return missing, unexpected
