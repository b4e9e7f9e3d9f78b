"""Plain ``nn.Module`` building blocks (no Lightning): pools, ARM, LA-Net's landmark contrastive head."""
from ferkit.layers.arm import ARM, ARMPool
from ferkit.layers.landmark_contrastive_head import LandmarkContrastiveHead
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
    "LandmarkContrastiveHead",
    "available_pools",
    "create_pool",
    "register_pool",
]
