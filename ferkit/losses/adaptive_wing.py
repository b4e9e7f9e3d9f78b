"""Adaptive Wing loss for heatmap regression (Wang, Bo & Fuxin, ICCV 2019, arXiv 1904.07399).

With ``delta = |y - y_hat|`` and the target-dependent exponent ``a = alpha - y``::

    AW(y, y_hat) = omega * ln(1 + (delta / eps) ** a)        if delta < theta
                 = A * delta - C                              otherwise
    A = omega * a * (theta / eps) ** (a - 1) / (eps * (1 + (theta / eps) ** a))
    C = theta * A - omega * ln(1 + (theta / eps) ** a)

``A`` and ``C`` make the loss and its first derivative continuous at ``delta = theta``. Near the Gaussian peaks
(``y`` close to 1, ``a`` close to 1.1) the loss behaves like L1 with a large gradient; on the background
(``y = 0``, ``a = 2.1``) it is flat near zero, so small errors there are not over-penalised.
"""
from __future__ import annotations

import torch
from torch import nn

from ferkit.losses.base import LossOutput

__all__ = ["AdaptiveWingLoss", "adaptive_wing_loss"]


def adaptive_wing_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    alpha: float = 2.1,
    omega: float = 14.0,
    eps: float = 1.0,
    theta: float = 0.5,
    reduction: str = "mean",
) -> torch.Tensor:
    """Element-wise Adaptive Wing loss, optionally weighted, reduced by ``"mean"`` (over all elements), ``"sum"``
    or ``"none"``. ``target`` is expected in [0, 1] (Gaussian heatmaps), so ``a = alpha - y`` stays positive."""
    if pred.shape != target.shape:
        raise ValueError(f"adaptive_wing_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if weight is not None and weight.shape != pred.shape:
        try:
            weight = weight.expand_as(pred)
        except RuntimeError as err:
            raise ValueError(f"adaptive_wing_loss: weight {tuple(weight.shape)} does not broadcast to pred "
                             f"{tuple(pred.shape)} (per-point weights of B x K heatmaps are B x K x 1 x 1)") from err
    target = target.to(pred.dtype)
    delta = (target - pred).abs()
    a = alpha - target
    ratio = theta / eps
    # A, C per element (a depends on the target)
    big_a = omega * a * ratio ** (a - 1) / (eps * (1 + ratio**a))
    big_c = theta * big_a - omega * torch.log1p(ratio**a)
    # clamp inside the log branch so its (unused) gradient stays finite where delta >= theta
    small = omega * torch.log1p((delta.clamp(max=theta) / eps) ** a)
    loss = torch.where(delta < theta, small, big_a * delta - big_c)
    if weight is not None:
        loss = loss * weight
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class AdaptiveWingLoss(nn.Module):
    """Module form of :func:`adaptive_wing_loss`: ``loss(pred, target, weight=None) -> LossOutput``.

    ``total`` is the loss; ``terms`` holds it as ``{"adaptive_wing": ...}`` for logging (``reduction="none"`` is
    for the functional form only: a module's ``total`` is a scalar). ``target`` must lie in [0, 1] (checked).

    Defaults are LA-Net's (alpha 2.1, omega 14, eps 1, theta 0.5); ``"mean"`` averages over every element
    (B x K x h x w), as LA-Net does, so weight-0 (missing) points still count in the denominator.
    """

    def __init__(self, alpha: float = 2.1, omega: float = 14.0, eps: float = 1.0, theta: float = 0.5,
                 reduction: str = "mean") -> None:
        super().__init__()
        if eps <= 0 or theta <= 0 or omega <= 0:
            raise ValueError(f"AdaptiveWingLoss: omega, eps and theta must be > 0, got {omega}, {eps}, {theta}")
        if alpha <= 1:
            raise ValueError(f"AdaptiveWingLoss: alpha must exceed 1 (targets lie in [0, 1]), got {alpha}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"AdaptiveWingLoss: reduction must be 'mean' or 'sum', got {reduction!r} "
                             "(use adaptive_wing_loss(..., reduction='none') for per-element values)")
        self.alpha, self.omega, self.eps, self.theta, self.reduction = alpha, omega, eps, theta, reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> LossOutput:
        if target.numel() and (float(target.min()) < 0.0 or float(target.max()) > 1.0):
            raise ValueError(f"AdaptiveWingLoss: target heatmaps must lie in [0, 1] (Gaussian peaks of height 1), got "
                             f"values in [{float(target.min()):.3g}, {float(target.max()):.3g}]")
        total = adaptive_wing_loss(pred, target, weight, self.alpha, self.omega, self.eps, self.theta, self.reduction)
        return LossOutput(total, {"adaptive_wing": total.detach()})

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, omega={self.omega}, eps={self.eps}, theta={self.theta}, reduction={self.reduction!r}"
