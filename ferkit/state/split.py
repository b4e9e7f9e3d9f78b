"""The typed output of a sample miner: a clean / ambiguous / noisy partition.

A :class:`SampleSplit` wraps one int8 subset id per sample (a :class:`Subset`: ``UNKNOWN`` -1, ``CLEAN`` 0,
``AMBIGUOUS`` 1, ``NOISY`` 2) and converts it to what the consumer needs: boolean masks, index tensors, or per-sample loss
weights. The same object describes a whole training set (ids keyed by dataset index) or one batch
(``split[batch_index]`` selects rows).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Mapping, NamedTuple

import torch

__all__ = ["SampleSplit", "Subset", "SubsetIndices", "detection_scores", "detection_scores_per_class", "UNKNOWN", "CLEAN", "AMBIGUOUS", "NOISY",
           "SUBSET_NAMES"]


class Subset(IntEnum):
    """Subset id of a sample, as stored (int8) in a :class:`SampleSplit` and in a miner's ``subset`` buffer."""

    UNKNOWN = -1    #: not judged yet (trained as clean by the losses)
    CLEAN = 0
    AMBIGUOUS = 1
    NOISY = 2


# module-level aliases of the enum members (plain ints compare equal to them)
UNKNOWN, CLEAN, AMBIGUOUS, NOISY = Subset.UNKNOWN, Subset.CLEAN, Subset.AMBIGUOUS, Subset.NOISY
#: subset id -> name (``SUBSET_NAMES[id]`` for ids 0..2)
SUBSET_NAMES = ("clean", "ambiguous", "noisy")


class SubsetIndices(NamedTuple):
    """Positions (int64) of the samples of each subset."""

    clean: torch.Tensor
    ambiguous: torch.Tensor
    noisy: torch.Tensor


