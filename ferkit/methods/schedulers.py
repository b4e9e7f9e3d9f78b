"""Learning-rate schedules whose length is the run's: they take ``total_steps`` and the FERModule fills it in.

A scheduler class (or factory) with a ``total_steps`` argument left unset in the config receives
``trainer.estimated_stepping_batches`` from :meth:`ferkit.methods.FERModule.configure_optimizers`, and a scheduler
with ``interval = "step"`` is stepped every optimiser step (otherwise every epoch). So a config names them like
any other scheduler::

    scheduler: {class_path: ferkit.methods.OneCycle, init_args: {pct_start: 0.15}}
"""
from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LinearLR, OneCycleLR

__all__ = ["OneCycle", "LinearDecay"]


class OneCycle(OneCycleLR):
    """One-cycle schedule (Smith & Topin, 2019) over the whole run, peaking at each parameter group's ``lr``.

    Args:
        optimizer: the optimiser (its groups' ``lr`` are the peaks).
        total_steps: optimiser steps of the run (filled in by the FERModule from the trainer).
        pct_start: fraction of the steps spent warming up. div_factor / final_div_factor: start lr = peak /
            div_factor, final lr = start / final_div_factor. anneal_strategy: ``"cos"`` or ``"linear"``.

    Resuming a run keeps the plan of the original run: train with the same ``trainer.max_epochs``; stepping past
    the planned end raises a clear error.
    """

    interval = "step"

    def __init__(self, optimizer: Optimizer, total_steps: int | None = None, pct_start: float = 0.3,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, anneal_strategy: str = "cos") -> None:
        if total_steps is None:
            raise ValueError("OneCycle needs total_steps: a FERModule passes trainer.estimated_stepping_batches; "
                             "outside Lightning pass total_steps=epochs * steps_per_epoch")
        peaks = [g["lr"] for g in optimizer.param_groups]
        # at least two steps per phase: OneCycleLR divides by the length of each phase
        super().__init__(optimizer, max_lr=peaks, total_steps=max(int(total_steps), 4), pct_start=pct_start,
                         div_factor=div_factor, final_div_factor=final_div_factor, anneal_strategy=anneal_strategy)


class LinearDecay(LinearLR):
    """The learning rate falls linearly from its initial value to ``end_factor`` times it over the whole run
    (LA-Net's recipe decays it to 0, stepped every optimiser step)."""

    interval = "step"

    def __init__(self, optimizer: Optimizer, total_steps: int | None = None, end_factor: float = 0.0) -> None:
        if total_steps is None:
            raise ValueError("LinearDecay needs total_steps: a FERModule passes trainer.estimated_stepping_batches")
        super().__init__(optimizer, start_factor=1.0, end_factor=end_factor, total_iters=max(int(total_steps), 1))
