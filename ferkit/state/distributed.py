"""The one place in ferkit where collectives are called.

Every batch-relational component (ARM's Sharing Affinity, contrastive losses, miners, memory banks) reaches
other ranks only through these helpers, so their semantics are defined, documented and tested once
All helpers are no-ops when ``torch.distributed`` is unavailable, not initialised,
or running with a single process, so the same code runs unchanged on one CPU.

Gradient convention of :func:`gather_with_grad`
-----------------------------------------------
The forward pass concatenates every rank's tensor along dim 0 (rank order). The backward pass **sums** the
incoming gradient of the gathered tensor over ranks and returns this rank's slice. Hence, if rank ``r``
computes a loss ``L_r`` on the gathered tensor, the gradient reaching the local input is
``d(sum_r' L_r') / d x_r``: exactly the single-process gradient of the *sum* of the per-rank losses.

* Convention "sum": each rank computes the loss terms of its **local** samples (anchors) against the gathered
  batch, so that ``sum_r L_r`` equals the single-process loss on the concatenated batch. Input gradients then
  equal the single-process ones exactly (this is what the tests check).
* Convention used with DDP: each rank computes the **mean** over its local anchors. ``sum_r L_r`` is then
  ``W`` times the global-mean loss, so input gradients are ``W`` times the single-process ones, and DDP's
  *averaging* of parameter gradients divides by ``W`` again: parameter updates equal single-process training on
  the concatenated batch (effective batch ``W x B``).

Do **not** let every rank compute the full global loss on the gathered batch and then rely on the summing
backward: that counts each term ``W`` times. (The opposite bug, a gather that drops the gradient of the other
ranks' samples, silently trains a batch-relational loss on the local samples only.)

All ranks must call a collective in the same order; the backward collective of :func:`gather_with_grad`
is issued when autograd reaches it, so every rank must back-propagate through the same graph.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist

__all__ = [
    "is_distributed",
    "get_world_size",
    "get_rank",
    "gather_with_grad",
    "all_gather_uneven",
    "all_reduce_mean",
    "all_reduce_sum",
    "broadcast",
    "gather_batch",
]


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_distributed() -> bool:
    """True when a process group is initialised with more than one process."""
    return _initialized() and dist.get_world_size() > 1


def get_world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if _initialized() else 1


def get_rank() -> int:
    """Rank of this process in the default group (0 when not distributed)."""
    return dist.get_rank() if _initialized() else 0


def _gather_lengths(n: int, device: torch.device) -> list[int]:
    """All ranks' dim-0 lengths, in rank order."""
    local = torch.tensor([n], dtype=torch.long, device=device)
    out = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(out, local)
    return [int(t.item()) for t in out]


