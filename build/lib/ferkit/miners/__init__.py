"""Sample miners: partition samples (clean / ambiguous / noisy) and return a typed :class:`SampleSplit`.

Pure torch (no Lightning). A miner's split converts to masks, indices or per-sample weights, so it plugs into
any loss (e.g. :class:`ferkit.losses.TriRegularization`).
"""
from ferkit.miners.asm import MINING_RULES, ASMMiner
from ferkit.miners.split import (
    AMBIGUOUS,
    CLEAN,
    NOISY,
    SUBSET_NAMES,
    UNKNOWN,
    SampleSplit,
    SubsetIndices,
    detection_scores,
)

__all__ = [
    "ASMMiner",
    "MINING_RULES",
    "SampleSplit",
    "SubsetIndices",
    "detection_scores",
    "UNKNOWN",
    "CLEAN",
    "AMBIGUOUS",
    "NOISY",
    "SUBSET_NAMES",
]
