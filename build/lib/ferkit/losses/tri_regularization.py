"""Tri-Regularization, the training loss of ASM (and of its predecessor MAN), METHODS.md section 2.2.

Two networks f1, f2 see the same weak view; their logits are ``z1``, ``z2``. Given a clean / ambiguous / noisy
split of the batch:

* **clean** ``L_c = 1/2 [CE(z1, y) + CE(z2, y)]``;
* **ambiguous** ``L_a = (1 - lambda) 1/2 [CE(z1, y) + CE(z2, y)] + lambda 1/2 [KL(s2 || s1) + KL(s1 || s2)]`` with
  ``s_k = softmax(z_k)`` and neither KL argument detached (mutual learning); ``lambda(e)`` ramps up with the
  absolute epoch ``e`` (warm-up included): ``lambda(e) = lambda_max exp(-beta (1 - e / e_r)^2)``,
  ``e_r = ramp_end_frac * E_max`` (not clamped after ``e_r``);
* **noisy** (labels ignored) ``L_n = 1/2 [MSE(softmax(f1(x_w)), softmax(f1(x_s))) + MSE(same for f2)]``, the mean
  over ``|S_n| x C`` elements, nothing detached;
* **total** ``L = L_c + omega L_a + gamma L_n``.

Each term is averaged over its own subset and is 0 when the subset is empty. Samples whose subset is unknown
(-1, not judged yet) get the clean (supervised) term.

DDP (``gather_distributed=True``): each term's denominator is the subset's size over *all* ranks (one all-reduce
of three counts), and the per-rank loss is multiplied by the world size W. DDP averages parameter gradients over
ranks, so the update equals the single-process update on the concatenated batch -- even though the ranks hold
different numbers of clean / ambiguous / noisy samples. (A per-rank mean would weight a rank's few noisy samples
as much as another rank's many.) The returned ``total`` is then W times the rank's share; its mean over ranks
(``self.log(..., sync_dist=True)``) is the global loss. No-op with one process.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ferkit.miners.split import SampleSplit
from ferkit.state.distributed import get_world_size, is_distributed

__all__ = ["TriRegularization", "LossOutput", "mutual_kl", "ramp_weight"]


@dataclass
class LossOutput:
    """The total loss and its parts (``clean``, ``ambiguous``, ``noisy`` unweighted), the ramp weight ``lambda_``
    and the number of samples of each subset in the (global) batch."""

    total: torch.Tensor
    clean: torch.Tensor
    ambiguous: torch.Tensor
    noisy: torch.Tensor
    lambda_: float
    counts: tuple[int, int, int] = (0, 0, 0)


def ramp_weight(epoch: float, max_epochs: float, lambda_max: float = 0.9, beta: float = 0.65, ramp_end_frac: float = 0.9) -> float:
    """``lambda(e) = lambda_max * exp(-beta * (1 - e / e_r)^2)`` with ``e_r = ramp_end_frac * max_epochs``.

    ``epoch`` is the absolute 1-based epoch (warm-up included). ``lambda(11) ~ 0.545`` for ``max_epochs=100``.
    """
    if max_epochs <= 0 or ramp_end_frac <= 0:
        raise ValueError(f"ramp_weight: max_epochs and ramp_end_frac must be > 0, got {max_epochs}, {ramp_end_frac}")
    e_r = ramp_end_frac * max_epochs
    return float(lambda_max * math.exp(-beta * (1.0 - epoch / e_r) ** 2))


def mutual_kl(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Per-sample symmetric KL ``1/2 [KL(s2 || s1) + KL(s1 || s2)]`` from logits ``[M, C]``; gradients reach both."""
    l1, l2 = F.log_softmax(z1, dim=1), F.log_softmax(z2, dim=1)
    # KL(p2 || p1) + KL(p1 || p2) = sum (p2 - p1)(log p2 - log p1)
    return 0.5 * ((l2.exp() - l1.exp()) * (l2 - l1)).sum(dim=1)