def _gather_padded(x: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """All-gather ``x`` (dim-0 lengths ``lengths`` on the ranks) and concatenate without the padding."""
    x = x.contiguous()
    max_len = max(lengths)
    if x.shape[0] < max_len:
        pad = x.new_zeros((max_len - x.shape[0], *x.shape[1:]))
        x = torch.cat([x, pad], dim=0)
    buf = [torch.empty_like(x) for _ in lengths]
    dist.all_gather(buf, x)
    return torch.cat([b[:n] for b, n in zip(buf, lengths)], dim=0)


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        lengths = _gather_lengths(x.shape[0], x.device)
        rank = dist.get_rank()
        ctx.start = sum(lengths[:rank])
        ctx.stop = ctx.start + x.shape[0]
        return _gather_padded(x, lengths)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        # Sum the gradient of the gathered tensor over ranks: the samples of this rank were used by the losses of
        # every rank, so their total gradient is the sum of what each rank sends back.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather ``x`` along dim 0 (rank order) keeping the autograd graph.

    Backward all-reduces (sums) the gradient of the gathered tensor and returns this rank's slice; see the module
    docstring for the loss-scaling convention. Ranks may hold different lengths (the shapes beyond dim 0 must
    match); an extra small collective exchanges the lengths. Identity when not distributed.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


def gather_batch(*tensors: torch.Tensor, with_grad: bool | Sequence[bool] = False,
                 enabled: bool = True) -> tuple[list[torch.Tensor], slice]:
    """Gather a batch from every rank and say where this rank's rows are: ``(gathered, local)``.

    The one helper for batch-relational losses (neighbour graphs, contrast against other ranks' keys)::

        (h_all, index_all), local = gather_batch(h, index, with_grad=(True, False))
        ...                                   # build the loss over the global batch
        q_mine = q_all[local]                 # rows of this rank's samples, in its batch order

    Args:
        tensors: tensors with the same dim-0 length ``B`` on this rank (ranks may hold different ``B``).
        with_grad: gather with gradient (:func:`gather_with_grad`) or without (:func:`all_gather_uneven`); one
            flag for all tensors or one per tensor.
        enabled: ``False`` skips the gather (the caller's ``gather_distributed=False`` switch).

    Returns the gathered tensors (rank order) and the ``slice`` of this rank's rows in them. With one process, or
    ``enabled=False``, the tensors are returned as they are (graph kept) with ``slice(0, B)``.
    """
    if not tensors:
        raise ValueError("gather_batch: pass at least one tensor")
    b = tensors[0].shape[0]
    if any(t.shape[0] != b for t in tensors):
        raise ValueError(f"gather_batch: tensors must share their first dimension, got {[tuple(t.shape) for t in tensors]}")
    flags = [bool(with_grad)] * len(tensors) if isinstance(with_grad, bool) else [bool(f) for f in with_grad]
    if len(flags) != len(tensors):
        raise ValueError(f"gather_batch: {len(flags)} with_grad flags for {len(tensors)} tensors")
    if not (enabled and is_distributed()):
        return list(tensors), slice(0, b)
    lengths = _gather_lengths(b, tensors[0].device)
    start = sum(lengths[: dist.get_rank()])
    out = [gather_with_grad(t) if g else all_gather_uneven(t) for t, g in zip(tensors, flags)]
    return out, slice(start, start + b)


@torch.no_grad()
def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over ranks (a new tensor; ``x`` is not modified); a detached copy when not distributed."""
    out = x.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


@torch.no_grad()
def all_gather_uneven(x: torch.Tensor) -> torch.Tensor:
    """All-gather ``x`` along dim 0 when ranks hold different lengths (pad to the max, gather, trim). No gradient.

    Typical use: epoch-end ``(index, value)`` pairs for dataset-wide state.
    Returns ``x`` detached when not distributed.
    """
    if not is_distributed():
        return x.detach()
    x = x.detach()
    lengths = _gather_lengths(x.shape[0], x.device)
    return _gather_padded(x, lengths)


@torch.no_grad()
def all_reduce_mean(x: torch.Tensor, weight: float | torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``x`` over ranks; with ``weight`` the weighted mean ``sum_r w_r x_r / sum_r w_r``.

    ``weight`` is a per-rank scalar, typically the local batch size, so that the result equals the mean over the
    concatenated batch when each ``x_r`` is a local batch mean; the weights must not all be 0 (the result would be
    NaN). Returns a new floating tensor (``x`` is not
    modified); ``x`` itself (as floating point) when not distributed.
    """
    x = x.detach()
    if not x.is_floating_point():
        x = x.float()
    if not is_distributed():
        return x.clone()
    if weight is None:
        out = x.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / dist.get_world_size()
    if isinstance(weight, (int, float)) and weight < 0:
        raise ValueError(f"all_reduce_mean: weight must be >= 0, got {weight}")
    # (tensor weights are not checked: reading them would force a device sync on every call)
    w = torch.as_tensor(weight, dtype=x.dtype, device=x.device).reshape(())
    # one collective for numerator and denominator
    packed = torch.cat([(x * w).reshape(-1), w.reshape(1)])
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return (packed[:-1] / packed[-1]).reshape(x.shape)


@torch.no_grad()
def broadcast(x: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Return rank ``src``'s value of ``x`` on every rank (a new tensor; ``x`` is not modified).

    All ranks must pass tensors of the same shape and dtype. Returns ``x`` when not distributed.
    """
    if not is_distributed():
        return x
    out = x.detach().contiguous().clone()
    dist.broadcast(out, src=src)
    return out
