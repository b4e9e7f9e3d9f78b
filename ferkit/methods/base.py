"""FERModule: the LightningModule every ferkit method subclasses.

It owns what every method shares: the network built from one :class:`ferkit.models.FERNetConfig`, evaluation
(overall / mean-class accuracy, per-class recall, confusion matrices), prediction output, the non-finite-loss
policy, the optimiser and scheduler (LightningCLI's ``OptimizerCallable`` / ``LRSchedulerCallable``) and the
label names stored in checkpoints.

A method overrides a few hooks, each documented below: :meth:`FERModule.build_model` (the network),
:meth:`FERModule.training_step` (its losses; :meth:`FERModule.classification_loss` for the supervised term),
:meth:`FERModule.parameter_groups` (what is optimised, with which weight decay). The network is built lazily (in
:meth:`configure_model`, or on first access of ``self.model``), so a subclass may set its own attributes in its
``__init__`` after ``super().__init__(...)`` and use them in ``build_model``. See ``docs/extending.md``.
"""
from __future__ import annotations

import functools
import inspect
import json
import logging
import random
import math
from pathlib import Path
from typing import Any, Callable, Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

import ferkit
from ferkit.core.errors import NonFiniteLossError
from ferkit.methods.schedulers import OneCycle
from ferkit.metrics import FERMetrics, format_report, save_confusion_matrix
from ferkit.models import FERNetConfig

log = logging.getLogger(__name__)

__all__ = ["FERModule", "default_optimizer"]


def default_optimizer(params, fused: bool | None = None) -> torch.optim.Optimizer:
    """AdamW, lr 1e-3, weight decay 1e-4 (on the weights; norms and biases get none, see ``parameter_groups``);
    ``fused`` as in :meth:`FERModule.build_optimizer`."""
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4, fused=fused)


def _factory_target(factory: Callable) -> tuple[Any, dict[str, Any]]:
    """What a factory builds (a class or function, through LightningCLI's partials of it) and the keyword arguments
    the partials fix."""
    target, given = factory, {}
    while isinstance(target, functools.partial):
        given = {**target.keywords, **given}
        classes = [a for a in target.args if isinstance(a, type)]
        target = classes[0] if classes else target.func
    return target, given


def _unset_argument(factory: Callable, name: str) -> bool:
    """Whether the factory's target takes the argument ``name`` and the config left it unset (or None)."""
    target, given = _factory_target(factory)
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return name in params and given.get(name) is None


def _unset_total_steps(factory: Callable) -> bool:
    """Whether the scheduler ``factory`` (a class, or LightningCLI's partial of one) takes ``total_steps`` and the
    config left it unset: then the run's step count is passed in."""
    return _unset_argument(factory, "total_steps")


