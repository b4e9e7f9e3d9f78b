"""Tri-Regularization, the training loss of ASM (and of its predecessor MAN).

Zhang et al., *ASM: Adaptive Sample Mining for In-The-Wild Facial Expression Recognition*, PRCV 2023.

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

Each term is averaged over its own subset and is 0 when the subset is empty. Samples whose subset is
``Subset.UNKNOWN`` (not judged yet) get the clean (supervised) term.

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

from ferkit.losses.base import LossOutput
from ferkit.state.distributed import all_reduce_sum, get_world_size, is_distributed
from ferkit.state.split import SampleSplit, Subset

__all__ = ["TriRegularization", "TriRegularizationOutput", "LossOutput", "mutual_kl", "ramp_weight"]


@dataclass
class TriRegularizationOutput(LossOutput):
    """:class:`~ferkit.losses.base.LossOutput` of :class:`TriRegularization`.

    ``terms`` holds ``clean``, ``ambiguous`` and ``noisy`` (each unweighted, detached; also readable as attributes).
    Extra fields: the ramp weight ``lambda_`` and ``counts``, the number of clean (including unknown), ambiguous
    and noisy samples in the (global) batch.
    """

    lambda_: float = 0.0
    counts: tuple[int, int, int] = (0, 0, 0)

    @property
    def clean(self) -> torch.Tensor:
        return self.terms["clean"]

    @property
    def ambiguous(self) -> torch.Tensor:
        return self.terms["ambiguous"]

    @property
    def noisy(self) -> torch.Tensor:
        return self.terms["noisy"]


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
    # F.kl_div(input=log q, target=log p, log_target=True) is p (log p - log q) element-wise: KL(p || q) summed
    kl_21 = F.kl_div(l1, l2, reduction="none", log_target=True).sum(dim=1)   # KL(s2 || s1)
    kl_12 = F.kl_div(l2, l1, reduction="none", log_target=True).sum(dim=1)   # KL(s1 || s2)
    return 0.5 * (kl_21 + kl_12)


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
            return all_reduce_sum(counts), float(get_world_size())
        return counts, 1.0

    def forward(self, z1_w: torch.Tensor, z2_w: torch.Tensor, z1_s: torch.Tensor | None, z2_s: torch.Tensor | None,
                y: torch.Tensor, split: SampleSplit, epoch: float, max_epochs: float) -> TriRegularizationOutput:
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
            raise ValueError(f"TriRegularization: z1_w and z2_w must both be [B, C] logits, got {tuple(z1_w.shape)} and "
                             f"{tuple(z2_w.shape)}")
        if not isinstance(split, SampleSplit):
            raise TypeError(f"TriRegularization: split must be a SampleSplit (miner.split_for(batch['index'])), "
                            f"got {type(split).__name__}")
        b, c = z1_w.shape
        if y.is_floating_point():
            raise TypeError(f"TriRegularization: y must be integer class ids [B], got {y.dtype}")
        if len(split) != b or y.reshape(-1).shape[0] != b:
            raise ValueError(f"TriRegularization: batch of {b} logits but {len(split)} split entries and "
                             f"{y.reshape(-1).shape[0]} labels")
        y = y.reshape(-1).long()
        if b and (int(y.min()) < 0 or int(y.max()) >= c):
            raise ValueError(f"TriRegularization: labels must lie in 0..{c - 1} (the logits have {c} classes), got "
                             f"{int(y.min())}..{int(y.max())}")
        sid = split.subset_id.to(z1_w.device)
        clean = (sid == Subset.CLEAN) | (sid == Subset.UNKNOWN)
        amb, noisy = sid == Subset.AMBIGUOUS, sid == Subset.NOISY
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
                raise ValueError(f"TriRegularization: the batch has {n_noisy} noisy samples: pass their strong-view logits z1_s, z2_s")
            if z1_s.shape != z2_s.shape or z1_s.ndim != 2 or z1_s.shape[1] != c:
                raise ValueError(f"TriRegularization: z1_s and z2_s must both be [n, {c}] logits, got {tuple(z1_s.shape)} "
                                 f"and {tuple(z2_s.shape)}")
            if z1_s.shape[0] == b and n_noisy != b:
                z1_s, z2_s = z1_s[noisy], z2_s[noisy]
            elif z1_s.shape[0] != n_noisy:
                raise ValueError(f"TriRegularization: strong-view logits must have {n_noisy} rows (noisy samples) or {b} (whole batch), got {z1_s.shape[0]}")
            sq = ((F.softmax(z1_w[noisy], 1) - F.softmax(z1_s, 1)) ** 2).sum() + ((F.softmax(z2_w[noisy], 1) - F.softmax(z2_s, 1)) ** 2).sum()
            n_sum = 0.5 * sq / c
        else:
            n_sum = zero
        l_noisy = mean_over(n_sum, denom[2])

        total = l_clean + self.omega * l_amb + self.gamma * l_noisy
        # under DDP every part is this rank's share times W: its mean over ranks is the global subset mean
        terms = {"clean": l_clean.detach(), "ambiguous": l_amb.detach(), "noisy": l_noisy.detach()}
        return TriRegularizationOutput(total=total, terms=terms, lambda_=lam,
                                       counts=tuple(int(v) for v in denom.tolist()))
