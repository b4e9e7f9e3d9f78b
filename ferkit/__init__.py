"""ferkit: reusable facial-expression-recognition components for PyTorch Lightning."""
from __future__ import annotations

__version__ = "0.1.0"
