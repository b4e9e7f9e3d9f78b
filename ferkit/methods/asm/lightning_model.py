"""ASM as a LightningModule: two networks, warm-up, per-epoch adaptive sample mining, Tri-Regularization.

METHODS.md section 2. Training, in epochs (1-based, ``e``):

* ``e <= warmup_epochs``: ``L = 1/2 [CE(z1, y) + CE(z2, y)]`` on every sample;
* every later epoch starts by **mining**: the per-sample class probabilities of both networks give per-class
  adaptive thresholds and a clean / ambiguous / noisy split of the whole training set
  (:class:`ferkit.miners.ASMMiner`). The probabilities come from

  - ``stats="extra_pass"`` (the paper): a no-grad, eval-mode pass over the training set at the start of the
    epoch, with the ``judge_transform`` (``"eval"``: no augmentation, default; ``"weak"``: the training weak view,
    as MAN does);
  - ``stats="train_forward"`` (cheaper deviation): the softmax of the weak-view training forward passes of epoch
    ``e - 1`` (train-mode networks, augmented images), accumulated by dataset index at no extra forward cost;

* each step then does one forward per network over the weak views of the batch concatenated with the strong views
  of its noisy samples only, and :class:`ferkit.losses.TriRegularization` masked by subset (never one forward per
  subset; BatchNorm updates its running statistics once per step, from that whole batch).

Inference (``forward``, validation, test, predict) uses ``1/2 (z1 + z2)``; :func:`ferkit.methods.asm.export_inference_model`
returns that model alone.

DDP: the statistics are all-gathered by index before they are written, so every rank holds the same
probabilities, thresholds and split whatever the sampler's sample-to-rank assignment; the loss normalises each
subset by its size over all ranks. Per-sample state lives in the ``miner`` submodule's registered buffers: a
checkpoint (even one saved mid-epoch) restores it exactly.

Logged each mined epoch: ``asm/t_clean/<class>``, ``asm/t_noisy/<class>``, ``asm/n_<subset>/<class>``,
``asm/frac_<subset>``, and, when the training set keeps its clean labels (synthetic noise), ``asm/noisy_precision``,
``asm/noisy_recall`` (the noisy subset against the flipped samples) and ``asm/clean_purity``. Each epoch also logs
``asm/mining_seconds`` and ``asm/mining_fraction`` (of the training time of the epoch).
"""
from __future__ import annotations

import importlib
import logging
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ferkit.losses.tri_regularization import LossOutput, TriRegularization
from ferkit.methods.asm.torch_model import ASMNet
from ferkit.methods.classifier import FERClassifier
from ferkit.miners.asm import ASMMiner
from ferkit.miners.split import SUBSET_NAMES, SampleSplit, detection_scores
from ferkit.state.distributed import broadcast, get_rank, get_world_size, is_distributed

log = logging.getLogger(__name__)

__all__ = ["ASM", "STATS_OPTIONS", "JUDGE_TRANSFORMS"]

STATS_OPTIONS = ("extra_pass", "train_forward")
JUDGE_TRANSFORMS = ("eval", "weak")


def _resolve_callable(fn: str | Callable | None) -> Callable | None:
    """``"package.module:function"`` or ``"package.module.function"`` -> the function."""
    if fn is None or callable(fn):
        return fn
    mod, _, attr = fn.partition(":") if ":" in fn else fn.rpartition(".")
    try:
        return getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"threshold_fn={fn!r}: cannot import it; give 'package.module:function'") from err


