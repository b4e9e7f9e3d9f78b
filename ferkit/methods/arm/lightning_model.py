"""ARM as a LightningModule: the FER network with the ARM pool and the paper's optimisation recipe as defaults."""
from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from ferkit.methods.base import FERModule
from ferkit.models import FERNetConfig

__all__ = ["ARMClassifier", "arm_optimizer", "arm_scheduler"]


def arm_optimizer(params) -> torch.optim.Optimizer:
    """The official RAF-DB recipe of ARM (Shi et al., 2021): Adam, lr 1e-3, weight decay 1e-4."""
    return torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4)


def arm_scheduler(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The official recipe's schedule: the learning rate times 0.9 after every epoch."""
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)


class ARMClassifier(FERModule):
    """The FER network with ARM, the amend-representation module (Shi et al., arXiv 2103.10189), as its pool.

    ``net`` defaults to ``FERNetConfig(pool="arm")``; with no ARM geometry in ``net.pool_kwargs`` it is chosen for
    the real feature-map size (:meth:`ferkit.layers.ARM.suggest_config`), and a geometry giving fewer than 4
    features is an error. ``pool_kwargs.affinity``: ``"ema"`` (default; evaluation independent of the batch),
    ``"batch"`` (as in the paper; predictions depend on the other images of the batch) or ``"none"``. The affinity
    mode and the evaluation batch size are printed at the start of every test / validate run, because in
    ``"batch"`` mode results depend on them.
    """

    def __init__(self, net: FERNetConfig | None = None, optimizer: OptimizerCallable = arm_optimizer,
                 scheduler: LRSchedulerCallable | None = arm_scheduler, **kwargs: Any) -> None:
        super().__init__(net, optimizer=optimizer, scheduler=scheduler, **kwargs)
        if self.net.pool.lower() != "arm":
            raise ValueError(f"ARMClassifier: net.pool must be 'arm', got {self.net.pool!r}; use FERClassifier for other pools")

    def default_net(self) -> FERNetConfig:
        return FERNetConfig(pool="arm")

    @property
    def affinity(self) -> str:
        return getattr(self.model.pool, "affinity", "n/a")

    def _log_eval_setup(self, loaders) -> None:
        bs = getattr(loaders, "batch_size", None)
        if isinstance(loaders, (list, tuple)) and loaders:
            bs = getattr(loaders[0], "batch_size", None)
        msg = f"[ferkit] ARM affinity={self.affinity!r}, evaluation batch size={bs}"
        if self.affinity == "batch":
            msg += " (batch mode: predictions depend on batch companions; only batch size 1 is fair)"
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self.print(msg)

    def on_test_start(self) -> None:
        self._log_eval_setup(self.trainer.test_dataloaders)

    def on_validation_start(self) -> None:
        if self.trainer.state.fn == "validate":
            self._log_eval_setup(self.trainer.val_dataloaders)
