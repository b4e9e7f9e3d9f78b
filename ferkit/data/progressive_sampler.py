"""LA-Net's progressively class-balanced sampler, correct under DDP (Wu & Cui, LA-Net, ICCV 2023, arXiv 2307.09023).

At 0-based epoch ``t`` of ``E``, class ``k`` gets the share ``p_k(t) = (1 - t/E) n_k / N + (t/E) / C``: the natural
distribution at the start, moving linearly towards uniform. Counts are ``m_k = ceil(p_k N)`` with the last class
taking the remainder, so the epoch length stays ``N``; a class is drawn without replacement if ``m_k <= n_k``,
otherwise as ``floor(m_k / n_k)`` full copies plus a draw without replacement for the rest. The list is shuffled,
depends only on ``(seed, epoch)`` (never the global RNG, so every rank builds the same list) and is split across ranks like the other ferkit
samplers (rank ``r`` takes positions ``r, r + W, ...``). Use it with ``Trainer(use_distributed_sampler=False)``
or rely on it being a ``DistributedSampler`` subclass, which Lightning does not wrap again.

Rounding: the ceilings make every class but the last round up, so the last class absorbs the rounding (up to
``C - 1`` samples fewer than ``p_k N``); negligible for real datasets, visible on toy ones.
``C`` counts only the classes present in ``labels`` (an absent class cannot be drawn). When the ceilings
overshoot so much that the last class's remainder would be negative (tiny N), counts fall back to
largest-remainder rounding, which also sums to N.
"""
from __future__ import annotations

import math

import numpy as np

from ferkit.data.samplers import as_labels, GlobalListSampler, largest_remainder

__all__ = ["ProgressivelyBalancedSampler"]


class ProgressivelyBalancedSampler(GlobalListSampler):
    """Class shares move linearly from the natural distribution (epoch 0) towards uniform (epoch ``max_epochs``).

    Args:
        labels: class id per dataset sample (array, tensor, list, or a dataset with a ``labels`` attribute).
        max_epochs: E, the number of training epochs.
        seed: base seed; the epoch's list depends only on ``(seed, epoch)``.
        num_replicas, rank: DDP world size and rank (read from ``torch.distributed`` when None).
    """

    def __init__(self, labels, max_epochs: int, seed: int = 0, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        self.labels = as_labels(labels)
        self.max_epochs = int(max_epochs)
        self.class_counts = np.bincount(self.labels)
        self._present = np.flatnonzero(self.class_counts > 0)
        self._members = [np.flatnonzero(self.labels == c) for c in range(self.class_counts.size)]
        super().__init__(self.labels.size, seed, num_replicas, rank)

    def class_probs(self, epoch: int | None = None) -> np.ndarray:
        """``p_k(t)`` for every class id (0 for absent classes)."""
        t = self.epoch if epoch is None else int(epoch)
        frac = min(max(t / self.max_epochs, 0.0), 1.0)
        n = self.labels.size
        p = np.zeros(self.class_counts.size, dtype=np.float64)
        p[self._present] = (1 - frac) * self.class_counts[self._present] / n + frac / self._present.size
        return p

    def class_targets(self, epoch: int | None = None) -> np.ndarray:
        """``m_k``: samples of each class in the epoch (sums to N)."""
        n = self.labels.size
        p = self.class_probs(epoch)
        m = np.zeros_like(self.class_counts)
        present = self._present
        m[present[:-1]] = [math.ceil(p[k] * n - 1e-9) for k in present[:-1]]
        m[present[-1]] = n - int(m[present[:-1]].sum())
        if m[present[-1]] < 0:
            m[:] = 0
            m[present] = largest_remainder(p[present] / p[present].sum(), n)
        return m

    def global_indices(self) -> np.ndarray:
        rng = self._rng()
        parts = []
        for members, target in zip(self._members, self.class_targets()):
            if target == 0:
                continue
            copies, rest = divmod(int(target), members.size)
            parts.extend([members] * copies)
            if rest:
                parts.append(rng.choice(members, size=rest, replace=False))
        return rng.permutation(np.concatenate(parts))
