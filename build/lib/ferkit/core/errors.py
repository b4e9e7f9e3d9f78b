"""Errors shared by every layer of ferkit."""
from __future__ import annotations


class DataError(ValueError):
    """Bad input data: the message names the file and row and says what was expected."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN/Inf."""
