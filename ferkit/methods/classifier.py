"""FERClassifier: the plain baseline, a FERNet trained with cross-entropy (average pooling by default)."""
from __future__ import annotations

from ferkit.methods.base import FERModule

__all__ = ["FERClassifier"]


class FERClassifier(FERModule):
    """Backbone -> pool -> linear head with (soft-target) cross-entropy: :class:`FERModule` as it is.

    The baseline every method is compared with; ``net.pool`` chooses the pool (``"avg"`` by default).
    """
