"""Dataset-wide state that is correct under DDP, and the collectives it is built on (METHODS.md section 7)."""
from ferkit.state.distributed import (
    all_gather_uneven,
    all_reduce_mean,
    broadcast,
    gather_with_grad,
    get_rank,
    get_world_size,
    is_distributed,
)

__all__ = [
    "all_gather_uneven",
    "all_reduce_mean",
    "broadcast",
    "gather_with_grad",
    "get_rank",
    "get_world_size",
    "is_distributed",
]
