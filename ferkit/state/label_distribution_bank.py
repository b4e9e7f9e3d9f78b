"""LA-Net's per-sample label-distribution memory (Wu & Cui, ICCV 2023).

``memory`` is an ``N x C`` registered buffer (checkpointed, restored on resume, moved with ``.to(device)``; a
plain tensor attribute would be lost on resume and left on the CPU). It starts as the one-hot (possibly noisy) training labels; each step
the estimator blends ``q_tilde = m * memory[idx] + (1 - m) * q`` and writes ``q_tilde`` back (detached), so the
given label decays as ``m^t``. The caller passes the **gathered** global batch, so every rank performs the same
writes and holds the same memory without any extra collective.
"""
from __future__ import annotations

from typing import Any

import torch

from ferkit.state.bank import PerSampleBank, require_finite

__all__ = ["LabelDistributionBank"]


class LabelDistributionBank(PerSampleBank):
    """An ``N x C`` memory of label distributions keyed by dataset index.

    Args:
        num_samples: N (0 allowed: size it later with :meth:`init_from_labels`, or by loading a state dict).
        num_classes: C.
        momentum: ``m`` in ``q_tilde = m * memory + (1 - m) * q`` (0.9 in LA-Net).

    Buffers: ``values`` (the memory, ``N x C`` float32; also available as :attr:`memory`) and ``initialized``
    (bool scalar, set by :meth:`init_from_labels`).
    """

    def __init__(self, num_samples: int = 0, num_classes: int = 7, momentum: float = 0.9) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"LabelDistributionBank: momentum must be in [0, 1), got {momentum}")
        if num_classes < 1:
            raise ValueError(f"LabelDistributionBank: num_classes must be >= 1, got {num_classes}")
        super().__init__(num_samples, shape=(int(num_classes),), dtype=torch.float32, fill=0.0)
        self.num_classes = int(num_classes)
        self.momentum = float(momentum)
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def extra_repr(self) -> str:
        return f"num_samples={len(self)}, num_classes={self.num_classes}, momentum={self.momentum}"

    @property
    def memory(self) -> torch.Tensor:
        return self.values

    @torch.no_grad()
    def init_from_labels(self, labels: torch.Tensor | Any, soft_labels: torch.Tensor | Any | None = None) -> None:
        """(Re)size to ``len(labels)`` and set each row to the one-hot label (or the given soft label row)."""
        if soft_labels is not None:
            soft = torch.as_tensor(soft_labels, dtype=torch.float32)
            if soft.dim() != 2 or soft.shape[1] != self.num_classes:
                raise ValueError(f"soft_labels must be N x {self.num_classes}, got {tuple(soft.shape)}")
            require_finite("LabelDistributionBank.init_from_labels", "soft_labels", soft)
            if soft.numel() and (bool((soft < 0).any()) or bool((soft.sum(1) <= 0).any())):
                bad = int(((soft < 0).any(1) | (soft.sum(1) <= 0)).nonzero()[0])
                raise ValueError(f"LabelDistributionBank.init_from_labels: soft_labels must be non-negative with a "
                                 f"positive sum per row (votes or probabilities); row {bad} is {soft[bad].tolist()}")
            init = soft / soft.sum(1, keepdim=True).clamp_min(1e-12)
        else:
            lab = torch.as_tensor(labels).long().reshape(-1)
            if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= self.num_classes):
                raise ValueError(f"labels must lie in 0..{self.num_classes - 1}, got {int(lab.min())}..{int(lab.max())}")
            init = torch.nn.functional.one_hot(lab, self.num_classes).float()
        if len(self) != init.shape[0]:
            self.resize(init.shape[0])
        self.values.copy_(init.to(self.values.device))
        self.initialized.fill_(True)

    def check_ready(self) -> None:
        if not bool(self.initialized):
            raise RuntimeError(
                "LabelDistributionBank is not initialised: call init_from_labels(train_labels) before training "
                "(ferkit.methods.lanet.LANet does it in setup() from the datamodule's train_set)"
            )

    def blend(self, index: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """``m * memory[index] + (1 - m) * q``; differentiable in ``q`` (the memory part is a constant)."""
        self.check_ready()
        if q.ndim != 2 or q.shape[1] != self.num_classes:
            raise ValueError(f"LabelDistributionBank.blend: q must be [B, {self.num_classes}], got {tuple(q.shape)}")
        return self.momentum * self.read(index).to(q.dtype) + (1.0 - self.momentum) * q

    @torch.no_grad()
    def update(self, index: torch.Tensor, q_tilde: torch.Tensor) -> None:
        """Store ``q_tilde`` (detached) for ``index``. Pass the gathered batch: no collective happens here.

        Duplicate indices (``DistributedSampler`` padding repeats samples) store the mean of their rows.
        """
        require_finite("LabelDistributionBank.update", "q_tilde", q_tilde)
        self.write(index, q_tilde.detach().float(), sync=False, reduce="mean")
