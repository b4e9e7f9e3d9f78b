"""Adaptive per-class clean / noisy thresholds of ASM (Zhang et al., PRCV 2023).

ASM splits the training set by comparing a sample's confidence on its given label with two thresholds of that
label's class, a *clean* threshold ``T_c^k`` and a *noisy* threshold ``T_n^k``. The thresholds adapt to how hard
each class is: every epoch they are recomputed from the class's mean confidence, starting from the paper's base
values ``[T_n, T_c] = [0.2, 0.8]``.

The paper does not publish the exact equations, so the default below is ferkit's choice, a tunable default rule in
the style of FreeMatch (Wang et al., ICLR 2023):

* ``p_k``  = mean confidence of the samples labelled ``k`` (optionally an EMA across epochs, momentum 0.9);
* ``tau_k`` = ``p_k / max_j p_j``                 (``norm="max"``; ``"none"`` uses ``p_k`` itself, ``"fixed"`` 1);
* ``T_c^k`` = ``tau_k * T_c``,  ``T_n^k = tau_k * T_n``.

Any other rule can be plugged in with ``threshold_fn(class_mean, t_clean, t_noisy) -> (clean, noisy)``.

All state is in registered buffers (so it is checkpointed and moves with ``.to(device)``); :meth:`update` is a
pure function of its inputs, so every rank that feeds it the same gathered data holds the same thresholds.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["ClassThresholds", "ThresholdFn", "max_normalised_thresholds", "THRESHOLD_NORMS"]

#: ``threshold_fn(class_mean [C], t_clean, t_noisy) -> (clean [C], noisy [C])``
ThresholdFn = Callable[[torch.Tensor, float, float], "tuple[torch.Tensor, torch.Tensor]"]

THRESHOLD_NORMS = ("max", "none", "fixed")


def max_normalised_thresholds(class_mean: torch.Tensor, t_clean: float, t_noisy: float,
                              norm: str = "max") -> tuple[torch.Tensor, torch.Tensor]:
    """The default rule: scale the base thresholds by ``tau_k`` (see the module docstring).

    ``class_mean`` may hold NaN for classes without samples: their ``tau_k`` is 1 (base thresholds), and they do
    not take part in the maximum.
    """
    if norm not in THRESHOLD_NORMS:
        raise ValueError(f"norm must be one of {THRESHOLD_NORMS}, got {norm!r}")
    known = torch.isfinite(class_mean)
    if norm == "fixed" or not bool(known.any()):
        tau = torch.ones_like(class_mean)
    elif norm == "max":
        peak = class_mean[known].max().clamp_min(torch.finfo(class_mean.dtype).tiny)
        tau = torch.where(known, class_mean / peak, torch.ones_like(class_mean))
    else:  # "none"
        tau = torch.where(known, class_mean, torch.ones_like(class_mean))
    return tau * t_clean, tau * t_noisy


class ClassThresholds(nn.Module):
    """Per-class clean and noisy thresholds learned from per-class mean confidences.

    Args:
        num_classes: C.
        t_clean / t_noisy: the base thresholds ``T_c`` / ``T_n`` (paper: 0.8 / 0.2; ``t_noisy <= t_clean``).
        momentum: EMA momentum of the class means across updates (``p <- m p + (1 - m) p_new``); 0 or None uses
            each epoch's means alone. The first update of a class takes its mean as is.
        norm: ``"max"`` (default), ``"none"`` or ``"fixed"`` (constant base thresholds, the paper's "fixed
            threshold" ablation); ignored when ``threshold_fn`` is given.
        threshold_fn: a replacement rule ``(class_mean, t_clean, t_noisy) -> (clean [C], noisy [C])``. It receives
            the (EMA) class means, NaN for classes never seen.

    Buffers (all in the state dict): ``class_mean`` [C] (NaN until a class is seen), ``clean`` [C], ``noisy`` [C],
    ``num_updates`` (scalar).
    """

    def __init__(self, num_classes: int, t_clean: float = 0.8, t_noisy: float = 0.2, momentum: float | None = 0.9,
                 norm: str = "max", threshold_fn: ThresholdFn | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"ClassThresholds: num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= t_noisy <= t_clean <= 1.0:
            raise ValueError(f"ClassThresholds: need 0 <= t_noisy <= t_clean <= 1, got t_noisy={t_noisy}, t_clean={t_clean}")
        momentum = float(momentum or 0.0)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"ClassThresholds: momentum must be in [0, 1), got {momentum}")
        if norm not in THRESHOLD_NORMS:
            raise ValueError(f"ClassThresholds: norm must be one of {THRESHOLD_NORMS}, got {norm!r}")
        self.num_classes = int(num_classes)
        self.t_clean, self.t_noisy, self.momentum, self.norm = float(t_clean), float(t_noisy), momentum, norm
        self.threshold_fn = threshold_fn
        self.register_buffer("class_mean", torch.full((num_classes,), float("nan")))
        self.register_buffer("clean", torch.full((num_classes,), float(t_clean)))
        self.register_buffer("noisy", torch.full((num_classes,), float(t_noisy)))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        rule = getattr(self.threshold_fn, "__name__", repr(self.threshold_fn)) if self.threshold_fn else f"norm={self.norm!r}"
        return f"num_classes={self.num_classes}, t_clean={self.t_clean}, t_noisy={self.t_noisy}, momentum={self.momentum}, {rule}"

    @staticmethod
    def class_means(confidence: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Mean of ``confidence`` per class of ``labels`` (float64 accumulation; NaN for empty classes)."""
        conf = confidence.detach().reshape(-1).to(torch.float64)
        lab = labels.detach().reshape(-1).long()
        if conf.shape != lab.shape:
            raise ValueError(f"confidence has {conf.numel()} values but labels {lab.numel()}")
        if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= num_classes):
            raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {int(lab.min())}..{int(lab.max())}")
        sums = torch.zeros(num_classes, dtype=torch.float64, device=conf.device).index_add_(0, lab, conf)
        counts = torch.bincount(lab, minlength=num_classes).to(torch.float64)
        return torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, float("nan")))

    @torch.no_grad()
    def update(self, confidence: torch.Tensor, labels: torch.Tensor) -> None:
        """Recompute the thresholds from one epoch's confidences on the given labels.

        ``confidence`` [M] is each sample's probability of its given label (for ASM the mean over the two
        networks); ``labels`` [M] the given labels. Call it with the same (gathered) data on every rank.
        """
        conf = confidence.detach()
        if conf.numel():
            lo, hi = torch.stack([conf.min(), conf.max()]).double().tolist()  # NaN propagates into both
            if not (0.0 <= lo and hi <= 1.0):
                raise ValueError(f"ClassThresholds.update: confidences must be probabilities in [0, 1] (each sample's "
                                 f"probability of its given label), got values in [{lo:.3g}, {hi:.3g}]; drop samples "
                                 "without a confidence (NaN) before the update")
        new = self.class_means(conf, labels, self.num_classes).to(self.class_mean)
        old = self.class_mean
        seen_new, seen_old = torch.isfinite(new), torch.isfinite(old)
        blended = torch.where(seen_old, self.momentum * old + (1.0 - self.momentum) * new, new)
        self.class_mean.copy_(torch.where(seen_new, blended, old))
        if self.threshold_fn is not None:
            clean, noisy = self.threshold_fn(self.class_mean.clone(), self.t_clean, self.t_noisy)
        else:
            clean, noisy = max_normalised_thresholds(self.class_mean, self.t_clean, self.t_noisy, self.norm)
        clean = torch.as_tensor(clean, dtype=self.clean.dtype, device=self.clean.device).reshape(-1)
        noisy = torch.as_tensor(noisy, dtype=self.noisy.dtype, device=self.noisy.device).reshape(-1)
        if clean.numel() != self.num_classes or noisy.numel() != self.num_classes:
            raise ValueError(f"threshold_fn must return two tensors of {self.num_classes} values, got {clean.numel()} and {noisy.numel()}")
        self.clean.copy_(clean)
        self.noisy.copy_(noisy)
        self.num_updates += 1

    def reset(self) -> None:
        """Back to the base thresholds and no history."""
        self.class_mean.fill_(float("nan"))
        self.clean.fill_(self.t_clean)
        self.noisy.fill_(self.t_noisy)
        self.num_updates.zero_()