@dataclass(frozen=True)
class SampleSplit:
    """A partition of samples into :class:`Subset` ``CLEAN``, ``AMBIGUOUS`` and ``NOISY``; ``UNKNOWN`` marks samples
    not judged yet.

    Attributes:
        subset_id: int8 tensor ``[M]``.
    """

    subset_id: torch.Tensor

    def __post_init__(self) -> None:
        ids = self.subset_id
        if ids.ndim != 1:
            raise ValueError(f"SampleSplit: subset_id must be 1-D, got shape {tuple(ids.shape)}")
        if ids.is_floating_point() or ids.is_complex():
            raise TypeError(f"SampleSplit: subset_id must be an integer tensor, got {ids.dtype}")
        if ids.numel() and (int(ids.min()) < UNKNOWN or int(ids.max()) > NOISY):
            # a miner writes only Subset ids: anything else is a caller's bug (e.g. class ids passed as subset ids)
            raise ValueError(f"SampleSplit: subset ids must lie in -1..2, got {int(ids.min())}..{int(ids.max())}")
        if ids.dtype != torch.int8:
            object.__setattr__(self, "subset_id", ids.to(torch.int8))

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_masks(cls, clean: torch.Tensor, ambiguous: torch.Tensor, noisy: torch.Tensor) -> "SampleSplit":
        """Build from three disjoint boolean masks; samples in none of them are unknown (-1)."""
        clean, ambiguous, noisy = (m.reshape(-1).bool() for m in (clean, ambiguous, noisy))
        if not (clean.shape == ambiguous.shape == noisy.shape):
            raise ValueError("SampleSplit.from_masks: the three masks must have the same length")
        if bool((clean.int() + ambiguous.int() + noisy.int() > 1).any()):
            raise ValueError("SampleSplit.from_masks: the masks overlap; a sample belongs to one subset")
        ids = torch.full(clean.shape, int(UNKNOWN), dtype=torch.int8, device=clean.device)
        ids[clean], ids[ambiguous], ids[noisy] = int(CLEAN), int(AMBIGUOUS), int(NOISY)
        return cls(ids)

    @classmethod
    def all_clean(cls, num_samples: int, device: torch.device | str | None = None) -> "SampleSplit":
        """Every sample clean (e.g. warm-up: plain supervised training)."""
        return cls(torch.zeros(num_samples, dtype=torch.int8, device=device))

    # -- views ---------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.subset_id.numel())

    def __getitem__(self, index: torch.Tensor | slice) -> "SampleSplit":
        """Rows of ``index`` (e.g. a batch's dataset indices) as a new split."""
        if isinstance(index, torch.Tensor):
            index = index.to(self.subset_id.device).long()
        return SampleSplit(self.subset_id[index])

    def to(self, device: torch.device | str) -> "SampleSplit":
        return SampleSplit(self.subset_id.to(device))

    @property
    def clean(self) -> torch.Tensor:
        return self.subset_id == CLEAN

    @property
    def ambiguous(self) -> torch.Tensor:
        return self.subset_id == AMBIGUOUS

    @property
    def noisy(self) -> torch.Tensor:
        return self.subset_id == NOISY

    @property
    def unknown(self) -> torch.Tensor:
        return self.subset_id == UNKNOWN

    def masks(self) -> dict[str, torch.Tensor]:
        """``{"clean", "ambiguous", "noisy", "unknown"}`` boolean masks."""
        return {"clean": self.clean, "ambiguous": self.ambiguous, "noisy": self.noisy, "unknown": self.unknown}

    def to_indices(self) -> SubsetIndices:
        """Positions of each subset (for a dataset-wide split these are dataset indices)."""
        return SubsetIndices(*(torch.nonzero(self.subset_id == k, as_tuple=False).reshape(-1) for k in (CLEAN, AMBIGUOUS, NOISY)))

    def to_weights(self, weights: Mapping[str, float] | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Per-sample weights: ``{"clean": 1, "ambiguous": 0.5, "noisy": 0, "unknown": 1}`` by default.

        Use them to plug the split into any per-sample loss (``(weights * per_sample_loss).sum() / weights.sum()``).
        """
        w = {"clean": 1.0, "ambiguous": 0.5, "noisy": 0.0, "unknown": 1.0}
        if weights:
            bad = set(weights) - set(w)
            if bad:
                raise KeyError(f"SampleSplit.to_weights: unknown subset names {sorted(bad)}; use clean, ambiguous, noisy, unknown")
            w.update(weights)
        table = torch.tensor([w["unknown"], w["clean"], w["ambiguous"], w["noisy"]], dtype=dtype, device=self.subset_id.device)
        return table[self.subset_id.long() + 1]

    def counts(self) -> torch.Tensor:
        """int64 ``[3]``: number of clean, ambiguous and noisy samples."""
        ids = self.subset_id.long()
        return torch.stack([(ids == k).sum() for k in (CLEAN, AMBIGUOUS, NOISY)])

    def counts_per_class(self, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """int64 ``[3, C]``: subset sizes per (given) class."""
        labels = labels.reshape(-1).long().to(self.subset_id.device)
        if labels.numel() != len(self):
            raise ValueError(f"counts_per_class: {labels.numel()} labels for {len(self)} samples")
        out = torch.zeros(3, num_classes, dtype=torch.long, device=self.subset_id.device)
        known = self.subset_id >= 0
        flat = self.subset_id[known].long() * num_classes + labels[known]
        out.view(-1).index_add_(0, flat, torch.ones_like(flat))
        return out

    def __repr__(self) -> str:
        c = self.counts().tolist()
        return f"SampleSplit(n={len(self)}, clean={c[0]}, ambiguous={c[1]}, noisy={c[2]}, unknown={int(self.unknown.sum())})"


def detection_scores(split: SampleSplit, flipped: torch.Tensor, within: torch.Tensor | None = None) -> dict[str, float]:
    """How well a split finds wrong labels, given ``flipped`` [M] (True where the given label is wrong).

    Returns ``noisy_precision`` / ``noisy_recall`` / ``noisy_f1`` of the noisy subset against the flipped samples,
    the same for "noisy or ambiguous" (``suspect_*``), ``clean_purity`` (fraction of the clean subset whose label
    is right) and ``flip_rate``. Samples of unknown subset are ignored, and so are those outside ``within`` (a bool
    mask [M], e.g. the samples of one given class). Precision is NaN for an empty subset, recall NaN when nothing
    was flipped.
    """
    flipped = flipped.reshape(-1).bool().to(split.subset_id.device)
    if flipped.numel() != len(split):
        raise ValueError(f"detection_scores: {flipped.numel()} flags for {len(split)} samples")
    known = ~split.unknown
    if within is not None:
        within = within.reshape(-1).bool().to(known.device)
        if within.numel() != len(split):
            raise ValueError(f"detection_scores: a mask of {within.numel()} for {len(split)} samples")
        known = known & within
    f = flipped & known

    def pr(pred: torch.Tensor) -> tuple[float, float, float]:
        pred = pred & known
        tp = float((pred & f).sum())
        npred, npos = float(pred.sum()), float(f.sum())
        p = tp / npred if npred else float("nan")
        r = tp / npos if npos else float("nan")
        f1 = 2 * p * r / (p + r) if npred and npos and (p + r) > 0 else float("nan")
        return p, r, f1

    out: dict[str, float] = {}
    out["noisy_precision"], out["noisy_recall"], out["noisy_f1"] = pr(split.noisy)
    out["suspect_precision"], out["suspect_recall"], out["suspect_f1"] = pr(split.noisy | split.ambiguous)
    clean = split.clean & known
    nclean = float(clean.sum())
    out["clean_purity"] = float((clean & ~flipped).sum()) / nclean if nclean else float("nan")
    nknown = float(known.sum())
    out["flip_rate"] = float(f.sum()) / nknown if nknown else float("nan")
    return out


def detection_scores_per_class(split: SampleSplit, flipped: torch.Tensor, labels: torch.Tensor,
                               class_names: list[str]) -> dict[str, dict[str, float]]:
    """:func:`detection_scores` for the samples of each given label (``labels`` [M], ``class_names`` in label
    order): where a class-wise threshold finds the wrong labels and where it does not."""
    labels = labels.reshape(-1).to(split.subset_id.device)
    if labels.numel() != len(split):
        raise ValueError(f"detection_scores_per_class: {labels.numel()} labels for {len(split)} samples")
    return {name: detection_scores(split, flipped, within=labels == k) for k, name in enumerate(class_names)}
