"""The typed output of every miner, :class:`SampleSplit`, and the subset ids (:class:`Subset`).

They are defined in :mod:`ferkit.state.split` (below losses and miners, so a loss can consume a split without
importing a miner) and re-exported here, where a reader looks for a miner's output.
"""
from ferkit.state.split import (
    AMBIGUOUS,
    CLEAN,
    NOISY,
    SUBSET_NAMES,
    UNKNOWN,
    SampleSplit,
    Subset,
    SubsetIndices,
    detection_scores,
    detection_scores_per_class,
)

__all__ = ["SampleSplit", "Subset", "SubsetIndices", "detection_scores", "detection_scores_per_class", "UNKNOWN", "CLEAN", "AMBIGUOUS", "NOISY",
           "SUBSET_NAMES"]
