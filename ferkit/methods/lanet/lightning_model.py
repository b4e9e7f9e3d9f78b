"""LA-Net as a LightningModule (Wu & Cui, ICCV 2023): the paper's losses, weights and recipe as defaults.

``L = CE(z, y) + 1.0 L_lmk + 1.0 L_KL + 0.1 L_EL`` with

* ``CE``: cross-entropy with the given (possibly noisy) label;
* ``L_lmk``: Adaptive Wing loss between the predicted and the target Gaussian heatmaps of the 19 points
  (:class:`ferkit.landmarks.HeatmapTargets`; faces without landmarks get weight 0, their share logged as ``train/lmk_missing``);
* ``L_KL``: ``KL(q_tilde || softmax(z))`` with ``q_tilde`` from the label-distribution estimator and its per-sample
  memory (:class:`ferkit.losses.LabelDistributionEstimator`, :class:`ferkit.state.LabelDistributionBank`);
* ``L_EL``: the expression-landmark contrastive loss (:class:`ferkit.losses.ExpressionLandmarkContrastiveLoss`)
  between query heads and a momentum key encoder (:class:`ferkit.layers.LandmarkContrastiveHead`).

Evaluation and prediction run the expression branch only (``forward(x)`` returns logits), so the evaluation of
:class:`~ferkit.methods.FERModule` works unchanged; :func:`ferkit.export.export_inference_model` exports it.

Distributed training: the LDE aggregates over the all-gathered global batch with gradient, and the EL loss uses
gathered keys; every rank updates the memory and the queues with the same gathered data, so they stay identical
without being broadcast. Train with ``Trainer(sync_batchnorm=True)`` as the recipe did (SyncBN).
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Sequence

import numpy as np
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from ferkit.landmarks.heatmaps import HeatmapTargets, get_subset
from ferkit.layers.landmark_contrastive_head import LandmarkContrastiveHead, make_momentum_copy, momentum_update
from ferkit.losses.adaptive_wing import AdaptiveWingLoss
from ferkit.losses.expression_landmark_contrastive import ExpressionLandmarkContrastiveLoss
from ferkit.losses.label_distribution import LabelDistributionEstimator
from ferkit.methods.base import FERModule
from ferkit.methods.lanet.torch_model import LANetModel
from ferkit.methods.schedulers import LinearDecay
from ferkit.metrics.classification import classification_scores
from ferkit.metrics.label_memory import label_memory_stats
from ferkit.models import FERNetConfig
from ferkit.state.label_distribution_bank import LabelDistributionBank

log = logging.getLogger(__name__)

__all__ = ["LANetClassifier", "lanet_optimizer"]


def lanet_optimizer(params) -> torch.optim.Optimizer:
    """LA-Net's recipe: Adam, lr 1e-3, no weight decay."""
    return torch.optim.Adam(params, lr=1e-3, weight_decay=0.0)


