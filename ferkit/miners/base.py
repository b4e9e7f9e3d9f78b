"""The miner protocol: judge samples from their class probabilities and return a :class:`SampleSplit`.

A miner is an ``nn.Module`` (pure torch, no Lightning) whose per-sample state lives in registered buffers keyed by
dataset index, so it is checkpointed, moves with ``.to(device)`` and is identical on every rank. Every miner:

* ``accumulate(index, probs, labels)``: add observations (softmax probabilities of K networks) of some samples;
* ``mine(epoch) -> SampleSplit``: turn the observations into the dataset-wide split (and clear them);
* ``split_for(index) -> SampleSplit``: the split of a batch, read by dataset index;
* ``forward(probs, labels) -> SampleSplit``: judge the given samples now, without touching any state;
* ``reset_observations()``: forget what was accumulated since the last :meth:`BaseMiner.mine`.

A new miner subclasses :class:`BaseMiner` and implements :meth:`BaseMiner.assign`, the rule that maps
probabilities and labels to :class:`~ferkit.state.split.Subset` ids. The buffers:

* ``probs``       ``[N, K, C]`` the latest class probabilities of each of the K networks (NaN: never observed);
* ``labels``      ``[N]`` the given label of each sample (-1: never observed);
* ``confidence``  ``[N]`` ``s_i`` = mean over networks of the probability of the given label;
* ``subset``      ``[N]`` int8 :class:`~ferkit.state.split.Subset` id;
* an accumulator (``acc_sum`` ``[N, K, C]``, ``acc_count`` ``[N]``) of the probabilities observed since the last
  :meth:`BaseMiner.mine`, so statistics can come from a judging pass or from the training forward passes;
* ``thresholds``  a :class:`ferkit.state.ClassThresholds` (updated every :meth:`BaseMiner.mine`, also by rules that
  do not use it, so they can be logged and compared).

DDP: :meth:`BaseMiner.accumulate` all-gathers ``(index, probs, label)`` from every rank before writing (an uneven
gather, so ranks may hold different batch sizes); samples seen several times (``DistributedSampler`` padding) are
averaged, so the result does not depend on how samples were assigned to ranks. :meth:`BaseMiner.mine` is then a
pure function of identical buffers and gives the same thresholds and split everywhere.
"""
from __future__ import annotations

from abc import abstractmethod

import torch
from torch import nn

from ferkit.state.bank import PerSampleBank, require_finite
from ferkit.state.distributed import all_gather_uneven, broadcast, is_distributed
from ferkit.state.split import Subset, SampleSplit
from ferkit.state.thresholds import ClassThresholds, ThresholdFn

__all__ = ["BaseMiner", "check_probabilities"]


def check_probabilities(owner: str, probs: torch.Tensor, atol: float = 1e-2) -> None:
    """Raise a ``ValueError`` unless ``probs`` holds probabilities: finite, in [0, 1], summing to 1 over the last dim.

    The tolerance (1e-2) lets through a softmax computed in half precision and cast to float afterwards; logits
    almost never pass.
    """
    if not probs.is_floating_point():
        raise TypeError(f"{owner}: probabilities must be a floating tensor, got {probs.dtype}")
    if probs.numel() == 0:
        return
    p = probs.detach().float()
    # one device sync for all four numbers (this runs on every training step when statistics come from it)
    bad, lo, hi, worst = torch.stack([(~torch.isfinite(p)).sum().float(), p.min(), p.max(),
                                      (p.sum(dim=-1) - 1.0).abs().max()]).tolist()
    if bad:
        require_finite(owner, "probs", p)
    if lo < -atol or hi > 1.0 + atol or worst > atol:
        raise ValueError(
            f"{owner}: probs must be softmax probabilities (values in [0, 1], each row summing to 1), got values in "
            f"[{lo:.3g}, {hi:.3g}] with row sums off by up to {worst:.3g}. Pass torch.softmax(logits, dim=-1), "
            "not the logits.")