class TriRegularization(nn.Module):
    """Tri-Regularization loss (see the module docstring for the equations).

    Args:
        omega: weight of the ambiguous term (paper 0.6).
        gamma: weight of the noisy (consistency) term (paper 1.0; > 2 hurts).
        lambda_max / beta / ramp_end_frac: the ramp of the mutual-learning weight (0.9 / 0.65 / 0.9).
        label_smoothing: CE label smoothing (0 in the paper).
        gather_distributed: normalise by subset sizes over all ranks (see the module docstring).
    """

    def __init__(self, omega: float = 0.6, gamma: float = 1.0, lambda_max: float = 0.9, beta: float = 0.65,
                 ramp_end_frac: float = 0.9, label_smoothing: float = 0.0, gather_distributed: bool = True) -> None:
        super().__init__()
        if omega < 0 or gamma < 0 or lambda_max < 0:
            raise ValueError(f"TriRegularization: omega, gamma and lambda_max must be >= 0, got {omega}, {gamma}, {lambda_max}")
        self.omega, self.gamma = float(omega), float(gamma)
        self.lambda_max, self.beta, self.ramp_end_frac = float(lambda_max), float(beta), float(ramp_end_frac)
        self.label_smoothing = float(label_smoothing)
        self.gather_distributed = gather_distributed

    def extra_repr(self) -> str:
        return (f"omega={self.omega}, gamma={self.gamma}, lambda_max={self.lambda_max}, beta={self.beta}, "
                f"ramp_end_frac={self.ramp_end_frac}")

    def ramp(self, epoch: float, max_epochs: float) -> float:
        """The mutual-learning weight ``lambda(epoch)`` (absolute 1-based epoch)."""
        return ramp_weight(epoch, max_epochs, self.lambda_max, self.beta, self.ramp_end_frac)

    def _denominators(self, counts: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Subset sizes to divide by (global under DDP) and the factor W that undoes DDP's gradient averaging."""
        if self.gather_distributed and is_distributed():
            import torch.distributed as dist

            total = counts.clone()
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
            return total, float(get_world_size())
        return counts, 1.0

    def forward(self, z1_w: torch.Tensor, z2_w: torch.Tensor, z1_s: torch.Tensor | None, z2_s: torch.Tensor | None,
                y: torch.Tensor, split: SampleSplit, epoch: float, max_epochs: float) -> LossOutput:
        """Compute the loss of one batch.

        Args:
            z1_w, z2_w: logits ``[B, C]`` of the two networks on the weak view.
            z1_s, z2_s: logits of the two networks on the strong view, either for the noisy samples only
                (``[n_noisy, C]``, in batch order -- the cheap way: forward only ``x_s[split.noisy]``) or for the
                whole batch (``[B, C]``). May be None when the batch has no noisy sample.
            y: given labels ``[B]`` (ignored for noisy samples).
            split: the batch's :class:`SampleSplit` (``miner.split_for(batch["index"])``).
            epoch: absolute 1-based epoch (for ``lambda``). max_epochs: ``E_max``.
        """
        if z1_w.shape != z2_w.shape or z1_w.ndim != 2:
            raise ValueError(f"z1_w and z2_w must both be [B, C], got {tuple(z1_w.shape)} and {tuple(z2_w.shape)}")
        b = z1_w.shape[0]
        if len(split) != b or y.shape[0] != b:
            raise ValueError(f"batch of {b} logits but {len(split)} split entries and {y.shape[0]} labels")
        sid = split.subset_id.to(z1_w.device)
        clean = (sid == 0) | (sid == -1)
        amb, noisy = sid == 1, sid == 2
        n_local = torch.stack([clean.sum(), amb.sum(), noisy.sum()]).to(torch.long)
        denom, scale = self._denominators(n_local)
        lam = self.ramp(epoch, max_epochs)
        zero = z1_w.new_zeros(())

        def ce_pair(mask: torch.Tensor) -> torch.Tensor:  # per-sample 1/2 [CE(z1, y) + CE(z2, y)]
            yy = y[mask]
            return 0.5 * (F.cross_entropy(z1_w[mask], yy, reduction="none", label_smoothing=self.label_smoothing)
                          + F.cross_entropy(z2_w[mask], yy, reduction="none", label_smoothing=self.label_smoothing))

        def mean_over(total: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
            return total * (scale / n.clamp_min(1).to(total.dtype)) if int(n) > 0 else zero + 0.0 * total

        l_clean = mean_over(ce_pair(clean).sum(), denom[0])
        if bool(amb.any()):
            a_sum = ((1.0 - lam) * ce_pair(amb) + lam * mutual_kl(z1_w[amb], z2_w[amb])).sum()
        else:
            a_sum = zero
        l_amb = mean_over(a_sum, denom[1])

        n_noisy = int(noisy.sum())
        if n_noisy > 0:
            if z1_s is None or z2_s is None:
                raise ValueError(f"the batch has {n_noisy} noisy samples: pass their strong-view logits z1_s, z2_s")
            if z1_s.shape != z2_s.shape:
                raise ValueError(f"z1_s and z2_s differ in shape: {tuple(z1_s.shape)} vs {tuple(z2_s.shape)}")
            if z1_s.shape[0] == b and n_noisy != b:
                z1_s, z2_s = z1_s[noisy], z2_s[noisy]
            elif z1_s.shape[0] != n_noisy:
                raise ValueError(f"strong-view logits must have {n_noisy} rows (noisy samples) or {b} (whole batch), got {z1_s.shape[0]}")
            c = z1_w.shape[1]
            sq = ((F.softmax(z1_w[noisy], 1) - F.softmax(z1_s, 1)) ** 2).sum() + ((F.softmax(z2_w[noisy], 1) - F.softmax(z2_s, 1)) ** 2).sum()
            n_sum = 0.5 * sq / c
        else:
            n_sum = zero
        l_noisy = mean_over(n_sum, denom[2])

        total = l_clean + self.omega * l_amb + self.gamma * l_noisy
        # under DDP every part is this rank's share times W: its mean over ranks is the global subset mean
        return LossOutput(total=total, clean=l_clean.detach(), ambiguous=l_amb.detach(), noisy=l_noisy.detach(),
                          lambda_=lam, counts=tuple(int(v) for v in denom.tolist()))
