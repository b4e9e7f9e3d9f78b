"""Dataset-wide and cross-batch state that is correct under DDP, and the collectives it is built on.

Everything a component keeps across batches or epochs lives here, in registered buffers (checkpointed, moved with
``.to(device)``, restored on resume): per-sample banks, class thresholds, the label-distribution memory, the
MoCo-style :class:`MemoryBank`, and the subset ids of a :class:`SampleSplit`. :mod:`ferkit.state.distributed` is
the only module in ferkit that calls collectives.
"""
from ferkit.state.bank import PerSampleBank, gather_index_value
from ferkit.state.distributed import (
    all_gather_uneven,
    all_reduce_mean,
    all_reduce_sum,
    broadcast,
    gather_batch,
    gather_with_grad,
    get_rank,
    get_world_size,
    is_distributed,
)
from ferkit.state.embedding_store import EmbeddingStore
from ferkit.state.label_distribution_bank import LabelDistributionBank
from ferkit.state.memory_bank import EMPTY_LABEL, MemoryBank
from ferkit.state.split import SampleSplit, Subset, SubsetIndices
from ferkit.state.thresholds import ClassThresholds, ThresholdFn

__all__ = [
    "EMPTY_LABEL",
    "ClassThresholds",
    "EmbeddingStore",
    "LabelDistributionBank",
    "MemoryBank",
    "PerSampleBank",
    "SampleSplit",
    "Subset",
    "SubsetIndices",
    "ThresholdFn",
    "all_gather_uneven",
    "all_reduce_mean",
    "all_reduce_sum",
    "broadcast",
    "gather_batch",
    "gather_index_value",
    "gather_with_grad",
    "get_rank",
    "get_world_size",
    "is_distributed",
]
