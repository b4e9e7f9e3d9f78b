"""Deprecated location: :class:`MemoryBank` lives in :mod:`ferkit.state.memory_bank` (all dataset-wide and
cross-batch state is in ``ferkit.state``). This module re-exports it so old imports keep working."""
from ferkit.state.memory_bank import EMPTY_LABEL, MemoryBank

__all__ = ["MemoryBank", "EMPTY_LABEL"]
