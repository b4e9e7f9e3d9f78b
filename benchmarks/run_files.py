"""The names of the files a suite run keeps in its folder, shared by the harness and the checkpoint callback.

A module of its own, without Lightning: the harness process (``python -m benchmarks``) only reads and writes these
files, so it starts without importing Lightning (about 10 s on a 2-core CPU); the ``ferkit fit`` process it launches
imports :mod:`benchmarks.checkpoint`, whose callback writes them.
"""
from __future__ import annotations

#: test hook: after this (0-based) epoch's checkpoints are written, the process exits at once, as if it were killed
EXIT_AFTER_EPOCH_ENV = "FERKIT_BENCH_EXIT_AFTER_EPOCH"
LAST = "last.ckpt"
HISTORY = "history.jsonl"
PREVIOUS = "last.prev.ckpt"
