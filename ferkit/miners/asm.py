"""ASM's Adaptive Sample Mining: split a training set into clean / ambiguous / noisy by adaptive class thresholds.

Zhang et al., *ASM: Adaptive Sample Mining for In-The-Wild Facial Expression Recognition*, PRCV 2023.

With ``s_i`` the mean over the networks of the probability of the given label ``y_i`` and the per-class thresholds
``T_c``, ``T_n`` of :class:`ferkit.state.ClassThresholds` (recomputed from the class mean confidences each time
the miner mines): clean if ``s_i >= T_c[y_i]``, noisy if ``s_i < T_n[y_i]``, otherwise ambiguous.

Usage, once per epoch::

    miner.reset_observations()                       # when starting a fresh judging pass
    for batch in judge_loader:                       # or: inside training_step, on the weak-view forward
        miner.accumulate(batch["index"], torch.stack([p1, p2], 1), batch["label"])
    split = miner.mine(epoch)                        # thresholds + split, identical on every rank
    ...
    batch_split = miner.split_for(batch["index"])    # SampleSplit of the batch, read by index

The buffers, the DDP behaviour and the protocol shared with every miner are described in
:mod:`ferkit.miners.base`; :class:`ferkit.miners.MANMiner` is the same machinery with MAN's agreement rule.
"""
from __future__ import annotations

import warnings

import torch

from ferkit.miners.base import BaseMiner
from ferkit.state.split import Subset
from ferkit.state.thresholds import ClassThresholds, ThresholdFn

__all__ = ["ASMMiner"]


class ASMMiner(BaseMiner):
    """Adaptive Sample Mining over a training set of ``num_samples`` samples and ``num_classes`` classes.

    Args:
        num_classes: C.
        num_samples: N (may be 0 at construction; call :meth:`resize` before use, or load a state dict).
        num_networks: K, the networks whose probabilities are averaged (2 for ASM).
        t_clean / t_noisy / momentum / norm / threshold_fn: see :class:`ferkit.state.ClassThresholds`
            (ignored when ``thresholds`` is given).
        thresholds: an existing :class:`ClassThresholds` to use.
        rule: deprecated; only ``"asm"`` is accepted. MAN's rule is :class:`ferkit.miners.MANMiner`.
    """

    def __init__(self, num_classes: int, num_samples: int = 0, num_networks: int = 2, t_clean: float = 0.8,
                 t_noisy: float = 0.2, momentum: float | None = 0.9, norm: str = "max",
                 threshold_fn: ThresholdFn | None = None, rule: str | None = None,
                 thresholds: ClassThresholds | None = None) -> None:
        if rule is not None:
            if rule != "asm":
                raise ValueError(f"ASMMiner: rule={rule!r} is not supported; for MAN's agreement rule use "
                                 "ferkit.miners.MANMiner with the same arguments")
            warnings.warn("ASMMiner(rule=...) is deprecated: drop the argument (ASMMiner is the 'asm' rule; "
                          "MANMiner is the 'man' rule)", DeprecationWarning, stacklevel=2)
        super().__init__(num_classes, num_samples, num_networks, t_clean=t_clean, t_noisy=t_noisy, momentum=momentum,
                         norm=norm, threshold_fn=threshold_fn, thresholds=thresholds)

    def assign(self, probs: torch.Tensor, labels: torch.Tensor, confidence: torch.Tensor | None = None) -> torch.Tensor:
        """Subset ids (int8) under the current thresholds: clean at or above ``T_c[y]``, noisy below ``T_n[y]``."""
        labels = labels.long()
        s = self.confidence_on_label(probs, labels) if confidence is None else confidence
        t_c = self.thresholds.clean.to(s.device)[labels]
        t_n = self.thresholds.noisy.to(s.device)[labels]
        ids = torch.full_like(labels, int(Subset.AMBIGUOUS))
        ids[s >= t_c] = int(Subset.CLEAN)
        ids[s < t_n] = int(Subset.NOISY)
        return ids.to(torch.int8)
