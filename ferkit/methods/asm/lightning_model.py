"""ASM as a LightningModule: two networks, a warm-up, per-epoch adaptive sample mining, Tri-Regularization.

Adaptive Sample Mining (Zhang et al., PRCV 2023), trained with MAN's Tri-Regularization. In epochs ``e`` (1-based):

* ``e <= warmup_epochs``: ``L = 1/2 [CE(z1, y) + CE(z2, y)]`` on every sample;
* every later epoch starts by mining: the two networks' class probabilities on the training set give per-class
  adaptive thresholds and a clean / ambiguous / noisy split (:class:`ferkit.miners.ASMMiner`). The probabilities
  come from an eval-mode pass over the training set (``stats="extra_pass"``, as in the paper) or, cheaper, from the
  previous epoch's training forwards (``stats="train_forward"``);
* each step runs one forward per network over [weak views of the batch; strong views of its noisy samples] and
  :class:`ferkit.losses.TriRegularization` masked by subset.

Inference uses ``1/2 (z1 + z2)`` (:class:`ASMModel`). Under DDP the statistics are gathered by dataset index, so
every rank holds the same thresholds and split; all per-sample state lives in the miner's registered buffers and
comes back exactly on resume. The judging pass runs over the data module's ``judge_dataloader``. The mining pass is timed by Lightning's profiler (``asm_mining``; e.g.
``--trainer.profiler simple``).
"""
from __future__ import annotations

import importlib
import logging
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from ferkit.losses.tri_regularization import TriRegularization
from ferkit.methods.asm.torch_model import ASMModel
from ferkit.methods.base import FERModule
from ferkit.miners import ASMMiner, MANMiner
from ferkit.miners.split import SUBSET_NAMES, SampleSplit, detection_scores, detection_scores_per_class
from ferkit.models import FERNetConfig
from ferkit.state.distributed import broadcast, is_distributed

log = logging.getLogger(__name__)

__all__ = ["ASMClassifier", "asm_optimizer", "asm_scheduler"]


def asm_optimizer(params) -> torch.optim.Optimizer:
    """The recipe of ASM / MAN: Adam, lr 1e-3, weight decay 1e-4."""
    return torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4)


