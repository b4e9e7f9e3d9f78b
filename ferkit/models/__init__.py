"""The network factory: :class:`FERNetConfig` (the architecture) and :class:`FERNet` (backbone -> pool -> head)."""
from ferkit.models.fernet import MIN_ARM_FEATURES, FERNet, FERNetConfig

__all__ = ["FERNet", "FERNetConfig", "MIN_ARM_FEATURES"]
