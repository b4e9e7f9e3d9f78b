"""EmbeddingStore: per-sample features and class probabilities of a large pool, in memory-mapped float16 files.

A pool of millions of faces does not fit in memory as float32 features (10 M x 512 x 4 bytes = 20 GB), so the
embeddings live on disk and are written and read by row:

::

    <folder>/meta.json      {"num_samples", "dim", "num_classes", "dtype": "float16"}
    <folder>/features.f16   [N, dim]          float16, C order
    <folder>/probs.f16      [N, num_classes]  float16
    <folder>/done.u8        [N]               1 once the row was written (what makes embedding resumable)
    <folder>/ids.txt        one sample id per line (optional; written by whoever builds the pool)

Rows are written by dataset index, so processes of a DDP run each write their own shard into the same files
(``DistributedSampler``'s padding writes identical rows twice, which is harmless) and the result equals a
single-process run: "gathered by index" through the file. Reading is by contiguous chunk (:meth:`read`), which is
what the miner needs for bounded memory.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

__all__ = ["EmbeddingStore"]


class _Rows:
    """A read-only view of one array of the store: ``len()`` and ``read(start, stop) -> float32 tensor``."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __len__(self) -> int:
        return self.array.shape[0]

    def read(self, start: int, stop: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.array[start:stop], dtype=np.float32))


class EmbeddingStore:
    """Open (``mode="r"`` / ``"r+"``) or create (:meth:`create`) the memory-mapped embeddings of a pool.

    Attributes:
        features / probs: readers with ``read(start, stop)`` (float32 tensors), accepted by
            :meth:`ferkit.miners.PrototypeMiner.mine`.
    """

    def __init__(self, folder: str | Path, mode: str = "r") -> None:
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: no embedding store here; create one with EmbeddingStore.create() "
                                    "(or run `ferkit omni embed`)")
        meta = json.loads(meta_path.read_text())
        self.num_samples, self.dim, self.num_classes = int(meta["num_samples"]), int(meta["dim"]), int(meta["num_classes"])
        self.meta = meta
        n = self.num_samples
        self._features = np.memmap(self.folder / "features.f16", np.float16, mode, shape=(n, self.dim))
        self._probs = np.memmap(self.folder / "probs.f16", np.float16, mode, shape=(n, self.num_classes))
        self._done = np.memmap(self.folder / "done.u8", np.uint8, mode, shape=(n,))
        self.features, self.probs = _Rows(self._features), _Rows(self._probs)

    @classmethod
    def create(cls, folder: str | Path, num_samples: int, dim: int, num_classes: int,
               ids: Sequence[str] | None = None, extra: dict | None = None) -> "EmbeddingStore":
        """A new store of zeros, or the existing one when its shape matches (so an interrupted run resumes)."""
        folder = Path(folder)
        meta = {"num_samples": int(num_samples), "dim": int(dim), "num_classes": int(num_classes), "dtype": "float16",
                **(extra or {})}
        if (folder / "meta.json").is_file():
            old = json.loads((folder / "meta.json").read_text())
            shape = {k: old.get(k) for k in ("num_samples", "dim", "num_classes")}
            if shape != {k: meta[k] for k in shape}:
                raise ValueError(f"{folder}: an embedding store of shape {shape} exists, not {num_samples} x {dim} "
                                 f"(+{num_classes} probs); delete the folder or choose another")
            return cls(folder, mode="r+")
        folder.mkdir(parents=True, exist_ok=True)
        for name, dtype, shape in (("features.f16", np.float16, (num_samples, dim)),
                                   ("probs.f16", np.float16, (num_samples, num_classes)),
                                   ("done.u8", np.uint8, (num_samples,))):
            m = np.memmap(folder / name, dtype, "w+", shape=shape)
            m.flush()
            del m
        if ids is not None:
            if len(ids) != num_samples:
                raise ValueError(f"EmbeddingStore.create: {len(ids)} ids for {num_samples} samples")
            (folder / "ids.txt").write_text("".join(f"{i}\n" for i in ids))
        (folder / "meta.json").write_text(json.dumps(meta, indent=2))  # last: its presence marks a complete create
        return cls(folder, mode="r+")

    def __len__(self) -> int:
        return self.num_samples

    def write(self, index: torch.Tensor, features: torch.Tensor, probs: torch.Tensor) -> None:
        """Write rows by dataset index (float16); non-finite values are refused."""
        idx = index.detach().cpu().long().numpy()
        f, p = features.detach().float().cpu(), probs.detach().float().cpu()
        if f.shape != (len(idx), self.dim) or p.shape != (len(idx), self.num_classes):
            raise ValueError(f"EmbeddingStore.write: expected features [{len(idx)}, {self.dim}] and probs "
                             f"[{len(idx)}, {self.num_classes}], got {tuple(f.shape)} and {tuple(p.shape)}")
        if len(idx) and (idx.min() < 0 or idx.max() >= self.num_samples):
            raise IndexError(f"EmbeddingStore.write: indices {idx.min()}..{idx.max()} outside 0..{self.num_samples - 1}")
        if not (torch.isfinite(f).all() and torch.isfinite(p).all()):
            raise ValueError("EmbeddingStore.write: non-finite features or probabilities; check the embedding model")
        if f.abs().max() > 65504:
            raise ValueError("EmbeddingStore.write: features exceed the float16 range (65504); normalise them first")
        self._features[idx] = f.numpy().astype(np.float16)
        self._probs[idx] = p.numpy().astype(np.float16)
        self._done[idx] = 1

    def flush(self) -> None:
        for m in (self._features, self._probs, self._done):
            m.flush()

    def missing(self) -> np.ndarray:
        """Indices not yet written (all of them for a new store)."""
        return np.flatnonzero(np.asarray(self._done) == 0)

    @property
    def complete(self) -> bool:
        return bool(np.asarray(self._done).all())

    def ids(self) -> list[str] | None:
        path = self.folder / "ids.txt"
        return path.read_text().splitlines() if path.is_file() else None
