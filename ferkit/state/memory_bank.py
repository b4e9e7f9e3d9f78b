"""A FIFO queue of embeddings with labels, kept in registered buffers (MoCo-style negatives).

All state (``keys``, ``labels``, ``ptr``) is registered buffers: checkpointed, restored on resume, moved with the
module. :meth:`MemoryBank.enqueue` performs no collective: callers pass keys already gathered from every rank (in
rank order), so each rank applies the same writes and the queues stay identical across ranks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ferkit.state.bank import require_finite

__all__ = ["MemoryBank", "EMPTY_LABEL"]

#: label of slots that have never been written: equal to no class id (>= 0) and no per-sample id (-(index+1))
EMPTY_LABEL: int = int(torch.iinfo(torch.long).min)


class MemoryBank(nn.Module):
    """``num_queues`` queues of ``size`` L2-normalised ``dim``-vectors sharing one label queue and write pointer.

    Args:
        size: queue length Q.
        dim: embedding size.
        num_queues: parallel queues written together (LA-Net keeps expression and landmark keys: 2).
        seed: seed of the random initial keys (random unit vectors, as MoCo), so every rank starts identical.

    Buffers: ``keys`` ``num_queues x Q x dim``, ``labels`` ``Q`` (int64, :data:`EMPTY_LABEL` until written),
    ``ptr`` (int64 scalar, next slot). Writes wrap around, so Q need not be a multiple of the batch size; a batch
    longer than Q keeps only its last Q rows.
    """

    def __init__(self, size: int = 8192, dim: int = 64, num_queues: int = 1, seed: int = 0) -> None:
        super().__init__()
        if size < 1 or dim < 1 or num_queues < 1:
            raise ValueError(f"MemoryBank: size, dim and num_queues must be >= 1, got {size}, {dim}, {num_queues}")
        self.size, self.dim, self.num_queues = int(size), int(dim), int(num_queues)
        g = torch.Generator().manual_seed(int(seed))
        self.register_buffer("keys", F.normalize(torch.randn(self.num_queues, self.size, self.dim, generator=g), dim=-1))
        self.register_buffer("labels", torch.full((self.size,), EMPTY_LABEL, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, num_queues={self.num_queues}"

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...], labels: torch.Tensor) -> None:
        """Write ``keys`` (``num_queues x n x dim``, or a list of ``n x dim``, one per queue) and ``labels`` (``n``)."""
        if isinstance(keys, (list, tuple)):
            keys = torch.stack(list(keys))
        if keys.dim() == 2 and self.num_queues == 1:
            keys = keys.unsqueeze(0)
        if keys.dim() != 3 or keys.shape[0] != self.num_queues or keys.shape[2] != self.dim:
            raise ValueError(f"MemoryBank.enqueue: keys must be {self.num_queues} x n x {self.dim}, got {tuple(keys.shape)}")
        if labels.is_floating_point():
            raise TypeError(f"MemoryBank.enqueue: labels must be integer ids, got {labels.dtype}")
        require_finite("MemoryBank.enqueue", "keys", keys)
        labels = labels.reshape(-1).long()
        n = keys.shape[1]
        if labels.shape[0] != n:
            raise ValueError(f"MemoryBank.enqueue: {n} keys but {labels.shape[0]} labels")
        if n == 0:
            return
        if n > self.size:
            keys, labels, n = keys[:, -self.size :], labels[-self.size :], self.size
        slots = (self.ptr + torch.arange(n, device=self.keys.device)) % self.size
        self.keys[:, slots] = keys.detach().to(self.keys.dtype)
        self.labels[slots] = labels.to(self.labels.device)
        self.ptr.fill_(int((int(self.ptr) + n) % self.size))