class ASM(FERClassifier):
    """Adaptive Sample Mining (Zhang et al., PRCV 2023) with MAN's Tri-Regularization.

    Args (besides those of :class:`ferkit.methods.classifier.FERClassifier`, whose network arguments build both
    networks):
        warmup_epochs: epochs of plain CE before mining starts (paper: 10 of 100).
        stats: ``"extra_pass"`` (paper) or ``"train_forward"`` (see the module docstring).
        judge_transform: ``"eval"`` or ``"weak"``, the images of the extra pass. judge_batch_size: its batch size
            (default: the data module's evaluation batch size).
        t_clean / t_noisy: base thresholds (0.8 / 0.2). threshold_momentum: EMA of the class means (0.9).
        threshold_norm: ``"max"`` | ``"none"`` | ``"fixed"``. threshold_fn: a replacement threshold rule, as an
            import path ``"pkg.module:function"`` (see :class:`ferkit.state.thresholds.ClassThresholds`).
        rule: ``"asm"`` (thresholds) or ``"man"`` (argmax agreement).
        omega / consistency_weight: the weights omega (0.6) and gamma (1.0) of the ambiguous and noisy terms.
        lambda_max / beta / ramp_end_frac: the mutual-learning ramp (0.9 / 0.65 / 0.9);
        ramp_epochs: ``E_max`` of the ramp (default: ``trainer.max_epochs``).
        num_train_samples: the training-set length, if known; otherwise taken from the data module in ``setup``.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        pool: str = "avg",
        pool_kwargs: dict[str, Any] | None = None,
        warmup_epochs: int = 10,
        stats: str = "extra_pass",
        judge_transform: str = "eval",
        judge_batch_size: int | None = None,
        t_clean: float = 0.8,
        t_noisy: float = 0.2,
        threshold_momentum: float = 0.9,
        threshold_norm: str = "max",
        threshold_fn: str | None = None,
        rule: str = "asm",
        omega: float = 0.6,
        consistency_weight: float = 1.0,
        lambda_max: float = 0.9,
        beta: float = 0.65,
        ramp_end_frac: float = 0.9,
        ramp_epochs: int | None = None,
        num_train_samples: int | None = None,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        scheduler: str = "exponential",
        gamma: float = 0.9,
        **kwargs: Any,
    ) -> None:
        if stats not in STATS_OPTIONS:
            raise ValueError(f"ASM: stats must be one of {STATS_OPTIONS}, got {stats!r}")
        if judge_transform not in JUDGE_TRANSFORMS:
            raise ValueError(f"ASM: judge_transform must be one of {JUDGE_TRANSFORMS}, got {judge_transform!r}")
        if warmup_epochs < 0:
            raise ValueError(f"ASM: warmup_epochs must be >= 0, got {warmup_epochs}")
        super().__init__(backbone=backbone, pool=pool, pool_kwargs=pool_kwargs, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, scheduler=scheduler, gamma=gamma, **kwargs)
        h = self.hparams
        self.miner = ASMMiner(h.num_classes, num_samples=num_train_samples or 0, num_networks=2, t_clean=t_clean,
                              t_noisy=t_noisy, momentum=threshold_momentum, norm=threshold_norm,
                              threshold_fn=_resolve_callable(threshold_fn), rule=rule)
        self.tri = TriRegularization(omega=omega, gamma=consistency_weight, lambda_max=lambda_max, beta=beta,
                                     ramp_end_frac=ramp_end_frac, label_smoothing=h.label_smoothing)
        # 1-based epoch whose training-forward statistics the miner's accumulator holds (train_forward)
        self.register_buffer("stats_epoch", torch.zeros((), dtype=torch.long))
        self.mining_history: list[dict[str, Any]] = []
        self._epoch_t0 = 0.0
        self._last_batch_end = 0.0
        self._mining_seconds = 0.0
        self._mined_this_epoch = False

    # -- model -----------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        h = self.hparams
        return ASMNet(backbone=h.backbone, pool=h.pool, num_classes=h.num_classes, in_chans=h.in_chans, img_size=h.img_size,
                      pretrained=h.pretrained, small_input=h.small_input, dropout=h.dropout, pool_kwargs=h.pool_kwargs)

    @property
    def epoch(self) -> int:
        """The absolute 1-based epoch being trained."""
        return int(self.current_epoch) + 1

    def in_warmup(self) -> bool:
        return self.epoch <= self.hparams.warmup_epochs

    # -- data access -----------------------------------------------------------------------------------
    def _train_dataset(self):
        dm = getattr(self.trainer, "datamodule", None)
        ds = getattr(dm, "train_set", None) if dm is not None else None
        if ds is None:
            loader = self.trainer.train_dataloader
            ds = getattr(loader, "dataset", None)
        return ds

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        ds = self._train_dataset() if self._trainer is not None else None
        n = len(ds) if ds is not None else self.hparams.num_train_samples
        if n is None:
            raise RuntimeError("ASM needs the training-set length before training: use a data module with a train_set, or "
                               "pass model.num_train_samples")
        if self.miner.num_samples != n:
            if self.miner.num_samples and self.miner.has_split:
                raise ValueError(f"ASM's miner holds state for {self.miner.num_samples} training samples but the training set "
                                 f"has {n}: train on the same data (data.train_limit, label noise, seed) or start a new run")
            self.miner.resize(n)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("state_dict", {})
        saved = state.get("miner.subset.values")
        if saved is not None and self.miner.num_samples not in (0, saved.shape[0]):
            raise ValueError(f"the checkpoint's ASM miner covers {saved.shape[0]} training samples but this run's training set "
                             f"has {self.miner.num_samples}: resume with the same data settings (train_limit, noise, seed)")
        history = (checkpoint.get("ferkit") or {}).get("asm_history")
        if history is not None:
            self.mining_history = list(history)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["ferkit"]["asm_history"] = self.mining_history

    # -- mining ----------------------------------------------------------------------------------------
    def judge_loader(self, datamodule=None) -> DataLoader:
        """A loader over the training set for the extra judging pass (sharded over ranks, never shuffled).

        ``datamodule``: judge this (set-up) data module's training set instead of the trainer's -- e.g. to judge a
        loaded checkpoint outside ``fit`` (``benchmarks/asm_rule_study.py``).
        """
        from ferkit.data.base import FERDataset, SubsetFER
        from ferkit.data.transforms import FERTransform

        if datamodule is None:
            ds, dm = self._train_dataset(), getattr(self.trainer, "datamodule", None)
        else:
            ds, dm = getattr(datamodule, "train_set", None), datamodule
        dh = getattr(dm, "hparams", {}) if dm is not None else {}
        if not isinstance(ds, FERDataset):
            raise RuntimeError("stats='extra_pass' needs a ferkit FERDataset as the training set (trainer.datamodule.train_set); "
                               "use stats='train_forward' with other datasets")
        size, channels = dh.get("img_size", self.hparams.img_size), dh.get("channels", self.hparams.in_chans)
        common = dict(img_size=size, channels=channels, mean=dh.get("mean"), std=dh.get("std"))
        if self.hparams.judge_transform == "eval":
            tf = FERTransform(preset=dh.get("eval_preset", "eval"), hflip=0.0, **common)
        else:
            tf = FERTransform(preset=dh.get("train_preset", "weak"), hflip=dh.get("hflip", 0.5), **common)
        judge_set = SubsetFER(ds, np.arange(len(ds)), transform=tf)  # same indices, another transform
        sampler = None
        if is_distributed():
            from torch.utils.data.distributed import DistributedSampler

            sampler = DistributedSampler(judge_set, num_replicas=get_world_size(), rank=get_rank(), shuffle=False)
        bs = self.hparams.judge_batch_size or dh.get("eval_batch_size") or dh.get("batch_size") or 256
        return DataLoader(judge_set, batch_size=bs, shuffle=False, sampler=sampler, num_workers=dh.get("num_workers", 0))

    @torch.no_grad()
    def sync_model_buffers(self, src: int = 0) -> None:
        """Copy rank ``src``'s model buffers (BatchNorm running statistics, ...) to every rank.

        Without SyncBatchNorm each rank updates its running statistics from its own batches after DDP's last
        buffer broadcast, so eval-mode judging would differ between ranks. DDP itself broadcasts rank 0's buffers
        at its next forward, so this changes nothing for training.
        """
        for buf in self.model.buffers():
            buf.copy_(broadcast(buf, src=src))

    @torch.no_grad()
    def judge(self, loader) -> None:
        """Feed the networks' probabilities on every batch of ``loader`` to the miner (eval mode, no grad)."""
        if is_distributed():
            self.sync_model_buffers()
        was_training = self.model.training
        self.model.eval()
        try:
            for batch in loader:
                x = batch["image"].to(self.device, non_blocking=True)
                z1, z2 = self.model.forward_pair(x)
                probs = torch.stack([F.softmax(z1.float(), 1), F.softmax(z2.float(), 1)], dim=1)
                self.miner.accumulate(batch["index"].to(self.device), probs, batch["label"].to(self.device))
        finally:
            self.model.train(was_training)

    def mine(self) -> SampleSplit:
        """Mine the split for the current epoch: judge the training set first with ``stats="extra_pass"``, else use the
        statistics accumulated by the previous epoch's training steps."""
        if self.hparams.stats == "extra_pass":
            self.miner.acc_sum.reset()
            self.miner.acc_count.reset()
            self.judge(self.judge_loader())
        split = self.miner.mine(epoch=self.epoch)
        return split

    def on_train_start(self) -> None:
        # Lightning skips on_train_epoch_start when resuming mid-epoch: start the epoch clock here too
        self._epoch_t0 = self._last_batch_end = time.perf_counter()

    def on_train_epoch_start(self) -> None:
        self._epoch_t0 = self._last_batch_end = time.perf_counter()
        self._mining_seconds = 0.0
        self._mined_this_epoch = False
        e = self.epoch
        if e > self.hparams.warmup_epochs and int(self.miner.mined_epoch) != e:
            t0 = time.perf_counter()
            if self.hparams.stats == "train_forward" and int(self.stats_epoch) != e - 1:
                log.warning("ASM: no training-forward statistics of epoch %d (resumed from an epoch-boundary checkpoint?): "
                            "mining from the stored probabilities", e - 1)
            self.mine()
            self._mining_seconds += time.perf_counter() - t0
            self._mined_this_epoch = True
            self._log_mining()
        if self.hparams.stats == "train_forward" and int(self.stats_epoch) != e:
            # start accumulating this epoch's statistics (kept on a mid-epoch resume, where stats_epoch == e)
            self.miner.acc_sum.reset()
            self.miner.acc_count.reset()
            self.stats_epoch.fill_(e)

    def _flipped(self) -> torch.Tensor | None:
        ds = self._train_dataset()
        clean = getattr(ds, "clean_labels", None)
        if clean is None:
            return None
        given = torch.as_tensor(np.asarray(ds.labels), dtype=torch.long)
        return given != torch.as_tensor(np.asarray(clean), dtype=torch.long)

    def _log_mining(self) -> None:
        names = self.class_names
        summary = self.miner.summary(names)
        entry: dict[str, Any] = {"epoch": self.epoch, **summary}
        for k, name in enumerate(names):
            self.log(f"asm/t_clean/{name}", float(self.miner.thresholds.clean[k]), on_epoch=True, sync_dist=True)
            self.log(f"asm/t_noisy/{name}", float(self.miner.thresholds.noisy[k]), on_epoch=True, sync_dist=True)
            for sub in SUBSET_NAMES:
                self.log(f"asm/n_{sub}/{name}", float(summary["counts_per_class"][sub][name]), on_epoch=True, sync_dist=True)
        n = max(self.miner.num_samples, 1)
        for sub in SUBSET_NAMES:
            self.log(f"asm/frac_{sub}", summary["counts"][sub] / n, on_epoch=True, sync_dist=True)
        flipped = self._flipped()
        if flipped is not None and len(flipped) == self.miner.num_samples:
            scores = detection_scores(self.miner.split.to("cpu"), flipped)
            entry["detection"] = scores
            for key in ("noisy_precision", "noisy_recall", "noisy_f1", "clean_purity", "flip_rate"):
                if scores[key] == scores[key]:  # not NaN
                    self.log(f"asm/{key}", scores[key], on_epoch=True, sync_dist=True)
        self.mining_history.append(entry)
        if summary["counts"]["clean"] == 0 and self.trainer.is_global_zero:
            lam = self.tri.ramp(self.epoch, self.ramp_epochs())
            means = [v for v in summary["class_mean_confidence"].values() if v == v]
            log.warning(
                "ASM epoch %d: the clean subset is empty (class mean confidences %.2f..%.2f, clean thresholds up to %.2f): "
                "labels now supervise only through the ambiguous term, weighted (1 - lambda) * omega = %.2f. The networks are "
                "not confident enough after the warm-up: start from pretrained weights, lengthen warmup_epochs, or lower "
                "t_clean.", self.epoch, min(means, default=float("nan")), max(means, default=float("nan")),
                float(self.miner.thresholds.clean.max()), (1 - lam) * self.tri.omega)
        if self.trainer.is_global_zero:
            c = summary["counts"]
            msg = (f"[ferkit] ASM epoch {self.epoch}: clean {c['clean']}, ambiguous {c['ambiguous']}, noisy {c['noisy']} of {n}")
            if "detection" in entry:
                d = entry["detection"]
                msg += f"; noisy-subset precision {d['noisy_precision']:.3f}, recall {d['noisy_recall']:.3f}"
            log.info(msg)

    # -- training --------------------------------------------------------------------------------------
    def warmup_loss(self, z1: torch.Tensor, z2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ls = self.hparams.label_smoothing
        return 0.5 * (F.cross_entropy(z1, y, label_smoothing=ls) + F.cross_entropy(z2, y, label_smoothing=ls))

    def ramp_epochs(self) -> int:
        e = self.hparams.ramp_epochs or (self.trainer.max_epochs if self._trainer is not None else None)
        if not e or e < 1:
            raise ValueError("ASM needs E_max for the lambda ramp: set trainer.max_epochs or model.ramp_epochs")
        return int(e)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        x, y, idx = batch["image"], batch["label"], batch["index"]
        bs = x.shape[0]
        mining = not (self.in_warmup() or int(self.miner.mined_epoch) == 0)
        split = self.miner.split_for(idx) if mining else None
        noisy = split.noisy.to(x.device) if split is not None else None
        z1s = z2s = None
        if noisy is not None and bool(noisy.any()):
            if "image_strong" not in batch:
                raise KeyError("ASM needs a strong view for its noisy samples: set data.strong_preset (e.g. 'strong') so "
                               "training items carry 'image_strong'")
            # one forward per network over [weak batch; strong views of the noisy samples]: BatchNorm then updates its
            # running statistics once per step from a full batch (a separate forward of a handful of strong views would
            # pull the inference statistics towards that tiny, heavily augmented batch)
            z1a, z2a = self.model.forward_pair(torch.cat([x, batch["image_strong"][noisy]], 0))
            z1, z1s, z2, z2s = z1a[:bs], z1a[bs:], z2a[:bs], z2a[bs:]
        else:
            z1, z2 = self.model.forward_pair(x)
        if self.hparams.stats == "train_forward" and self.epoch >= self.hparams.warmup_epochs:
            t0 = time.perf_counter()
            probs = torch.stack([F.softmax(z1.detach().float(), 1), F.softmax(z2.detach().float(), 1)], dim=1)
            self.miner.accumulate(idx, probs, y)
            self._mining_seconds += time.perf_counter() - t0
        if split is None:
            loss = self.warmup_loss(z1, z2, y)
            parts: LossOutput | None = None
        else:
            parts = self.tri(z1, z2, z1s, z2s, y, split, epoch=self.epoch, max_epochs=self.ramp_epochs())
            loss = parts.total
        if not self.check_finite(loss, batch):
            return None
        acc = (((z1 + z2) * 0.5).argmax(1) == y).float().mean()
        # under DDP the Tri-Regularization value of a rank is a share times W: the mean over ranks is the global loss
        self.log("train/loss", loss, prog_bar=True, batch_size=bs, sync_dist=is_distributed())
        self.log("train/acc", acc, prog_bar=True, batch_size=bs)
        if parts is not None:
            self.log("train/loss_clean", parts.clean, batch_size=bs, on_step=False, on_epoch=True, sync_dist=True)
            self.log("train/loss_ambiguous", parts.ambiguous, batch_size=bs, on_step=False, on_epoch=True, sync_dist=True)
            self.log("train/loss_noisy", parts.noisy, batch_size=bs, on_step=False, on_epoch=True, sync_dist=True)
            self.log("asm/lambda", parts.lambda_, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self._last_batch_end = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        train_s = max(self._last_batch_end - self._epoch_t0, 1e-9)
        frac = self._mining_seconds / train_s
        self.log("asm/mining_seconds", self._mining_seconds, on_epoch=True, sync_dist=True)
        self.log("asm/mining_fraction", frac, on_epoch=True, sync_dist=True)
        timing = {"epoch": self.epoch, "train_seconds": train_s, "mining_seconds": self._mining_seconds,
                  "mining_fraction": frac, "mined": self._mined_this_epoch, "stats": self.hparams.stats}
        if self.mining_history and self.mining_history[-1].get("epoch") == self.epoch:
            self.mining_history[-1]["timing"] = timing
        else:
            self.mining_history.append({"epoch": self.epoch, "timing": timing})

    # -- export ----------------------------------------------------------------------------------------
    def export_inference_model(self) -> nn.Module:
        """The averaged two-network model as one eval-mode ``nn.Module`` (see :mod:`ferkit.methods.asm.export`)."""
        from ferkit.methods.asm.export import export_inference_model

        return export_inference_model(self)