class LANetClassifier(FERModule):
    """LA-Net (Wu & Cui, ICCV 2023) for FER under label noise.

    Unlike the other methods, the network is built at the end of ``__init__`` (the heads' sizes come from it):
    a subclass that overrides :meth:`build_model` with its own arguments sets them before ``super().__init__``.

    Args (beyond :class:`~ferkit.methods.FERModule`'s):
        landmark_subset: how the items' landmarks map to heatmap channels: ``"lanet19"`` (19 of the 68 iBUG points,
            default), ``"ibug68"``, a list of 68-point indices, or None (use the items' points as they are,
            ``num_points`` of them).
        num_points: heatmap channels when ``landmark_subset`` is None.
        heatmap_sigma, heatmap_fg_weight, heatmap_fg_thresh: heatmap targets (1.5, 10, 0.2).
        awing_alpha, awing_omega, awing_eps, awing_theta: Adaptive Wing (2.1, 14, 1, 0.5).
        lde_k, lde_momentum, lde_pairs, lde_detach_target: the estimator (8, 0.9, ``"knn"``, False).
        lde_align, lde_align_momentum: ``"given"`` rescales the neighbours' estimate so that its class marginal
            follows the given labels' (a ferkit option against rare classes fading from the memory, not in the
            paper; see :class:`~ferkit.losses.LabelDistributionEstimator`); default ``"none"``, 0.99.
        el_dim: contrastive embedding size (default: the landmark feature size, 64e).
        queue_size, temperature, conf_thresh, key_momentum, el_positives: EL (8192, 0.1, 0.7, 0.999, ``"global"``).
        ce_weight, landmark_weight, kl_weight, el_weight: loss weights (1, 1, 1, 0.1).
        gather_distributed: gather the batch across ranks for LDE / EL under DDP.
        optimizer / scheduler: Adam 1e-3 without weight decay; the learning rate falls linearly to 0 over the run,
            every step (:class:`ferkit.methods.LinearDecay`).
    """

    def __init__(
        self,
        net: FERNetConfig | None = None,
        landmark_subset: str | Sequence[int] | None = "lanet19",
        num_points: int = 19,
        heatmap_sigma: float = 1.5,
        heatmap_fg_weight: float = 10.0,
        heatmap_fg_thresh: float = 0.2,
        awing_alpha: float = 2.1,
        awing_omega: float = 14.0,
        awing_eps: float = 1.0,
        awing_theta: float = 0.5,
        lde_k: int = 8,
        lde_momentum: float = 0.9,
        lde_pairs: str = "knn",
        lde_detach_target: bool = False,
        lde_align: str = "none",
        lde_align_momentum: float = 0.99,
        el_dim: int | None = None,
        queue_size: int = 8192,
        temperature: float = 0.1,
        conf_thresh: float = 0.7,
        key_momentum: float = 0.999,
        el_positives: str = "global",
        ce_weight: float = 1.0,
        landmark_weight: float = 1.0,
        kl_weight: float = 1.0,
        el_weight: float = 0.1,
        gather_distributed: bool = True,
        optimizer: OptimizerCallable = lanet_optimizer,
        scheduler: LRSchedulerCallable | None = LinearDecay,
        **kwargs: Any,
    ) -> None:
        subset = get_subset(landmark_subset)
        self._num_points = subset.num_points if subset is not None else int(num_points)
        super().__init__(net, optimizer=optimizer, scheduler=scheduler, **kwargs)
        num_classes = self.hparams.num_classes
        net = self.model  # built here: the heads' sizes come from it
        self.heatmap_targets = HeatmapTargets(self._num_points, stride=net.heatmap_stride, sigma=heatmap_sigma,
                                              fg_weight=heatmap_fg_weight, fg_thresh=heatmap_fg_thresh, subset=subset)
        self.awing = AdaptiveWingLoss(awing_alpha, awing_omega, awing_eps, awing_theta)
        self.lde = LabelDistributionEstimator(net.num_features, net.lmk_dim, k=lde_k, detach_target=lde_detach_target,
                                              pairs=lde_pairs, gather_distributed=gather_distributed,
                                              align=lde_align, num_classes=num_classes,
                                              align_momentum=lde_align_momentum)
        self.lde_bank = LabelDistributionBank(0, num_classes, momentum=lde_momentum)
        dim = int(el_dim or net.lmk_dim)
        self.el_head = LandmarkContrastiveHead(net.num_features, net.lmk_dim, dim=dim, momentum=key_momentum)
        self.el_loss = ExpressionLandmarkContrastiveLoss(dim=dim, queue_size=queue_size, temperature=temperature,
                                                         conf_thresh=conf_thresh, positives=el_positives,
                                                         gather_distributed=gather_distributed)
        # momentum key encoder: a frozen copy of the network, run in eval mode (BN running statistics copied from
        # the query network), computing only h_expr and h_lmk
        self.key_model = make_momentum_copy(self.model) if el_weight > 0 else None

    # -- model -----------------------------------------------------------------------------------------------------
    def build_model(self) -> LANetModel:
        h = self.hparams
        return LANetModel(self.net, num_classes=h.num_classes, num_points=self._num_points, in_chans=h.in_chans,
                          img_size=h.img_size)

    def setup(self, stage: str) -> None:
        """Initialise the label-distribution memory with the (noisy) training labels (resume then overwrites it)."""
        if stage != "fit" or bool(self.lde_bank.initialized):
            return
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        ds = getattr(dm, "train_set", None)
        if ds is None:
            raise RuntimeError(
                "LANetClassifier needs the training labels to initialise its label-distribution memory: train with a "
                "FERDataModule (its train_set is read in setup), or call model.lde_bank.init_from_labels(labels) "
                "before trainer.fit"
            )
        self.lde_bank.init_from_labels(torch.as_tensor(np.asarray(ds.labels)))
        log.info("LANetClassifier: label-distribution memory initialised for %d training samples", len(self.lde_bank))
        if self.hparams.lde_align != "none" and getattr(dm, "sampler_factory", None) is not None:
            warnings.warn(
                f"LANetClassifier(lde_align={self.hparams.lde_align!r}) keeps each batch's estimate at the given labels' "
                f"class shares, but the data module draws its batches with {type(dm.sampler_factory).__name__}, whose "
                "class shares differ from them: the alignment would undo the sampler's rebalancing. Use one of the two",
                UserWarning, stacklevel=2)

    #: the :func:`ferkit.metrics.label_memory_stats` logged as ``memory/<key>`` at each epoch's end
    MEMORY_LOGGED = ("flipped_ranks_given_first", "flipped_ranks_clean_first", "correct_ranks_given_first",
                     "flip_auroc", "memory_label_accuracy")

    def on_train_epoch_end(self) -> None:
        """Where the training set knows its clean labels (synthetic noise, FER2013 scored against FER+), log how the
        label memory compares with them (``memory/*``): the share of flipped samples it ranks on their given and on
        their true label, of correct ones it keeps, the AUROC of its mass on the given label as a flip detector, the
        share of samples whose memory arg-max is the true label, and that share per true class
        (``memory/recall_<class>``). The memory is the same on every rank, so are
        these values."""
        if not self.uses_auxiliary_losses or not bool(self.lde_bank.initialized):
            return  # the baseline (every auxiliary weight 0) never updates its memory
        dm = getattr(self.trainer, "datamodule", None)
        ds = getattr(dm, "train_set", None)
        clean = getattr(ds, "clean_labels", None)
        if clean is None or len(ds) != len(self.lde_bank):
            return
        stats = label_memory_stats(self.lde_bank.memory, np.asarray(ds.labels), np.asarray(clean))
        for key in self.MEMORY_LOGGED:
            value = stats[key]
            if value is not None and value == value:  # an empty group or an undefined AUROC is not logged
                self.log(f"memory/{key}", float(value), on_epoch=True, sync_dist=True)
        # per true class: the share of its samples whose memory arg-max is that class (a class the memory loses shows
        # here long before it shows in the overall accuracy)
        truth = torch.as_tensor(np.asarray(clean)).long()
        known = truth >= 0
        recall = classification_scores(self.lde_bank.memory.argmax(1).cpu()[known], truth[known],
                                       len(self.class_names))["per_class_recall"]
        for name, r in zip(self.class_names, recall.tolist()):
            if r == r:  # NaN: no sample of that class
                self.log(f"memory/recall_{name}", r, on_epoch=True, sync_dist=True)

    # -- training ----------------------------------------------------------------------------------------------------
    def landmark_loss(self, heatmaps: torch.Tensor, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_lmk, number of samples without any landmark)``."""
        lmk = batch.get("landmarks")
        if lmk is None:
            raise KeyError(
                "LANetClassifier: the batch has no 'landmarks'. Use a dataset that ships them (AffectNet, synthetic) or attach "
                "a landmark cache (data.landmarks_cache=..., made by `ferkit landmarks extract`), or set "
                "model.landmark_weight=0"
            )
        target, weight = self.heatmap_targets(lmk.to(heatmaps.device), tuple(heatmaps.shape[-2:]))
        missing = (~torch.isfinite(lmk).all(dim=-1)).all(dim=-1).sum()
        return self.awing(heatmaps.float(), target, weight).total, missing

    @property
    def uses_auxiliary_losses(self) -> bool:
        h = self.hparams
        return h.landmark_weight > 0 or h.kl_weight > 0 or h.el_weight > 0

    def training_step(self, batch: dict[str, Any], batch_idx: int):
        h = self.hparams
        x, y, index = batch["image"], batch["label"], batch["index"]
        bs = x.shape[0]
        if not self.uses_auxiliary_losses:
            # every auxiliary weight 0: plain CE on the expression path -- the baseline "trained the same way"
            # (same network path, optimiser, schedule and data), at the cost of the plain backbone
            logits = self(x)
            loss = h.ce_weight * self.classification_loss(logits, batch)
            if not self.check_finite(loss, batch):
                return None
            self.log_train("train/loss", loss, batch_size=bs, prog_bar=True)
            self.log_train_accuracy(logits, batch)
            return loss
        if self.key_model is not None:  # MoCo: advance the key encoder before computing this step's keys
            momentum_update(self.key_model, self.model, h.key_momentum)
            self.el_head.momentum_update()
        logits, h_expr, h_lmk, heatmaps = self.model.forward_train(x)
        ce = self.classification_loss(logits, batch)
        loss = h.ce_weight * ce
        logs: dict[str, torch.Tensor] = {"train/ce": ce.detach()}
        if h.landmark_weight > 0:
            lmk, missing = self.landmark_loss(heatmaps, batch)
            loss = loss + h.landmark_weight * lmk
            logs["train/lmk"] = lmk.detach()
            logs["train/lmk_missing"] = missing.float() / bs  # share of the faces, so the epoch value is one too
        lde = None
        if h.kl_weight > 0 or h.el_weight > 0:  # the EL pseudo-labels come from the LDE target
            lde = self.lde(h_expr, h_lmk, logits, index, self.lde_bank)
        if lde is not None and h.kl_weight > 0:
            loss = loss + h.kl_weight * lde.total
            logs["train/kl"] = lde.total.detach()
        if lde is not None and self.key_model is not None and h.el_weight > 0:
            with torch.no_grad():
                self.key_model.eval()
                k_expr, k_lmk = self.el_head.keys(*self.key_model.forward_keys(x))
            q_expr, q_lmk = self.el_head(h_expr, h_lmk)
            el = self.el_loss(q_expr, q_lmk, k_expr, k_lmk, target=lde.target, index=index).total
            loss = loss + h.el_weight * el
            logs["train/el"] = el.detach()
            logs["train/confident"] = (lde.target.detach().max(dim=1).values >= h.conf_thresh).float().mean()
        if not self.check_finite(loss, batch):
            return None
        self.log_train_accuracy(logits, batch)
        if lde is not None and "clean_label" in batch:  # synthetic noise: does the memory's argmax recover the clean label?
            logs["train/target_clean_acc"] = (lde.target.detach().argmax(1) == batch["clean_label"]).float().mean()
        self.log_train("train/loss", loss, batch_size=bs, prog_bar=True)
        for name, value in logs.items():
            self.log_train(name, value, batch_size=bs)
        return loss