class BaseMiner(nn.Module):
    """Per-sample observation, thresholds and split over a training set of ``num_samples`` samples.

    Args:
        num_classes: C.
        num_samples: N (may be 0 at construction; call :meth:`resize` before use, or load a state dict).
        num_networks: K, the networks whose probabilities are averaged (2 for ASM and MAN).
        t_clean / t_noisy / momentum / norm / threshold_fn: see :class:`ferkit.state.ClassThresholds`
            (ignored when ``thresholds`` is given).
        thresholds: an existing :class:`ClassThresholds` to use.

    Subclasses implement :meth:`assign`.
    """

    def __init__(self, num_classes: int, num_samples: int = 0, num_networks: int = 2, t_clean: float = 0.8,
                 t_noisy: float = 0.2, momentum: float | None = 0.9, norm: str = "max",
                 threshold_fn: ThresholdFn | None = None, thresholds: ClassThresholds | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        if type(self).assign is BaseMiner.assign:
            raise TypeError(f"{name} must implement assign(probs, labels, confidence=None) -> int8 Subset ids")
        if num_classes < 2:
            raise ValueError(f"{name}: num_classes must be >= 2, got {num_classes}")
        if num_networks < 1:
            raise ValueError(f"{name}: num_networks must be >= 1, got {num_networks}")
        if thresholds is not None and thresholds.num_classes != num_classes:
            raise ValueError(f"{name}: thresholds are for {thresholds.num_classes} classes, miner for {num_classes}")
        self.num_classes, self.num_networks = int(num_classes), int(num_networks)
        self.thresholds = thresholds if thresholds is not None else ClassThresholds(
            num_classes, t_clean=t_clean, t_noisy=t_noisy, momentum=momentum, norm=norm, threshold_fn=threshold_fn)
        kc = (self.num_networks, self.num_classes)
        self.probs = PerSampleBank(num_samples, kc, torch.float32, float("nan"))
        self.labels = PerSampleBank(num_samples, (), torch.long, -1)
        self.confidence = PerSampleBank(num_samples, (), torch.float32, float("nan"))
        self.subset = PerSampleBank(num_samples, (), torch.int8, int(Subset.UNKNOWN))
        self.acc_sum = PerSampleBank(num_samples, kc, torch.float32, 0.0)
        self.acc_count = PerSampleBank(num_samples, (), torch.int32, 0)
        # 1-based epoch of the last mine() (0: never); lets a resumed run skip re-mining an epoch already mined
        self.register_buffer("mined_epoch", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return f"num_samples={self.num_samples}, num_classes={self.num_classes}, num_networks={self.num_networks}"

    # -- size --------------------------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        return len(self.subset)

    def _banks(self) -> tuple[PerSampleBank, ...]:
        return (self.probs, self.labels, self.confidence, self.subset, self.acc_sum, self.acc_count)

    def resize(self, num_samples: int) -> None:
        """Size every per-sample buffer for ``num_samples`` samples and forget all per-sample state."""
        for b in self._banks():
            b.resize(num_samples)
        self.mined_epoch.zero_()

    def reset(self) -> None:
        """Forget all per-sample state and thresholds (keeps the size)."""
        for b in self._banks():
            b.reset()
        self.thresholds.reset()
        self.mined_epoch.zero_()

    def reset_observations(self) -> None:
        """Forget the observations accumulated since the last :meth:`mine` (keeps probabilities, split, thresholds).

        Call it before a fresh judging pass, so the next :meth:`mine` sees only that pass.
        """
        self.acc_sum.reset()
        self.acc_count.reset()

    # -- statistics --------------------------------------------------------------------------------------
    def _check_observation(self, probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``probs`` as float ``[M, K, C]`` probabilities and ``labels`` as int64 ``[M]`` in range, or a clear error."""
        name = type(self).__name__
        if probs.ndim == 2 and self.num_networks == 1:
            probs = probs.unsqueeze(1)
        if probs.ndim != 3 or probs.shape[1:] != (self.num_networks, self.num_classes):
            raise ValueError(f"{name}: probs must be [B, {self.num_networks}, {self.num_classes}] (B samples, "
                             f"{self.num_networks} networks, {self.num_classes} classes), got {tuple(probs.shape)}")
        check_probabilities(name, probs)
        if labels.is_floating_point() or labels.is_complex():
            raise TypeError(f"{name}: labels must be integer class ids, got {labels.dtype}")
        labels = labels.detach().reshape(-1).long()
        if labels.numel() != probs.shape[0]:
            raise ValueError(f"{name}: {labels.numel()} labels for {probs.shape[0]} probability rows")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"{name}: labels must lie in 0..{self.num_classes - 1}, got "
                             f"{int(labels.min())}..{int(labels.max())} (are the data's and the miner's classes the same?)")
        return probs.detach().float(), labels

    @torch.no_grad()
    def accumulate(self, index: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor, sync: bool = True) -> None:
        """Add one batch of observations.

        Args:
            index: dataset indices ``[B]`` (integer; inside ``0..num_samples-1``).
            probs: class probabilities ``[B, K, C]`` (K networks; ``[B, C]`` when K = 1): softmax outputs, not
                logits (checked: values in [0, 1], rows summing to 1).
            labels: the given labels ``[B]``.
            sync: gather the observations of every rank first (keep True under DDP; every rank must call it).
        """
        name = type(self).__name__
        if self.num_samples == 0:
            raise RuntimeError(f"{name} has no per-sample buffers yet: call miner.resize(len(train_set)) first")
        probs, labels = self._check_observation(probs, labels)
        index = self.subset.check_index(index).to(probs.device)
        if index.numel() != labels.numel():
            raise ValueError(f"{name}.accumulate: {index.numel()} indices for {labels.numel()} labels")
        if sync and is_distributed():
            # one collective for everything: [index, label, probs...] as float64 rows (indices stay exact below 2**53)
            packed = torch.cat([index.double()[:, None], labels.double()[:, None], probs.reshape(len(index), -1).double()], 1)
            packed = all_gather_uneven(packed)
            index, labels = packed[:, 0].long(), packed[:, 1].long()
            probs = packed[:, 2:].float().reshape(-1, self.num_networks, self.num_classes)
        dev = self.acc_sum.values.device
        index = index.to(dev)
        self.acc_sum.values.index_add_(0, index, probs.to(dev))
        self.acc_count.values.index_add_(0, index, torch.ones_like(index, dtype=torch.int32, device=dev))
        self.labels.write(index, labels, sync=False, reduce="last")

    @staticmethod
    def confidence_on_label(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``s_i``: mean over networks of ``probs[i, k, labels[i]]`` (``probs`` ``[M, K, C]``)."""
        lab = labels.long().clamp_min(0)[:, None, None].expand(-1, probs.shape[1], 1)
        return probs.gather(2, lab).squeeze(2).mean(1)

    # -- mining ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def mine(self, epoch: int | None = None) -> SampleSplit:
        """Consume the accumulated observations: update probabilities, thresholds and the split.

        Samples not observed since the last call keep their previous probabilities; samples never observed stay
        :attr:`Subset.UNKNOWN`. Returns the dataset-wide :class:`SampleSplit`.
        """
        count = self.acc_count.values
        seen = count > 0
        if bool(seen.any()):
            self.probs.values[seen] = self.acc_sum.values[seen] / count[seen].to(torch.float32)[:, None, None]
        self.reset_observations()

        labels, probs = self.labels.values, self.probs.values
        known = (labels >= 0) & torch.isfinite(probs).all(dim=(1, 2))
        conf = torch.full_like(self.confidence.values, float("nan"))
        conf[known] = self.confidence_on_label(probs[known], labels[known])
        self.confidence.values.copy_(conf)
        if bool(known.any()):
            self.thresholds.update(conf[known], labels[known])

        ids = torch.full_like(self.subset.values, int(Subset.UNKNOWN))
        if bool(known.any()):
            ids[known] = self.assign(probs[known], labels[known], conf[known])
        self.subset.values.copy_(ids)
        if is_distributed():
            self._broadcast_result()
        if epoch is not None:
            self.mined_epoch.fill_(int(epoch))
        return self.split

    def _broadcast_result(self) -> None:
        # Every rank computed the same result from the same gathered buffers; taking rank 0's copy (one small
        # collective) also rules out last-bit differences from non-deterministic GPU accumulation.
        t = self.thresholds
        parts = [self.subset.values, self.confidence.values, t.clean, t.noisy, t.class_mean]
        packed = broadcast(torch.cat([p.reshape(-1).double() for p in parts]), src=0)
        for p, chunk in zip(parts, torch.split(packed, [p.numel() for p in parts])):
            p.copy_(chunk.reshape(p.shape).to(p.dtype))

    @abstractmethod
    def assign(self, probs: torch.Tensor, labels: torch.Tensor, confidence: torch.Tensor | None = None) -> torch.Tensor:
        """The rule: int8 :class:`~ferkit.state.split.Subset` ids ``[M]`` of samples with ``probs`` ``[M, K, C]`` and
        given ``labels`` ``[M]`` (``confidence`` ``[M]``, if given, is :meth:`confidence_on_label` of them)."""
        raise NotImplementedError

    def forward(self, probs: torch.Tensor, labels: torch.Tensor) -> SampleSplit:
        """Judge these samples under the current state (no buffer changes): ``probs`` ``[M, K, C]`` or ``[M, C]``."""
        probs, labels = self._check_observation(probs, labels)
        return SampleSplit(self.assign(probs, labels))

    # -- reading -----------------------------------------------------------------------------------------
    @property
    def split(self) -> SampleSplit:
        """The dataset-wide split (a view of the ``subset`` buffer)."""
        return SampleSplit(self.subset.values)

    def split_for(self, index: torch.Tensor) -> SampleSplit:
        """The split of the samples ``index`` (e.g. a batch's ``batch["index"]``)."""
        return SampleSplit(self.subset.read(index))

    @property
    def has_split(self) -> bool:
        """True once :meth:`mine` has judged at least one sample."""
        return bool((self.subset.values >= 0).any())

    def summary(self, class_names: list[str] | None = None) -> dict[str, object]:
        """Thresholds and subset sizes per class, as plain Python values (for logs and reports)."""
        names = class_names or [str(k) for k in range(self.num_classes)]
        per_class = self.split.counts_per_class(self.labels.values, self.num_classes)
        return {
            "t_clean": dict(zip(names, self.thresholds.clean.tolist())),
            "t_noisy": dict(zip(names, self.thresholds.noisy.tolist())),
            "class_mean_confidence": dict(zip(names, self.thresholds.class_mean.tolist())),
            "counts": dict(zip(("clean", "ambiguous", "noisy"), self.split.counts().tolist())),
            "counts_per_class": {sub: dict(zip(names, per_class[k].tolist())) for k, sub in enumerate(("clean", "ambiguous", "noisy"))},
            "unknown": int(self.split.unknown.sum()),
        }
