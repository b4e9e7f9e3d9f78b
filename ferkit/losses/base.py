"""The one call convention of ferkit's losses.

Every loss is an ``nn.Module`` whose ``forward`` returns one :class:`LossOutput`: the scalar ``total`` to
back-propagate and a dict of named, detached ``terms`` for logging. A loss with more to say (the targets it
estimated, subset sizes, ...) returns a subclass of :class:`LossOutput` with extra typed fields. Functional forms
(``adaptive_wing_loss(...)``, ``mutual_kl(...)``) return plain tensors.

Typical use in a training step::

    out = self.loss(...)
    self.log_dict({f"train/{k}": v for k, v in out.terms.items()})
    return out.total
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["LossOutput", "check_batch_size"]


@dataclass
class LossOutput:
    """What every ferkit loss returns.

    Attributes:
        total: the scalar to back-propagate (graph attached).
        terms: named parts of the loss, detached, for logging (``{"clean": ..., "noisy": ...}``); unweighted unless
            the loss documents otherwise.
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.total, torch.Tensor) or self.total.ndim != 0:
            shape = tuple(self.total.shape) if isinstance(self.total, torch.Tensor) else type(self.total).__name__
            raise ValueError(f"LossOutput.total must be a scalar tensor, got {shape}")

    def log_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """``{prefix + name: value}`` of the terms, ready for ``LightningModule.log_dict``."""
        return {f"{prefix}{k}": v for k, v in self.terms.items()}

    # Code written when a loss returned a bare tensor fails here with the fix, not deep inside torch.
    def _not_a_tensor(self, *_args: object) -> None:
        raise TypeError(f"{type(self).__name__} is not a tensor: use .total for the loss (and .terms for its parts)")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __float__ = _not_a_tensor
    item = backward = detach = _not_a_tensor


def check_batch_size(owner: str, **tensors: torch.Tensor) -> int:
    """The common dim-0 size of ``tensors``; a ``ValueError`` listing every size when they differ."""
    sizes = {k: int(v.shape[0]) if v.ndim else 0 for k, v in tensors.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{owner}: batch sizes differ: " + ", ".join(f"{k} {n}" for k, n in sizes.items()))
    return next(iter(sizes.values()))
