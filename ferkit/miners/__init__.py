"""Sample miners: partition samples (clean / ambiguous / noisy) and return a typed :class:`SampleSplit`.

Pure torch (no Lightning). Every miner follows :class:`BaseMiner`'s protocol; its split converts to masks, indices
or per-sample weights, so it plugs into any loss (e.g. :class:`ferkit.losses.TriRegularization`).
"""
from ferkit.miners.asm import ASMMiner
from ferkit.miners.base import BaseMiner, check_probabilities
from ferkit.miners.man import MANMiner
from ferkit.miners.prototype import MinedSet, PrototypeMiner
from ferkit.miners.split import AMBIGUOUS, CLEAN, NOISY, SUBSET_NAMES, UNKNOWN, SampleSplit, Subset, SubsetIndices
from ferkit.miners.split import detection_scores, detection_scores_per_class

#: the miners by the short names used in reports and benchmarks
MINERS = {"asm": ASMMiner, "man": MANMiner}
#: deprecated: the rule names, now the keys of :data:`MINERS`
MINING_RULES = tuple(MINERS)

__all__ = [
    "ASMMiner",
    "BaseMiner",
    "MANMiner",
    "MinedSet",
    "PrototypeMiner",
    "MINERS",
    "MINING_RULES",
    "SampleSplit",
    "Subset",
    "SubsetIndices",
    "check_probabilities",
    "detection_scores",
    "detection_scores_per_class",
    "UNKNOWN",
    "CLEAN",
    "AMBIGUOUS",
    "NOISY",
    "SUBSET_NAMES",
]
