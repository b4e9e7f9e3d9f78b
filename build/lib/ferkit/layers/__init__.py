"""Plain ``nn.Module`` building blocks (no Lightning): pools, ARM, ..."""
from ferkit.layers.arm import ARM, ARMPool
from ferkit.layers.pools import (
    POOLS,
    GlobalAvgPool,
    GlobalMaxPool,
    available_pools,
    create_pool,
    register_pool,
)

__all__ = [
    "ARM",
    "ARMPool",
    "POOLS",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "available_pools",
    "create_pool",
    "register_pool",
]
