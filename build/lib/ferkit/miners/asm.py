"""ASM's Adaptive Sample Mining: split a training set into clean / ambiguous / noisy (METHODS.md section 2.2).

Zhang et al., *ASM: Adaptive Sample Mining for In-The-Wild Facial Expression Recognition*, PRCV 2023.

The miner keeps, in registered buffers keyed by dataset index (so they are checkpointed and identical on every
rank):

* ``probs``       ``[N, K, C]`` the latest class probabilities of each of the K networks (NaN: never observed);
* ``labels``      ``[N]`` the given label of each sample (-1: never observed);
* ``confidence``  ``[N]`` ``s_i`` = mean over networks of the probability of the given label;
* ``subset``      ``[N]`` int8 subset id (-1 unknown, 0 clean, 1 ambiguous, 2 noisy);
* an accumulator (``acc_sum`` ``[N, K, C]``, ``acc_count`` ``[N]``) of the probabilities observed since the last
  :meth:`ASMMiner.mine`, so statistics can come from a judging pass or from the training forward passes;
* ``thresholds``  a :class:`ferkit.state.ClassThresholds`.

Usage, once per epoch::

    for batch in judge_loader:                       # or: inside training_step, on the weak-view forward
        miner.accumulate(batch["index"], torch.stack([p1, p2], 1), batch["label"])
    split = miner.mine(epoch)                        # thresholds + split, identical on every rank
    ...
    batch_split = miner.split_for(batch["index"])    # SampleSplit of the batch, read by index

DDP: :meth:`accumulate` all-gathers ``(index, probs, label)`` from every rank before writing (an uneven gather, so
ranks may hold different batch sizes); samples seen several times (``DistributedSampler`` padding) are averaged,
so the result does not depend on how samples were assigned to ranks. :meth:`mine` is then a pure function of
identical buffers and gives the same thresholds and split everywhere.

Rules (``rule=``):

* ``"asm"``: clean if ``s_i >= T_c[y_i]``, noisy if ``s_i < T_n[y_i]``, otherwise ambiguous;
* ``"man"``: (MAN, ASM's predecessor) clean if every network's argmax equals ``y_i``, noisy if none does,
  otherwise ambiguous. Thresholds are still updated (and logged) under this rule.
"""
from __future__ import annotations

import torch
from torch import nn

from ferkit.miners.split import AMBIGUOUS, CLEAN, NOISY, UNKNOWN, SampleSplit
from ferkit.state.bank import PerSampleBank
from ferkit.state.distributed import all_gather_uneven, broadcast, is_distributed
from ferkit.state.thresholds import ClassThresholds, ThresholdFn

__all__ = ["ASMMiner", "MINING_RULES"]

MINING_RULES = ("asm", "man")


