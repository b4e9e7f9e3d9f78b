"""The base LightningModule for FER classification that every method subclasses.

Subclasses usually override :meth:`build_model` (the network) and :meth:`training_step` (the method's losses);
evaluation, metrics, confusion matrices, prediction output, optimisers and checkpoint metadata are shared.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

import ferkit
from ferkit.core.errors import NonFiniteLossError
from ferkit.metrics import FERMetrics, format_report, save_confusion_matrix

log = logging.getLogger(__name__)


class FERClassifier(L.LightningModule):
    """A backbone + pool + linear head trained with cross-entropy.

    Args:
        backbone: a timm model name (created unpooled). pool: a pool registry name (``"avg"``, ``"max"``, ``"arm"``).
        pool_kwargs: arguments of the pool (e.g. ARM's ``shuffle``, ``kernel_size``, ``stride``, ``affinity``).
        num_classes / class_names: the label space (linked from the data module by the CLI).
        in_chans / img_size: input channels and side (linked from the data module by the CLI).
        pretrained: None, a weights file path, or a tag resolved under ``$FERKIT_WEIGHTS`` (never downloaded).
        small_input: drop the stem max-pool for 48-64 px inputs (2x larger final feature map).
        optimizer: ``adam`` | ``adamw`` | ``sgd``; lr, weight_decay, momentum (SGD).
        scheduler: ``none`` | ``onecycle`` (per step) | ``cosine`` | ``exponential`` (``gamma`` per epoch) | ``step``.
        label_smoothing: CE label smoothing. soft_targets: train on ``soft_label`` (e.g. FER+ vote distributions) when present.
        nan_policy: ``"raise"`` (stop with a clear error) or ``"skip"`` (skip the batch, count it in ``train/skipped_nonfinite``).
        output_dir: where test/validate write confusion matrices and metrics (default: the logger's directory).
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        pool: str = "avg",
        pool_kwargs: dict[str, Any] | None = None,
        num_classes: int = 7,
        class_names: list[str] | None = None,
        in_chans: int = 3,
        img_size: int = 112,
        pretrained: str | None = None,
        small_input: bool = False,
        dropout: float = 0.0,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        scheduler: str = "onecycle",
        gamma: float = 0.9,
        step_size: int = 10,
        warmup_pct: float = 0.15,
        label_smoothing: float = 0.0,
        soft_targets: bool = False,
        nan_policy: str = "raise",
        output_dir: str | None = None,
    ) -> None:
        super().__init__()
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names for num_classes={num_classes}")
        if nan_policy not in ("raise", "skip"):
            raise ValueError(f"nan_policy must be 'raise' or 'skip', got {nan_policy!r}")
        # output_dir is where this run writes reports, not a property of the model: keep it out of the checkpoint
        # (LightningCLI re-applies a checkpoint's hparams over the command line on test/predict)
        self.save_hyperparameters(ignore=["output_dir"])
        self.output_dir = output_dir
        self.class_names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
        self.model = self.build_model()
        self.val_metrics = FERMetrics(num_classes, self.class_names)
        self.test_metrics = FERMetrics(num_classes, self.class_names)
        self.register_buffer("skipped_nonfinite", torch.zeros((), dtype=torch.long))
        self.last_results: dict[str, dict[str, Any]] = {}

    # -- model -----------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        from ferkit.models import FERNet

        h = self.hparams
        return FERNet(backbone=h.backbone, pool=h.pool, num_classes=h.num_classes, in_chans=h.in_chans, img_size=h.img_size,
                      pretrained=h.pretrained, small_input=h.small_input, dropout=h.dropout, pool_kwargs=h.pool_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # -- training --------------------------------------------------------------------------------------
    def classification_loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.hparams.soft_targets and "soft_label" in batch:
            return torch.sum(-batch["soft_label"] * F.log_softmax(logits, dim=1), dim=1).mean()
        return F.cross_entropy(logits, batch["label"], label_smoothing=self.hparams.label_smoothing)

    def check_finite(self, loss: torch.Tensor, batch: dict[str, Any]) -> bool:
        """True if ``loss`` is finite; otherwise raise or count a skip, per ``nan_policy``."""
        if torch.isfinite(loss).all():
            return True
        idx = batch.get("index")
        where = f"epoch {self.current_epoch}, step {self.global_step}"
        if idx is not None:
            where += f", dataset indices {idx[:8].tolist()}{'...' if len(idx) > 8 else ''}"
        if self.hparams.nan_policy == "raise":
            raise NonFiniteLossError(f"non-finite training loss ({loss.detach().item()}) at {where}; lower the learning rate, "
                                     "check the inputs, or pass model.nan_policy=skip to skip such batches")
        self.skipped_nonfinite += 1
        log.warning("skipping batch with non-finite loss at %s (%d skipped so far)", where, int(self.skipped_nonfinite))
        self.log("train/skipped_nonfinite", self.skipped_nonfinite.float())
        return False

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        logits = self(batch["image"])
        loss = self.classification_loss(logits, batch)
        if not self.check_finite(loss, batch):
            return None
        acc = (logits.argmax(1) == batch["label"]).float().mean()
        bs = logits.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/acc", acc, prog_bar=True, batch_size=bs)
        return loss

    # -- evaluation ------------------------------------------------------------------------------------
    def _eval_step(self, batch: dict[str, torch.Tensor], metrics: FERMetrics, stage: str) -> None:
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        metrics.update(logits, batch["label"], batch["index"])
        self.log(f"{stage}/loss", loss, batch_size=logits.shape[0], sync_dist=True)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, self.test_metrics, "test")

    def _eval_epoch_end(self, metrics: FERMetrics, stage: str) -> None:
        result = metrics.compute()
        metrics.reset()
        # values are already global (computed from all ranks' gathered predictions); sync_dist averages equal numbers
        self.log(f"{stage}/acc", result["acc"], sync_dist=True)
        self.log(f"{stage}/mean_class_acc", result["mean_class_acc"], prog_bar=stage == "val", sync_dist=True)
        for name, r in zip(self.class_names, result["per_class_recall"]):
            if not math.isnan(float(r)):
                self.log(f"{stage}/recall_{name}", r, sync_dist=True)
        self.last_results[stage] = {k: v.detach().cpu() for k, v in result.items()}
        if stage == "test" or self.trainer.state.fn == "validate":
            self._report(stage, result)

    def _report(self, stage: str, result: dict[str, torch.Tensor]) -> None:
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        out = self.output_directory()
        self.print(format_report(result, self.class_names, title=f"[ferkit] {stage} results ({type(self).__name__})"))
        if out is None:
            return
        save_confusion_matrix(result["confusion_matrix"], self.class_names, out / f"confusion_matrix_{stage}.csv",
                              out / f"confusion_matrix_{stage}.png", title=f"{stage}: {type(self).__name__}")
        summary = {
            "stage": stage, "model": type(self).__name__, "class_names": self.class_names,
            "acc": float(result["acc"]), "mean_class_acc": float(result["mean_class_acc"]),
            "per_class_recall": [None if math.isnan(v) else v for v in result["per_class_recall"].tolist()],
            "confusion_matrix": result["confusion_matrix"].tolist(), "num_samples": int(result["num_samples"]),
        }
        (out / f"metrics_{stage}.json").write_text(json.dumps(summary, indent=2))
        self.print(f"[ferkit] wrote {out / f'confusion_matrix_{stage}.png'} and metrics_{stage}.json")

    def output_directory(self) -> Path | None:
        if self.output_dir:
            p = Path(self.output_dir)
        elif self._trainer is not None and self.trainer.log_dir:
            p = Path(self.trainer.log_dir)
        else:
            return None
        p.mkdir(parents=True, exist_ok=True)
        return p

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end(self.test_metrics, "test")

    # -- prediction ------------------------------------------------------------------------------------
    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        probs = torch.softmax(self(batch["image"]), dim=1)
        out = {"index": batch["index"], "probs": probs}
        if "label" in batch:
            out["label"] = batch["label"]
        return out

    # -- optimisation ----------------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]] | Any:
        """Parameters to optimise; no weight decay on norms, biases and ARM's alpha."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 else decay).append(p)
        return [{"params": decay, "weight_decay": self.hparams.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def configure_optimizers(self):
        h = self.hparams
        groups = self.parameter_groups()
        if h.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=h.lr)
        elif h.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=h.lr)
        elif h.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=h.lr, momentum=h.momentum, nesterov=True)
        else:
            raise ValueError(f"optimizer must be adam, adamw or sgd, got {h.optimizer!r}")
        if h.scheduler == "none":
            return opt
        if h.scheduler == "onecycle":
            total = int(self.trainer.estimated_stepping_batches)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=h.lr, total_steps=max(total, 1), pct_start=h.warmup_pct)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if h.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(int(self.trainer.max_epochs or 1), 1))
        elif h.scheduler == "exponential":
            sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=h.gamma)
        elif h.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=h.step_size, gamma=h.gamma)
        else:
            raise ValueError(f"scheduler must be none, onecycle, cosine, exponential or step, got {h.scheduler!r}")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def lr_scheduler_step(self, scheduler, metric) -> None:
        if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR) and scheduler.last_epoch + 1 > scheduler.total_steps:
            raise RuntimeError(
                f"the one-cycle learning-rate schedule was planned for {scheduler.total_steps} steps and is over. When resuming, "
                "keep trainer.max_epochs of the run you resume; to train longer, start a new run from the checkpoint's weights "
                "or use model.scheduler=cosine/exponential/step")
        super().lr_scheduler_step(scheduler, metric)

    # -- checkpoints -----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ferkit"] = {"version": ferkit.__version__, "class_names": self.class_names,
                                "num_classes": self.hparams.num_classes, "model_class": type(self).__qualname__}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("ferkit")
        if meta and meta.get("class_names") and list(meta["class_names"]) != self.class_names:
            raise ValueError(f"checkpoint was trained with classes {meta['class_names']} but this model has {self.class_names}")