def _to_channels_last(batch: Any) -> Any:
    """Every floating 4-D tensor in a batch (a tensor, or dicts / lists / tuples of them) in channels-last format."""
    if isinstance(batch, torch.Tensor):
        return batch.contiguous(memory_format=torch.channels_last) if batch.ndim == 4 and batch.is_floating_point() else batch
    if isinstance(batch, dict):
        return {k: _to_channels_last(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_channels_last(v) for v in batch)
    return batch


class FERModule(L.LightningModule):
    """The base of every method: a network from ``net``, evaluated, predicted and optimised the same way.

    Args:
        net: the network's architecture (:class:`ferkit.models.FERNetConfig`; a dict of its fields is accepted).
        num_classes / class_names: the label space (the CLI links them from the data module).
        in_chans / img_size: input channels and side (the CLI links them from ``data.channels`` / ``data.img_size``).
        optimizer: an ``OptimizerCallable`` (``class_path: torch.optim.AdamW`` in a config); it receives
            :meth:`parameter_groups`. Default: :func:`default_optimizer`.
        scheduler: an ``LRSchedulerCallable`` or None. A scheduler with a ``total_steps`` argument left unset
            (:class:`ferkit.methods.OneCycle`, :class:`ferkit.methods.LinearDecay`, ``OneCycleLR``) gets the run's
            optimiser steps; one with ``interval = "step"`` (or ``OneCycleLR``) steps every batch, others every epoch.
        label_smoothing: cross-entropy label smoothing. Batches that carry ``soft_label`` (e.g. FER+ vote
            distributions with ``label_mode: soft``) are trained on those distributions.
        nan_policy: ``"raise"`` (stop with a clear error) or ``"skip"`` (skip the batch, count it in
            ``train/skipped_nonfinite``).
        output_dir: where test/validate write confusion matrices and metrics (default: the logger's directory).
        eval_flip: horizontal-flip test-time augmentation. Validation, test and prediction then average the
            softmax of the image and of its mirror image (twice the evaluation cost; training is unchanged, and the
            exported network is the plain one). Decide it on validation, like any other setting.
        channels_last: keep the module's 4-D weights and every batch's images in the channels-last memory format
            (a speed option, the same function). ``None`` (default): channels-last where the trainer runs on the CPU
            in bf16 (``precision: bf16-mixed`` or ``bf16-true``), contiguous otherwise. Measured with ResNet-18 at
            48 px (``benchmarks/recipe_speed.py``): under bf16 autocast channels-last was x1.37 per training step on
            the Intel Xeon 2-core machine (AMX, one thread) and x1.02-1.09 on the AMD EPYC one; in fp32 x1.12 on the
            AMD EPYC but x0.86 on the Intel Xeon; GPUs were not measured. ``True`` / ``False`` force it. Applied
            when the first batch arrives, so it covers modules a method builds or loads in ``on_fit_start`` too. A
            run resumed with ``--ckpt_path`` keeps the value its checkpoint stored unless the command line sets it.
    """

    def __init__(
        self,
        net: FERNetConfig | None = None,
        num_classes: int = 7,
        class_names: list[str] | None = None,
        in_chans: int = 3,
        img_size: int = 112,
        optimizer: OptimizerCallable = default_optimizer,
        scheduler: LRSchedulerCallable | None = None,
        label_smoothing: float = 0.0,
        nan_policy: Literal["raise", "skip"] = "raise",
        output_dir: str | None = None,
        eval_flip: bool = False,
        channels_last: bool | None = None,
    ) -> None:
        super().__init__()
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names for num_classes={num_classes}")
        if nan_policy not in ("raise", "skip"):
            raise ValueError(f"nan_policy must be 'raise' or 'skip', got {nan_policy!r}")
        self.net = FERNetConfig.coerce(net if net is not None else self.default_net())
        # output_dir belongs to this run, not to the model; optimiser and scheduler factories are not plain data
        # (checkpoints are read with weights_only=True by Lightning's CLI): keep them out of the hyper-parameters
        self.save_hyperparameters(ignore=["output_dir", "optimizer", "scheduler"])
        self.hparams["net"] = self.net.to_dict()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.output_dir = output_dir
        self.class_names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
        self.val_metrics = FERMetrics(num_classes, self.class_names)
        self.test_metrics = FERMetrics(num_classes, self.class_names)
        self.register_buffer("skipped_nonfinite", torch.zeros((), dtype=torch.long))
        self.last_results: dict[str, dict[str, Any]] = {}

    # -- model -----------------------------------------------------------------------------------------
    def default_net(self) -> FERNetConfig:
        """The architecture used when ``net`` is not given (override to change a method's default pool)."""
        return FERNetConfig()

    def build_model(self) -> nn.Module:
        """Override to build the method's network. Called once, lazily (see :meth:`configure_model`), after every
        ``__init__`` in the class chain has run, so a subclass's own attributes are available here.

        The default is ``self.net.build(num_classes, in_chans, img_size)``: a :class:`ferkit.models.FERNet`.
        Evaluation and prediction call ``self(x)``, so the returned module's ``forward(x)`` must give logits.
        """
        h = self.hparams
        return self.net.build(num_classes=h.num_classes, in_chans=h.in_chans, img_size=h.img_size)

    @property
    def model(self) -> nn.Module:
        """The network (built by :meth:`build_model` on first access)."""
        if "model" not in self._modules:
            self._modules["model"] = self.build_model()
        return self._modules["model"]

    def configure_model(self) -> None:
        """Lightning's hook (called by the Trainer and by ``load_from_checkpoint`` before weights are loaded):
        builds the network. A subclass that builds more modules from the network's shapes extends it."""
        self.model  # noqa: B018 (builds it)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the inference network (evaluation, prediction and export use it)."""
        return self.model(x)

    def evaluation_logits(self, x: torch.Tensor) -> torch.Tensor:
        """What validation, test and prediction score: ``self(x)``, or with ``eval_flip`` the log of the mean of
        the softmax over ``x`` and its horizontal mirror (log-probabilities, so argmax, cross-entropy and softmax
        keep their meaning)."""
        logits = self(x)
        if not self.hparams.get("eval_flip", False):
            return logits
        probs = 0.5 * (torch.softmax(logits.float(), dim=1) + torch.softmax(self(x.flip(-1)).float(), dim=1))
        return probs.clamp_min(1e-12).log()

    # With ``channels_last``, the batch-start hooks put the module (once) and the batch's image tensors in the
    # channels-last format. (Not ``on_after_batch_transfer``: overriding it makes Lightning warn whenever a data
    # module is given.) The batches are dicts, converted in place.
    @property
    def uses_channels_last(self) -> bool:
        """Whether batches and weights go channels-last: ``channels_last`` when set, else whether the attached
        trainer runs on the CPU in bf16 (False without a trainer)."""
        choice = self.hparams.get("channels_last")
        if choice is not None:
            return bool(choice)
        if self._trainer is None:
            return False
        return self.device.type == "cpu" and str(getattr(self.trainer, "precision", "")).startswith("bf16")

    def _channels_last(self, batch: Any) -> None:
        if not self.uses_channels_last:
            return
        if not getattr(self, "_channels_last_applied", False):
            self.to(memory_format=torch.channels_last)  # in place: the optimiser keeps the same parameters
            self._channels_last_applied = True
        if isinstance(batch, dict):
            batch.update(_to_channels_last(batch))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._channels_last(batch)

    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._channels_last(batch)

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._channels_last(batch)

    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._channels_last(batch)

    # -- training --------------------------------------------------------------------------------------
    def classification_loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The supervised term: cross-entropy with the batch's ``soft_label`` distributions when it carries them,
        else with its hard ``label`` (both with ``label_smoothing``). Override to change the supervised loss."""
        target = batch["soft_label"] if "soft_label" in batch else batch["label"]
        return F.cross_entropy(logits, target, label_smoothing=self.hparams.label_smoothing)

    def check_finite(self, loss: torch.Tensor, batch: dict[str, Any]) -> bool:
        """True if ``loss`` is finite; otherwise raise or count a skip, per ``nan_policy``. Call it in
        ``training_step`` and return None when it is False (Lightning then skips the batch)."""
        if torch.isfinite(loss).all():
            return True
        idx = batch.get("index")
        where = f"epoch {self.current_epoch}, step {self.global_step}"
        if idx is not None:
            where += f", dataset indices {idx[:8].tolist()}{'...' if len(idx) > 8 else ''}"
        if self.hparams.nan_policy == "raise":
            raise NonFiniteLossError(f"non-finite training loss ({loss.detach().item()}) at {where}; lower the learning rate, "
                                     "check the inputs, or pass --model.init_args.nan_policy skip to skip such batches")
        self.skipped_nonfinite += 1
        log.warning("skipping batch with non-finite loss at %s (%d skipped so far)", where, int(self.skipped_nonfinite))
        self.log("train/skipped_nonfinite", self.skipped_nonfinite.float())
        return False

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        """One optimisation step's loss. Override for a method's losses; keep logging ``train/loss``.

        The batch is a dict with ``image``, ``label``, ``index`` and, depending on the data, ``soft_label``,
        ``image_strong``, ``landmarks``, ``clean_label``. Return None to skip the batch.
        """
        logits = self(batch["image"])
        loss = self.classification_loss(logits, batch)
        if not self.check_finite(loss, batch):
            return None
        self.log_train("train/loss", loss, batch_size=logits.shape[0], prog_bar=True)
        self.log_train_accuracy(logits, batch)
        return loss

    def log_train(self, name: str, value: torch.Tensor | float, batch_size: int, prog_bar: bool = False,
                  **kw: Any) -> None:
        """Log a training statistic per step and as its mean over the epoch's samples.

        Lightning shows the two as ``<name>_step`` and ``<name>_epoch``; at the epoch's end ``<name>`` in
        ``trainer.callback_metrics`` is the epoch mean, so a per-epoch history (the benchmark harness's, a callback's)
        holds the whole epoch and not its last batch. Under DDP the epoch mean is this rank's unless ``sync_dist=True``.
        """
        self.log(name, value, batch_size=batch_size, prog_bar=prog_bar, on_step=True, on_epoch=True, **kw)

    def log_train_accuracy(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        """Log ``train/acc`` against the given labels (per step and as the epoch mean, :meth:`log_train`) and, when
        the batch carries ``clean_label`` (synthetic or real noise with a known truth), how far the network has
        memorised the wrong labels, as epoch means over the flipped samples: ``memorisation/flipped_fit`` (predicted
        as the wrong given label) and ``memorisation/flipped_clean`` (predicted as the true one). Rising
        ``flipped_fit`` is CE over-fitting noise."""
        pred = logits.detach().argmax(1)
        y = batch["label"]
        self.log_train("train/acc", (pred == y).float().mean(), batch_size=logits.shape[0], prog_bar=True)
        clean = batch.get("clean_label")
        if clean is None:
            return
        flipped = (clean >= 0) & (clean != y)  # clean_label -1: no known truth for that sample
        n = int(flipped.sum())
        if n:
            self.log("memorisation/flipped_fit", (pred[flipped] == y[flipped]).float().mean(), on_step=False,
                     on_epoch=True, batch_size=n)
            self.log("memorisation/flipped_clean", (pred[flipped] == clean[flipped]).float().mean(), on_step=False,
                     on_epoch=True, batch_size=n)

    # -- evaluation ------------------------------------------------------------------------------------
    def _eval_step(self, batch: dict[str, torch.Tensor], metrics: FERMetrics, stage: str) -> None:
        logits = self.evaluation_logits(batch["image"])
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
        """Where reports go: ``output_dir``, else the logger's run folder, else None (nothing written)."""
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
        """``{"index", "probs"[, "label"]}`` per batch (written to CSV by :class:`ferkit.callbacks.PredictionCSVWriter`).

        The softmax is taken in float32: under bf16 autocast on the CPU it would stay bf16, whose 8-bit mantissa can
        round two close probabilities to one value, and the arg-max of the tie (the lower class) would then differ from
        the arg-max of the logits that validation and test score."""
        probs = torch.softmax(self.evaluation_logits(batch["image"]).float(), dim=1)
        out = {"index": batch["index"], "probs": probs}
        if "label" in batch:
            out["label"] = batch["label"]
        return out

    # -- optimisation ----------------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Parameters to optimise, given to the optimiser factory. Default: two groups, the weights with the
        optimiser's weight decay, and norms, biases and scalars (e.g. ARM's alpha) with none."""
        decay, no_decay = [], []
        for p in self.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def build_optimizer(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        """The optimiser from the factory, with PyTorch's fused kernel where the optimiser has one (Adam, AdamW, SGD,
        ...), the config leaves ``fused`` unset and the parameters' device supports it. The fused kernel applies the
        same update as the per-parameter loop PyTorch uses on the CPU by default (equal to float rounding), in one
        pass over the weights: on this project's 2-core CPU a ResNet-18 step at 48 px took 10-13 % less time
        (``benchmarks/fused_optimizer.py``). Set ``fused: false`` in the optimiser's ``init_args`` to keep the loop.
        Not chosen when a gradient scaler (16-bit mixed precision) and gradient clipping are both in use, which
        Lightning refuses with a fused optimiser."""
        if _unset_argument(self.optimizer_factory, "fused") and not self._clips_scaled_gradients():
            try:
                opt = self.optimizer_factory(groups, fused=True)
            except (RuntimeError, ValueError, TypeError) as err:  # a device or dtype without the fused kernel
                log.info("optimiser: the fused kernel is not available here (%s); using the per-parameter loop", err)
            else:
                log.info("optimiser: %s with PyTorch's fused kernel", type(opt).__name__)
                return opt
        return self.optimizer_factory(groups)

    def _clips_scaled_gradients(self) -> bool:
        trainer = self._trainer
        if trainer is None:
            return False
        plugin = getattr(trainer, "precision_plugin", None)
        return bool(getattr(trainer, "gradient_clip_val", None)) and getattr(plugin, "scaler", None) is not None

    def on_train_start(self) -> None:
        # the kernel is a speed choice, not training state: a run resumed from a checkpoint written with the
        # per-parameter loop (Optimizer.load_state_dict restores the checkpoint's choice) continues with the kernel
        # chosen now
        for opt in self.trainer.optimizers:
            fused = opt.defaults.get("fused")
            for group in opt.param_groups:
                if "fused" in group and group["fused"] != fused:
                    group["fused"] = fused
                    if fused:  # the kernel keeps each step count as a float32 tensor beside its parameter
                        group["foreach"] = None
                        for p in group["params"]:
                            step = opt.state.get(p, {}).get("step")
                            if torch.is_tensor(step):
                                opt.state[p]["step"] = step.to(device=p.device, dtype=torch.float32)

    def configure_optimizers(self):
        opt = self.build_optimizer(self.parameter_groups())
        if self.scheduler_factory is None:
            return opt
        kwargs = {}
        if _unset_total_steps(self.scheduler_factory):
            kwargs["total_steps"] = max(int(self.trainer.estimated_stepping_batches), 1)
        sched = self.scheduler_factory(opt, **kwargs)
        interval = getattr(sched, "interval", "step" if isinstance(sched, torch.optim.lr_scheduler.OneCycleLR) else "epoch")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": interval}}

    def lr_scheduler_step(self, scheduler, metric) -> None:
        if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR) and scheduler.last_epoch + 1 > scheduler.total_steps:
            raise RuntimeError(
                f"the one-cycle learning-rate schedule was planned for {scheduler.total_steps} steps and is over. When "
                "resuming, keep trainer.max_epochs of the run you resume; to train longer, start a new run from the "
                "checkpoint's weights or use another scheduler")
        super().lr_scheduler_step(scheduler, metric)

    # -- checkpoints -----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ferkit"] = {"version": ferkit.__version__, "class_names": self.class_names,
                                "num_classes": self.hparams.num_classes, "model_class": type(self).__qualname__,
                                "class_path": f"{type(self).__module__}.{type(self).__qualname__}"}
        # the model-side random streams (dropout, random choices in a method): restored on resume, so a resumed
        # run continues them exactly (the data side is seeded per epoch and needs nothing here)
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        checkpoint["ferkit_rng"] = {"torch": torch.get_rng_state(), "python": random.getstate(),  # plain types:
                                    "numpy": (name, keys.tolist(), pos, has_gauss, gauss)}  # weights_only loads

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("ferkit")
        if meta and meta.get("class_names") and list(meta["class_names"]) != self.class_names:
            raise ValueError(f"checkpoint was trained with classes {meta['class_names']} but this model has {self.class_names}")
        rng = checkpoint.get("ferkit_rng")
        if rng is not None and self._trainer is not None and self.trainer.state.fn == "fit":
            torch.set_rng_state(rng["torch"])
            name, keys, pos, has_gauss, gauss = rng["numpy"]
            np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
            random.setstate(rng["python"])
