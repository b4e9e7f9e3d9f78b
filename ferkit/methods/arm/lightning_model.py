"""ARM as a LightningModule: FERClassifier with the ARM pool and the paper's optimisation recipe as defaults."""
from __future__ import annotations

from typing import Any

from ferkit.methods.classifier import FERClassifier


class ARMClassifier(FERClassifier):
    """FERClassifier whose pool is ARM.

    Defaults follow the official RAF-DB recipe (METHODS.md §1.3): Adam lr 1e-3, weight decay 1e-4, ExponentialLR
    0.9 per epoch. ``pool_kwargs`` configures the layer (``affinity`` = ``"ema"`` (default, batch-independent
    evaluation), ``"batch"`` (paper-faithful, batch-dependent) or ``"none"``). The affinity mode and the evaluation
    batch size are logged at the start of every evaluation, because in ``"batch"`` mode results depend on them.
    """

    def __init__(self, backbone: str = "resnet18", pool: str = "arm", pool_kwargs: dict[str, Any] | None = None,
                 optimizer: str = "adam", lr: float = 1e-3, weight_decay: float = 1e-4, scheduler: str = "exponential",
                 gamma: float = 0.9, **kwargs: Any) -> None:
        super().__init__(backbone=backbone, pool=pool, pool_kwargs=pool_kwargs, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, scheduler=scheduler, gamma=gamma, **kwargs)

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
