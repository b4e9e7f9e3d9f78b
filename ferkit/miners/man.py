"""MAN's sample mining by agreement of the networks (the rule of ASM's predecessor).

Zhang et al., *Multi-Agent Network for noisy facial expression recognition* (MAN); also the "argmax agreement"
baseline in the ASM paper (PRCV 2023). A sample is clean when every network's most probable class is its given
label, noisy when none is, and ambiguous otherwise. The accumulation, DDP behaviour and buffers are those of every
miner (:mod:`ferkit.miners.base`); the class thresholds are still updated each epoch, so they can be logged and
compared with ASM's, but they do not decide the split.
"""
from __future__ import annotations

import torch

from ferkit.miners.base import BaseMiner
from ferkit.state.split import Subset

__all__ = ["MANMiner"]


class MANMiner(BaseMiner):
    """Clean / ambiguous / noisy by how many of the K networks predict the given label (all / some / none).

    Takes the same arguments as :class:`ferkit.miners.ASMMiner` (the threshold arguments only shape the logged
    thresholds). With one network there is no "ambiguous": a sample is clean or noisy.
    """

    def assign(self, probs: torch.Tensor, labels: torch.Tensor, confidence: torch.Tensor | None = None) -> torch.Tensor:
        labels = labels.long()
        hits = (probs.argmax(2) == labels[:, None]).sum(1)
        ids = torch.full_like(labels, int(Subset.AMBIGUOUS))
        ids[hits == probs.shape[1]] = int(Subset.CLEAN)
        ids[hits == 0] = int(Subset.NOISY)
        return ids.to(torch.int8)
