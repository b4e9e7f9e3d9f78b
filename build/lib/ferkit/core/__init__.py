"""The bottom layer of ferkit: base types every other package may use (errors, the label space, the 68-point layout).

Nothing in ``ferkit.core`` imports from any other ferkit package.
"""
from ferkit.core.errors import DataError, NonFiniteLossError
from ferkit.core.labels import BASIC7, BASIC8, CANONICAL_CLASSES, LabelSpace, canonical_name

__all__ = ["DataError", "NonFiniteLossError", "LabelSpace", "BASIC7", "BASIC8", "CANONICAL_CLASSES", "canonical_name"]