def asm_scheduler(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning rate times 0.9 after every epoch."""
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)


def _resolve_callable(fn: str | Callable | None) -> Callable | None:
    """``"package.module:function"`` or ``"package.module.function"`` -> the function."""
    if fn is None or callable(fn):
        return fn
    mod, _, attr = fn.partition(":") if ":" in fn else fn.rpartition(".")
    try:
        return getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"threshold_fn={fn!r}: cannot import it; give 'package.module:function'") from err


class ASMClassifier(FERModule):
    """Adaptive Sample Mining (Zhang et al., PRCV 2023) with MAN's Tri-Regularization; two networks from ``net``.

    Args (besides :class:`ferkit.methods.FERModule`'s):
        warmup_epochs: epochs of plain CE before mining starts (paper: 10 of 100).
        stats: ``"extra_pass"`` (paper: judge the training set at the start of each epoch) or ``"train_forward"``.
        judge_transform: ``"eval"`` (no augmentation) or ``"weak"`` (the training weak view, as MAN does).
        judge_batch_size: batch size of the judging pass (default: the data module's evaluation batch size).
        t_clean / t_noisy: base thresholds (0.8 / 0.2). threshold_momentum: EMA of the class means (0.9).
        threshold_norm: ``"max"`` | ``"none"`` | ``"fixed"``. threshold_fn: a replacement threshold rule,
            ``"pkg.module:function"`` (see :class:`ferkit.state.ClassThresholds`).
        rule: ``"asm"`` (thresholds) or ``"man"`` (argmax agreement of the two networks).
        omega / consistency_weight: weights of the ambiguous and noisy terms (0.6 / 1.0).
        lambda_max / beta / ramp_end_frac / ramp_epochs: the mutual-learning ramp (0.9 / 0.65 / 0.9 / max_epochs).
        num_train_samples: the training-set length, if known; otherwise read from the data module in ``setup``.
    """

    def __init__(
        self,
        net: FERNetConfig | None = None,
        warmup_epochs: int = 10,
        stats: Literal["extra_pass", "train_forward"] = "extra_pass",
        judge_transform: Literal["eval", "weak"] = "eval",
        judge_batch_size: int | None = None,
        t_clean: float = 0.8,
        t_noisy: float = 0.2,
        threshold_momentum: float = 0.9,
        threshold_norm: Literal["max", "none", "fixed"] = "max",
        threshold_fn: str | None = None,
        rule: Literal["asm", "man"] = "asm",
        omega: float = 0.6,
        consistency_weight: float = 1.0,
        lambda_max: float = 0.9,
        beta: float = 0.65,
        ramp_end_frac: float = 0.9,
        ramp_epochs: int | None = None,
        num_train_samples: int | None = None,
        optimizer: OptimizerCallable = asm_optimizer,
        scheduler: LRSchedulerCallable | None = asm_scheduler,
        **kwargs: Any,
    ) -> None:
        for name, value, options in (("stats", stats, ("extra_pass", "train_forward")),
                                     ("judge_transform", judge_transform, ("eval", "weak"))):
            if value not in options:
                raise ValueError(f"ASMClassifier: {name} must be one of {options}, got {value!r}")
        if warmup_epochs < 0:
            raise ValueError(f"ASMClassifier: warmup_epochs must be >= 0, got {warmup_epochs}")
        super().__init__(net, optimizer=optimizer, scheduler=scheduler, **kwargs)
        h = self.hparams
        miner_cls = MANMiner if rule == "man" else ASMMiner  # MAN: argmax agreement of the two networks
        self.miner = miner_cls(h.num_classes, num_samples=num_train_samples or 0, num_networks=2, t_clean=t_clean,
                               t_noisy=t_noisy, momentum=threshold_momentum, norm=threshold_norm,
                               threshold_fn=_resolve_callable(threshold_fn))
        self.tri = TriRegularization(omega=omega, gamma=consistency_weight, lambda_max=lambda_max, beta=beta,
                                     ramp_end_frac=ramp_end_frac, label_smoothing=h.label_smoothing)
        # 1-based epoch whose training-forward statistics the miner's accumulator holds (train_forward)
        self.register_buffer("stats_epoch", torch.zeros((), dtype=torch.long))

    def build_model(self) -> ASMModel:
        h = self.hparams
        return ASMModel(self.net, num_classes=h.num_classes, in_chans=h.in_chans, img_size=h.img_size)

    @property
    def epoch(self) -> int:
        """The absolute 1-based epoch being trained."""
        return int(self.current_epoch) + 1

    def _train_set(self):
        dm = getattr(self.trainer, "datamodule", None)
        return getattr(dm, "train_set", None) if dm is not None else None

    def setup(self, stage: str) -> None:
        """Size the miner for the training set (a checkpoint for another training set is refused)."""
        if stage != "fit":
            return
        ds = self._train_set() if self._trainer is not None else None
        n = len(ds) if ds is not None else self.hparams.num_train_samples
        if n is None:
            raise RuntimeError("ASMClassifier needs the training-set length: train with a FERDataModule or pass "
                               "model.num_train_samples")
        if self.miner.num_samples != n:
            if self.miner.num_samples and self.miner.has_split:
                raise ValueError(f"ASM's miner holds state for {self.miner.num_samples} training samples but the training "
                                 f"set has {n}: train on the same data (train_limit, label noise, seed) or start a new run")
            self.miner.resize(n)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("state_dict", {}).get("miner.subset.values")
        if saved is not None and self.miner.num_samples not in (0, saved.shape[0]):
            raise ValueError(f"the checkpoint's ASM miner covers {saved.shape[0]} training samples but this run's training "
                             f"set has {self.miner.num_samples}: resume with the same data settings (train_limit, noise, seed)")

    # -- mining ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def judge(self, loader) -> None:
        """Feed both networks' probabilities on every batch of ``loader`` to the miner (eval mode, no grad).

        Under DDP, rank 0's BatchNorm running statistics are copied to every rank first (each rank updated its own
        since DDP's last broadcast), so every rank judges with the same network.
        """
        if is_distributed():
            for buf in self.model.buffers():
                buf.copy_(broadcast(buf, src=0))
        was_training = self.model.training
        self.model.eval()
        try:
            for batch in loader:
                z1, z2 = self.model.forward_pair(batch["image"].to(self.device, non_blocking=True))
                probs = torch.stack([F.softmax(z1.float(), 1), F.softmax(z2.float(), 1)], dim=1)
                self.miner.accumulate(batch["index"].to(self.device), probs, batch["label"].to(self.device))
        finally:
            self.model.train(was_training)

    def mine(self) -> SampleSplit:
        """The split for this epoch: judge the training set first (``extra_pass``), or use the statistics the
        previous epoch's training steps accumulated (``train_forward``)."""
        if self.hparams.stats == "extra_pass":
            self.miner.reset_observations()
            h = self.hparams
            self.judge(self.trainer.datamodule.judge_dataloader(preset=h.judge_transform, batch_size=h.judge_batch_size))
        return self.miner.mine(epoch=self.epoch)

    def on_train_epoch_start(self) -> None:
        e, h = self.epoch, self.hparams
        if e > h.warmup_epochs and int(self.miner.mined_epoch) != e:
            if h.stats == "train_forward" and int(self.stats_epoch) != e - 1:
                log.warning("ASM: no training-forward statistics of epoch %d (resumed from an epoch-boundary checkpoint?): "
                            "mining from the stored probabilities", e - 1)
            with self.trainer.profiler.profile("asm_mining"):
                self.mine()
            self._log_mining()
        if h.stats == "train_forward" and int(self.stats_epoch) != e:
            self.miner.reset_observations()  # start this epoch's statistics (kept on a mid-epoch resume)
            self.stats_epoch.fill_(e)

    def _log_mining(self) -> None:
        summary = self.miner.summary(self.class_names)
        for k, name in enumerate(self.class_names):
            self.log(f"asm/t_clean/{name}", float(self.miner.thresholds.clean[k]), sync_dist=True)
            self.log(f"asm/t_noisy/{name}", float(self.miner.thresholds.noisy[k]), sync_dist=True)
            for sub in SUBSET_NAMES:
                self.log(f"asm/n_{sub}/{name}", float(summary["counts_per_class"][sub][name]), sync_dist=True)
        n, c = max(self.miner.num_samples, 1), summary["counts"]
        for sub in SUBSET_NAMES:
            self.log(f"asm/frac_{sub}", c[sub] / n, sync_dist=True)
        ds = self._train_set()
        if getattr(ds, "clean_labels", None) is not None and len(ds) == self.miner.num_samples:  # synthetic noise
            given = torch.as_tensor(np.asarray(ds.labels))
            clean = torch.as_tensor(np.asarray(ds.clean_labels))
            known = clean >= 0  # clean_label -1: no known truth, scored neither as flipped nor as correct
            flipped, split = known & (given != clean), self.miner.split.to("cpu")
            scores = {"": detection_scores(split, flipped, within=known)}
            # per given class: where the class-wise thresholds find the wrong labels and where they do not
            scores.update({f"/{name}": s for name, s in
                           detection_scores_per_class(split, flipped, torch.where(known, given, -1),
                                                      self.class_names).items()})
            for suffix, per in scores.items():
                for key, value in per.items():
                    # NaN (e.g. no sample of a class in the noisy subset this epoch) is logged too, so that an epoch
                    # never shows the previous epoch's value (Lightning keeps the last logged one)
                    if key in ("noisy_precision", "noisy_recall", "noisy_f1", "clean_purity", "flip_rate"):
                        self.log(f"asm/{key}{suffix}", float(value), sync_dist=True)
        if c["clean"] == 0 and self.trainer.is_global_zero:
            if c["ambiguous"] == 0:
                what = "every sample is noisy, so no label supervises this epoch (only the networks' consistency does)"
            else:
                lam = self.tri.ramp(self.epoch, self.ramp_epochs())
                what = (f"labels supervise only through the ambiguous term, weighted (1 - lambda) * omega = "
                        f"{(1 - lam) * self.tri.omega:.2f}")
            log.warning("ASM epoch %d: the clean subset is empty (clean thresholds up to %.2f): %s. The networks are not "
                        "confident enough after the warm-up: start from pretrained weights, lengthen warmup_epochs, or "
                        "lower t_clean.", self.epoch, float(self.miner.thresholds.clean.max()), what)
        log.info("ASM epoch %d: clean %d, ambiguous %d, noisy %d of %d", self.epoch, c["clean"], c["ambiguous"],
                 c["noisy"], n)

    # -- training --------------------------------------------------------------------------------------
    def ramp_epochs(self) -> int:
        e = self.hparams.ramp_epochs or (self.trainer.max_epochs if self._trainer is not None else None)
        if not e or e < 1:
            raise ValueError("ASM needs E_max for the lambda ramp: set trainer.max_epochs or model.ramp_epochs")
        return int(e)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        x, y, idx = batch["image"], batch["label"], batch["index"]
        bs = x.shape[0]
        mining = self.epoch > self.hparams.warmup_epochs and int(self.miner.mined_epoch) != 0
        split = self.miner.split_for(idx) if mining else None
        noisy = split.noisy.to(x.device) if split is not None else None
        z1s = z2s = None
        if noisy is not None and bool(noisy.any()):
            if "image_strong" not in batch:
                raise KeyError("ASM needs a strong view for its noisy samples: set data.strong_preset (e.g. 'strong') so "
                               "training items carry 'image_strong'")
            # one forward per network over [weak batch; strong views of the noisy samples]: BatchNorm updates its
            # running statistics once per step from a full batch, not from a handful of heavily augmented views
            z1a, z2a = self.model.forward_pair(torch.cat([x, batch["image_strong"][noisy]], 0))
            z1, z1s, z2, z2s = z1a[:bs], z1a[bs:], z2a[:bs], z2a[bs:]
        else:
            z1, z2 = self.model.forward_pair(x)
        if self.hparams.stats == "train_forward" and self.epoch >= self.hparams.warmup_epochs:
            probs = torch.stack([F.softmax(z1.detach().float(), 1), F.softmax(z2.detach().float(), 1)], dim=1)
            self.miner.accumulate(idx, probs, y)
        if split is None:
            ls = self.hparams.label_smoothing
            loss = 0.5 * (F.cross_entropy(z1, y, label_smoothing=ls) + F.cross_entropy(z2, y, label_smoothing=ls))
            parts = None
        else:
            parts = self.tri(z1, z2, z1s, z2s, y, split, epoch=self.epoch, max_epochs=self.ramp_epochs())
            loss = parts.total
        if not self.check_finite(loss, batch):
            return None
        # under DDP a rank's Tri-Regularization value is its share times the world size: the mean is the global loss
        self.log_train("train/loss", loss, batch_size=bs, prog_bar=True, sync_dist=is_distributed())
        self.log_train_accuracy((z1 + z2) * 0.5, batch)
        if parts is not None:
            # each term is a mean over its subset: the epoch's value weights each batch by that subset's size there
            # (0 where the subset is empty; NaN for an epoch in which it always was)
            for (name, value), n in zip(parts.terms.items(), parts.counts):
                self.log(f"train/loss_{name}", value, batch_size=n, on_step=False, on_epoch=True, sync_dist=True)
            self.log("asm/lambda", parts.lambda_, on_step=False, on_epoch=True, sync_dist=True)
        return loss
