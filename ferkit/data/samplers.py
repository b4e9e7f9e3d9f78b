"""Class-imbalance samplers that are correct under DDP.

Both samplers build one **global** index list per epoch that depends only on ``(seed, epoch)``, pad it by
wrapping to a multiple of the world size, and give rank ``r`` the positions ``r, r + W, r + 2W, ...``: ranks get
disjoint, equal-length slices whose union is the global list. They subclass
:class:`torch.utils.data.DistributedSampler` (without needing an initialised process group) so that Lightning
does not wrap them again with its ``DistributedSamplerWrapper``; rank and world size are read lazily from
``torch.distributed`` when not given. Call ``set_epoch(epoch)`` every epoch (Lightning does).
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

__all__ = ["ClassBalancedSampler", "GlobalListSampler", "MinimalRandomResamplingSampler", "as_labels", "largest_remainder"]


def as_labels(labels) -> np.ndarray:
    """Class ids as an int64 1-D array from an array, tensor, list or a dataset with ``labels``; clear errors."""
    if hasattr(labels, "labels") and not isinstance(labels, (np.ndarray, torch.Tensor, list, tuple)):
        labels = labels.labels  # a FERDataset
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"sampler: labels must be a non-empty 1-D sequence of class ids, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"sampler: labels must be integer class ids, got dtype {arr.dtype}")
    if arr.min() < 0:
        i = int(np.flatnonzero(arr < 0)[0])
        raise ValueError(
            f"sampler: label {int(arr[i])} at index {i} is negative; class-balanced sampling needs a class for "
            "every sample (remove unlabelled samples first)"
        )
    return arr.astype(np.int64)


class GlobalListSampler(DistributedSampler):
    """Base of ferkit's samplers: one global index list per epoch, split over ranks. Subclasses implement
    :meth:`global_indices` (a function of ``(seed, epoch)`` only) and call ``super().__init__``."""

    def __init__(self, epoch_size: int, seed: int, num_replicas: int | None, rank: int | None) -> None:
        # DistributedSampler.__init__ is deliberately not called: it requires an initialised process group when
        # num_replicas / rank are None. The attributes Lightning and users read are set (or are properties) here.
        self.dataset = None
        self.epoch_size = int(epoch_size)
        self.seed = int(seed)
        self.epoch = 0
        self.shuffle = True
        self.drop_last = False
        self._num_replicas = num_replicas
        self._rank = rank
        if num_replicas is not None and num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if rank is not None and num_replicas is not None and not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas - 1}]")

    # lazily resolved, so a sampler built before the process group is initialised is still right
    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        if self._num_replicas is not None:
            return self._num_replicas
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @num_replicas.setter
    def num_replicas(self, value: int) -> None:
        self._num_replicas = value

    @property
    def rank(self) -> int:  # type: ignore[override]
        if self._rank is not None:
            return self._rank
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    @rank.setter
    def rank(self, value: int) -> None:
        self._rank = value

    @property
    def num_samples(self) -> int:  # type: ignore[override]
        """Indices yielded by this rank per epoch."""
        return math.ceil(self.epoch_size / self.num_replicas)

    @property
    def total_size(self) -> int:  # type: ignore[override]
        return self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    def global_indices(self) -> np.ndarray:
        """The epoch's index list for all ranks together (length ``epoch_size``), a function of (seed, epoch)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        indices = self.global_indices()
        if self.rank >= self.num_replicas:
            raise ValueError(f"rank {self.rank} is outside [0, {self.num_replicas - 1}]")
        pad = self.total_size - len(indices)
        if pad > 0:  # wrap around, as DistributedSampler does
            indices = np.concatenate([indices, np.resize(indices, pad)])
        return iter(indices[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples


class MinimalRandomResamplingSampler(GlobalListSampler):
    """ARM's Minimal Random Resampling (MRR; Shi, Zhu & Liang, arXiv 2103.10189): every epoch is class-balanced with minimal resampling.

    Each epoch draws ``t_c`` indices of class ``c`` (``t_c`` proportional to ``class_probs``): a class with at least
    ``t_c`` samples is **subsampled without replacement** (no duplicates); a smaller class contributes **all** its
    samples once plus ``t_c - N_c`` extra draws with replacement (minimal oversampling). The epoch list is shuffled.

    Args:
        labels: class id per dataset sample (array, tensor, list, or a dataset with a ``labels`` attribute).
        class_probs: share of each class in an epoch: ``"inverse_freq"`` (equal shares, what inverse-frequency
            weights give in expectation: a balanced epoch) or a sequence of ``num_classes`` non-negative numbers
            (normalised over the classes present; classes absent from ``labels`` must get 0).
        per_class_cap: samples per class in an epoch with equal shares; sets the default epoch length
            ``num_samples = per_class_cap * (number of present classes)``. Default: the **median** class count.
            The paper's cap (AffectNet, unreleased code) is **not confirmed -- treat it as a tunable default**.
        num_samples: epoch length over all ranks (overrides the cap-based default).
        seed: base seed; the epoch's list depends only on ``(seed, epoch)``.
        num_replicas, rank: DDP world size and rank (read from ``torch.distributed`` when None).
    """

    def __init__(
        self,
        labels,
        class_probs: str | Sequence[float] = "inverse_freq",
        per_class_cap: int | None = None,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        self.labels = as_labels(labels)
        counts = np.bincount(self.labels)
        present = counts > 0
        if isinstance(class_probs, str):
            if class_probs != "inverse_freq":
                raise ValueError(f"class_probs must be 'inverse_freq' or a sequence of numbers, got {class_probs!r}")
            probs = present.astype(np.float64)
        else:
            probs = np.asarray(class_probs, dtype=np.float64)
            if probs.ndim != 1 or probs.size < counts.size:
                raise ValueError(
                    f"class_probs has {probs.size} entries but labels contain class ids up to {counts.size - 1}"
                )
            if np.any(probs < 0) or not np.isfinite(probs).all() or probs.sum() <= 0:
                raise ValueError(f"class_probs must be finite, non-negative and not all zero, got {probs.tolist()}")
            counts = np.pad(counts, (0, probs.size - counts.size))
            present = counts > 0
            absent = np.flatnonzero((probs > 0) & ~present)
            if absent.size:
                raise ValueError(f"class_probs gives classes {absent.tolist()} a positive share but they have no samples")
        self.class_counts = counts
        self.class_probs = probs / probs.sum()
        if per_class_cap is None:
            per_class_cap = int(np.median(counts[present]))
        if per_class_cap < 1:
            raise ValueError(f"per_class_cap must be >= 1, got {per_class_cap}")
        self.per_class_cap = int(per_class_cap)
        if num_samples is None:
            num_samples = self.per_class_cap * int(present.sum())
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.class_targets = largest_remainder(self.class_probs, int(num_samples))
        self._members = [np.flatnonzero(self.labels == c) for c in range(counts.size)]
        super().__init__(int(num_samples), seed, num_replicas, rank)

    def global_indices(self) -> np.ndarray:
        rng = self._rng()
        parts = []
        for members, target in zip(self._members, self.class_targets):
            if target == 0:
                continue
            if target <= members.size:
                parts.append(rng.choice(members, size=target, replace=False))
            else:
                extra = rng.choice(members, size=target - members.size, replace=True)
                parts.append(np.concatenate([members, extra]))
        indices = np.concatenate(parts)
        return rng.permutation(indices)


class ClassBalancedSampler(GlobalListSampler):
    """Draws samples with probability proportional to ``1 / N_{y_i}`` (inverse class frequency).

    Args:
        labels: class id per dataset sample (array, tensor, list, or a dataset with a ``labels`` attribute).
        num_samples: draws per epoch over all ranks (default: the dataset size).
        replacement: draw with replacement (default). Without replacement ``num_samples`` may not exceed the
            dataset size, and the balance holds only approximately.
        seed: base seed; the epoch's list depends only on ``(seed, epoch)``.
        num_replicas, rank: DDP world size and rank (read from ``torch.distributed`` when None).
    """

    def __init__(
        self,
        labels,
        num_samples: int | None = None,
        replacement: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        self.labels = as_labels(labels)
        self.class_counts = np.bincount(self.labels)
        weights = 1.0 / self.class_counts[self.labels]
        self.weights = weights / weights.sum()
        self.replacement = bool(replacement)
        if num_samples is None:
            num_samples = self.labels.size
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if not replacement and num_samples > self.labels.size:
            raise ValueError(
                f"num_samples={num_samples} exceeds the dataset size {self.labels.size} without replacement; "
                "pass replacement=True or a smaller num_samples"
            )
        super().__init__(int(num_samples), seed, num_replicas, rank)

    def global_indices(self) -> np.ndarray:
        return self._rng().choice(self.labels.size, size=self.epoch_size, replace=self.replacement, p=self.weights)


def largest_remainder(probs: np.ndarray, total: int) -> np.ndarray:
    """Integer counts proportional to ``probs`` summing exactly to ``total``."""
    raw = probs * total
    out = np.floor(raw).astype(np.int64)
    rest = total - int(out.sum())
    if rest > 0:
        order = np.argsort(-(raw - out), kind="stable")
        out[order[:rest]] += 1
    return out
