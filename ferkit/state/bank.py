"""Per-sample state keyed by dataset index, correct under DDP.

A :class:`PerSampleBank` is one registered buffer of shape ``[N, *shape]``: row ``i`` belongs to the training
sample whose ``index`` is ``i``. Writes go by index; :meth:`PerSampleBank.write` with ``sync=True`` first gathers
``(index, value)`` pairs from every rank (:func:`ferkit.state.distributed.all_gather_uneven`), so every rank
applies the same writes and holds the same bank no matter how the sampler assigned samples to ranks.

Duplicate indices in one write (``DistributedSampler`` pads the last batch with repeated samples) are resolved
deterministically: ``reduce="mean"`` (default) stores the mean of the duplicates, ``reduce="last"`` the last
one in gathered order. Identical duplicates (an evaluation-mode pass) are therefore harmless either way.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ferkit.state.distributed import all_gather_uneven, is_distributed

__all__ = ["PerSampleBank", "gather_index_value", "require_finite"]


def require_finite(owner: str, name: str, x: torch.Tensor) -> None:
    """Raise a ``ValueError`` naming ``owner`` and ``name`` when ``x`` holds NaN or infinity.

    Used before writing into state that outlives the batch (banks, queues, miners): a NaN stored there would
    poison every later epoch and the checkpoint, long after the step that produced it.
    """
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{owner}: {name} holds {bad} NaN/inf value(s) of {x.numel()} (shape {tuple(x.shape)}); nothing was "
            "stored. The network producing them has diverged (lower the learning rate, check the inputs)")


def gather_index_value(index: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gather ``(index [M], value [M, ...])`` pairs from every rank (identity when not distributed)."""
    index = index.detach().reshape(-1).long()
    value = value.detach()
    if value.shape[0] != index.shape[0]:
        raise ValueError(f"gather_index_value: {index.shape[0]} indices but {value.shape[0]} values")
    if not is_distributed():
        return index, value
    return all_gather_uneven(index), all_gather_uneven(value)


class PerSampleBank(nn.Module):
    """A ``[num_samples, *shape]`` registered buffer written and read by dataset index.

    Args:
        num_samples: N, the training-set length (0 is allowed: :meth:`resize` later, e.g. in ``setup()``, or load
            a state dict, which sizes an empty bank to the checkpoint's N).
        shape: per-sample shape (``()`` for a scalar per sample).
        dtype: buffer dtype (e.g. ``torch.int8`` for subset ids, ``torch.float32`` for confidences).
        fill: initial / reset value (e.g. -1 for "unknown", NaN for "not observed").
        persistent: keep the buffer in the state dict (default) so resume restores it.
    """

    def __init__(self, num_samples: int = 0, shape: Sequence[int] = (), dtype: torch.dtype = torch.float32,
                 fill: float | int = 0, persistent: bool = True) -> None:
        super().__init__()
        if num_samples < 0:
            raise ValueError(f"PerSampleBank: num_samples must be >= 0, got {num_samples}")
        self.shape = tuple(int(s) for s in shape)
        self.fill = fill
        self.register_buffer("values", torch.full((int(num_samples), *self.shape), fill, dtype=dtype), persistent=persistent)

    def extra_repr(self) -> str:
        return f"num_samples={len(self)}, shape={self.shape}, dtype={self.values.dtype}, fill={self.fill}"

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def num_samples(self) -> int:
        return len(self)

    def resize(self, num_samples: int) -> None:
        """Re-allocate for ``num_samples`` rows, all at ``fill`` (existing content is dropped)."""
        self.values = torch.full((int(num_samples), *self.shape), self.fill, dtype=self.values.dtype, device=self.values.device)

    def reset(self) -> None:
        """Set every row back to ``fill``."""
        self.values.fill_(self.fill)

    def check_index(self, index: torch.Tensor) -> torch.Tensor:
        """``index`` as a flat int64 tensor on the bank's device; an error when it is not an integer tensor of
        dataset indices inside ``0..N-1``."""
        if not isinstance(index, torch.Tensor):
            index = torch.as_tensor(index)
        if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
            raise TypeError(f"PerSampleBank: dataset indices must be an integer tensor, got {index.dtype} (pass batch['index'])")
        index = index.reshape(-1).long().to(self.values.device)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise IndexError(
                f"PerSampleBank: dataset index {int(index.min())}..{int(index.max())} outside 0..{len(self) - 1}; the bank was "
                f"sized for {len(self)} samples -- size it with the training set's length (setup()/resize()) and make sure "
                "the items' 'index' is the position in that training set")
        return index

    def read(self, index: torch.Tensor) -> torch.Tensor:
        """Rows of ``index`` (a copy)."""
        return self.values[self.check_index(index)]

    @torch.no_grad()
    def write(self, index: torch.Tensor, value: torch.Tensor, sync: bool = True, reduce: str = "mean") -> None:
        """Write ``value[j]`` into row ``index[j]``.

        With ``sync`` (default) the pairs of every rank are gathered first, so all ranks write the same rows.
        Duplicate indices: ``reduce="mean"`` stores their mean (floating banks), ``"last"`` the last in gathered
        order (rank order, then batch order).
        """
        if reduce not in ("mean", "last"):
            raise ValueError(f"reduce must be 'mean' or 'last', got {reduce!r}")
        if sync:
            index, value = gather_index_value(index, value)
        index = self.check_index(index)
        value = value.detach().to(device=self.values.device)
        if value.shape[1:] != self.values.shape[1:]:
            raise ValueError(f"PerSampleBank: values of shape {tuple(value.shape[1:])} per sample, expected {self.shape}")
        if value.shape[0] != index.numel():
            raise ValueError(f"PerSampleBank.write: {index.numel()} indices but {value.shape[0]} value rows")
        if index.numel() == 0:
            return
        uniq, inverse = torch.unique(index, return_inverse=True)
        if uniq.numel() == index.numel():
            self.values[index] = value.to(self.values.dtype)
            return
        if reduce == "mean" and self.values.is_floating_point():
            sums = torch.zeros((uniq.numel(), *self.shape), dtype=torch.float64, device=value.device)
            sums.index_add_(0, inverse, value.to(torch.float64))
            counts = torch.bincount(inverse, minlength=uniq.numel()).to(torch.float64).reshape(-1, *([1] * len(self.shape)))
            self.values[uniq] = (sums / counts).to(self.values.dtype)
        else:
            # last occurrence of each index in gathered order: deterministic on every rank
            pos = torch.arange(index.numel(), device=index.device)
            last = torch.full((uniq.numel(),), -1, dtype=torch.long, device=index.device).scatter_reduce_(0, inverse, pos, "amax")
            self.values[uniq] = value[last].to(self.values.dtype)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # an empty bank (N not known at construction, e.g. load_from_checkpoint) takes the checkpoint's size
        key = prefix + "values"
        if key in state_dict and len(self) == 0 and state_dict[key].shape[0] > 0:
            self.resize(state_dict[key].shape[0])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