class ASMMiner(nn.Module):
    """Adaptive Sample Mining over a training set of ``num_samples`` samples and ``num_classes`` classes.

    Args:
        num_classes: C.
        num_samples: N (may be 0 at construction; call :meth:`resize` before use, or load a state dict).
        num_networks: K, the networks whose probabilities are averaged (2 for ASM).
        t_clean / t_noisy / momentum / norm / threshold_fn: see :class:`ferkit.state.ClassThresholds`
            (ignored when ``thresholds`` is given).
        rule: ``"asm"`` (adaptive thresholds, default) or ``"man"`` (agreement of the networks' argmaxes).
        thresholds: an existing :class:`ClassThresholds` to use.
    """

    def __init__(self, num_classes: int, num_samples: int = 0, num_networks: int = 2, t_clean: float = 0.8,
                 t_noisy: float = 0.2, momentum: float | None = 0.9, norm: str = "max",
                 threshold_fn: ThresholdFn | None = None, rule: str = "asm", thresholds: ClassThresholds | None = None) -> None:
        super().__init__()
        if rule not in MINING_RULES:
            raise ValueError(f"ASMMiner: rule must be one of {MINING_RULES}, got {rule!r}")
        if num_networks < 1:
            raise ValueError(f"ASMMiner: num_networks must be >= 1, got {num_networks}")
        if thresholds is not None and thresholds.num_classes != num_classes:
            raise ValueError(f"ASMMiner: thresholds are for {thresholds.num_classes} classes, miner for {num_classes}")
        self.num_classes, self.num_networks, self.rule = int(num_classes), int(num_networks), rule
        self.thresholds = thresholds if thresholds is not None else ClassThresholds(
            num_classes, t_clean=t_clean, t_noisy=t_noisy, momentum=momentum, norm=norm, threshold_fn=threshold_fn)
        kc = (self.num_networks, self.num_classes)
        self.probs = PerSampleBank(num_samples, kc, torch.float32, float("nan"))
        self.labels = PerSampleBank(num_samples, (), torch.long, -1)
        self.confidence = PerSampleBank(num_samples, (), torch.float32, float("nan"))
        self.subset = PerSampleBank(num_samples, (), torch.int8, UNKNOWN)
        self.acc_sum = PerSampleBank(num_samples, kc, torch.float32, 0.0)
        self.acc_count = PerSampleBank(num_samples, (), torch.int32, 0)
        # 1-based epoch of the last mine() (0: never); lets a resumed run skip re-mining an epoch already mined
        self.register_buffer("mined_epoch", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return f"num_samples={self.num_samples}, num_classes={self.num_classes}, num_networks={self.num_networks}, rule={self.rule!r}"

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

    # -- statistics --------------------------------------------------------------------------------------
    @torch.no_grad()
    def accumulate(self, index: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor, sync: bool = True) -> None:
        """Add one batch of observations.

        Args:
            index: dataset indices ``[B]``.
            probs: class probabilities ``[B, K, C]`` (K networks) or ``[B, C]`` (K = 1); softmax outputs.
            labels: the given labels ``[B]``.
            sync: gather the observations of every rank first (keep True under DDP; every rank must call it).
        """
        if probs.ndim == 2:
            probs = probs.unsqueeze(1)
        if probs.ndim != 3 or probs.shape[1:] != (self.num_networks, self.num_classes):
            raise ValueError(f"ASMMiner.accumulate: probs must be [B, {self.num_networks}, {self.num_classes}], got {tuple(probs.shape)}")
        index, labels = index.detach().reshape(-1).long(), labels.detach().reshape(-1).long()
        if not (index.numel() == labels.numel() == probs.shape[0]):
            raise ValueError(f"ASMMiner.accumulate: {index.numel()} indices, {labels.numel()} labels, {probs.shape[0]} probability rows")
        if self.num_samples == 0:
            raise RuntimeError("ASMMiner has no per-sample buffers yet: call miner.resize(len(train_set)) first")
        probs = probs.detach().float()
        if sync and is_distributed():
            # one collective for everything: [index, label, probs...] as float64 rows (indices stay exact below 2**53)
            packed = torch.cat([index.double()[:, None], labels.double()[:, None], probs.reshape(len(index), -1).double()], 1)
            packed = all_gather_uneven(packed)
            index, labels = packed[:, 0].long(), packed[:, 1].long()
            probs = packed[:, 2:].float().reshape(-1, self.num_networks, self.num_classes)
        index = self.subset._check_index(index)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"ASMMiner.accumulate: labels must lie in 0..{self.num_classes - 1}")
        dev = self.acc_sum.values.device
        self.acc_sum.values.index_add_(0, index.to(dev), probs.to(dev))
        self.acc_count.values.index_add_(0, index.to(dev), torch.ones_like(index, dtype=torch.int32, device=dev))
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
        unknown (-1). Returns the dataset-wide :class:`SampleSplit`.
        """
        count = self.acc_count.values
        seen = count > 0
        if bool(seen.any()):
            self.probs.values[seen] = self.acc_sum.values[seen] / count[seen].to(torch.float32)[:, None, None]
        self.acc_sum.reset()
        self.acc_count.reset()

        labels, probs = self.labels.values, self.probs.values
        known = (labels >= 0) & torch.isfinite(probs).all(dim=(1, 2))
        conf = torch.full_like(self.confidence.values, float("nan"))
        conf[known] = self.confidence_on_label(probs[known], labels[known])
        self.confidence.values.copy_(conf)
        if bool(known.any()):
            self.thresholds.update(conf[known], labels[known])

        ids = torch.full_like(self.subset.values, UNKNOWN)
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

    def assign(self, probs: torch.Tensor, labels: torch.Tensor, confidence: torch.Tensor | None = None) -> torch.Tensor:
        """Subset ids (int8) of samples with ``probs`` ``[M, K, C]`` and given ``labels`` under the current thresholds."""
        labels = labels.long()
        if self.rule == "man":
            hits = (probs.argmax(2) == labels[:, None]).sum(1)
            ids = torch.full_like(labels, AMBIGUOUS)
            ids[hits == probs.shape[1]] = CLEAN
            ids[hits == 0] = NOISY
            return ids.to(torch.int8)
        s = self.confidence_on_label(probs, labels) if confidence is None else confidence
        t_c = self.thresholds.clean.to(s.device)[labels]
        t_n = self.thresholds.noisy.to(s.device)[labels]
        ids = torch.full_like(labels, AMBIGUOUS)
        ids[s >= t_c] = CLEAN
        ids[s < t_n] = NOISY
        return ids.to(torch.int8)

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
