"""Knowledge distillation: cross-entropy plus a temperature-softened KL term towards a frozen teacher.

Hinton, Vinyals and Dean, *Distilling the Knowledge in a Neural Network* (arXiv 1503.02531); used by PASM
(Liu et al., IEEE TCYB 2022, arXiv 2008.11401) to pass a teacher generation's knowledge to its student:

    L = CE(z_s, y) + alpha * T^2 * KL( softmax(z_t / T) || softmax(z_s / T) )

The ``T^2`` keeps the gradient scale of the KL term independent of the temperature. The teacher's logits are
detached here, so no gradient ever reaches the teacher, whatever the caller passes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ferkit.losses.base import LossOutput, check_batch_size

__all__ = ["DistillationLoss", "distillation_kl"]


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float = 4.0) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, averaged over the batch (teacher detached)."""
    log_p_s = F.log_softmax(student_logits.float() / T, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / T, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (T * T)


class DistillationLoss(nn.Module):
    """Cross-entropy on the labels plus ``alpha * T^2 * KL`` towards the teacher's softened prediction.

    Args:
        T: the softmax temperature of the distillation term (> 0).
        alpha: weight of the distillation term (>= 0); ``alpha=0`` is exactly cross-entropy (the teacher's logits
            may then be None).
        label_smoothing: of the cross-entropy term.

    ``forward(student_logits [B, C], teacher_logits [B, C] | None, target)``: ``target`` is int labels ``[B]`` or
    class distributions ``[B, C]`` (e.g. FER+ votes). Returns :class:`LossOutput` with terms ``ce`` and ``kd``
    (``kd`` unweighted, including ``T^2``).
    """

    def __init__(self, T: float = 4.0, alpha: float = 0.5, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not T > 0:
            raise ValueError(f"DistillationLoss: T must be > 0, got {T}")
        if not alpha >= 0:
            raise ValueError(f"DistillationLoss: alpha must be >= 0, got {alpha}")
        self.T, self.alpha, self.label_smoothing = float(T), float(alpha), float(label_smoothing)

    def extra_repr(self) -> str:
        return f"T={self.T}, alpha={self.alpha}"

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                target: torch.Tensor) -> LossOutput:
        if student_logits.ndim != 2:
            raise ValueError(f"DistillationLoss: student_logits must be [B, C], got {tuple(student_logits.shape)}")
        c = student_logits.shape[1]
        if target.ndim == 1:
            if target.numel() and (int(target.min()) < 0 or int(target.max()) >= c):
                raise ValueError(f"DistillationLoss: labels must lie in 0..{c - 1}, got {target.min()}..{target.max()}")
        elif target.shape[1:] != (c,):
            raise ValueError(f"DistillationLoss: target must be labels [B] or distributions [B, {c}], got {tuple(target.shape)}")
        ce = F.cross_entropy(student_logits, target, label_smoothing=self.label_smoothing)
        if teacher_logits is None:
            if self.alpha != 0:
                raise ValueError(f"DistillationLoss(alpha={self.alpha}) needs the teacher's logits; pass them or set alpha=0")
            return LossOutput(ce, {"ce": ce.detach()})
        if teacher_logits.shape != student_logits.shape:
            raise ValueError(f"DistillationLoss: teacher_logits {tuple(teacher_logits.shape)} and student_logits "
                             f"{tuple(student_logits.shape)} differ: the teacher must share the student's classes")
        check_batch_size("DistillationLoss", student_logits=student_logits, target=target)
        kd = distillation_kl(student_logits, teacher_logits, self.T)
        total = ce if self.alpha == 0 else ce + self.alpha * kd  # alpha=0 is CE exactly, not CE + 0 * kd
        return LossOutput(total, {"ce": ce.detach(), "kd": kd.detach()})
