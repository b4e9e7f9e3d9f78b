"""PASM as LightningModules: one generation per fit, and the offline centre pass that precedes it.

Point Adversarial Self Mining (Liu, Lin, Meng, Lu, Deng, Zhou, Yang, IEEE Trans. Cybernetics 52(12), 2022;
arXiv 2008.11401). For generation ``g >= 1``, with the frozen teacher ``T_{g-1}``:

1. offline, once per generation (:func:`precompute_centres`, Lightning's predict, sharded under DDP and gathered by
   dataset index): a point-wise adversarial attack on ``T_{g-1}`` and the density rule give each training image an
   informative centre (:class:`ferkit.miners.point_attack.PointAttackLocator`), stored ``int16 [N, 2]`` in
   original-image coordinates, one file per generation;
2. the student ``S_g`` (:class:`PASMClassifier`) trains on images erased around their centre after augmentation
   (:class:`ferkit.data.erasing.RegionErasingTransform`) with
   ``L = CE(S_g(x'), y) + alpha * T^2 * KL(softmax(T_{g-1}(x') / T) || softmax(S_g(x') / T))``
   (:class:`ferkit.losses.distillation.DistillationLoss`);
3. ``S_g`` becomes the next teacher. ``ferkit pasm`` chains the generations.

Generation 0 is plain CE: a :class:`PASMClassifier` without ``teacher_ckpt`` and ``centres_path``.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import nn

from ferkit.data.erasing import (MISSING_CENTRE, InformativeRegionEraser, RecordRawSize, RegionErasingTransform,
                                 save_centres, to_original_coordinates)
from ferkit.losses.distillation import DistillationLoss
from ferkit.methods.base import FERModule
from ferkit.methods.pasm.torch_model import freeze, load_network
from ferkit.miners.point_attack import PointAttackLocator
from ferkit.models import FERNetConfig
from ferkit.state.bank import PerSampleBank

log = logging.getLogger(__name__)

__all__ = ["PASMClassifier", "CentreLocatorModule", "precompute_centres"]


class PASMClassifier(FERModule):
    """One PASM generation: a student trained with region erasing and distillation from a frozen teacher.

    Args (besides :class:`ferkit.methods.FERModule`'s):
        teacher_ckpt: checkpoint of the previous generation (any single-network ferkit model of the same label
            space and input size). None: generation 0 (no distillation).
        centres_path: the centre file of this generation (written by :func:`precompute_centres`). None: no
            informative erasing (unless ``random_centres``).
        T / alpha: temperature and weight of the distillation term (defaults 4 and 0.5).
        erase_area / erase_aspect / erase_fill / erase_p: the erased box (see
            :class:`ferkit.data.erasing.InformativeRegionEraser`).
        random_centres: erase around random positions instead (the random-erasing control; no centre file needed).
        attack / max_points / points_per_step / window / stride: the locator used by ``ferkit pasm`` to compute the
            next generation's centres with this model (see :class:`ferkit.miners.point_attack.PointAttackLocator`).

    The teacher is not a registered submodule: it is not optimised, not wrapped by DDP and not in the checkpoint
    (which holds the student only); it is read from ``teacher_ckpt`` when fitting starts, in eval mode, frozen.
    """

    def __init__(
        self,
        net: FERNetConfig | None = None,
        teacher_ckpt: str | None = None,
        centres_path: str | None = None,
        T: float = 4.0,
        alpha: float = 0.5,
        erase_area: tuple[float, float] = (0.02, 0.2),
        erase_aspect: tuple[float, float] = (0.3, 3.3),
        erase_fill: str | float = "random",
        erase_p: float = 0.5,
        random_centres: bool = False,
        attack: Literal["l0_greedy", "sparse_pgd", "saliency"] = "l0_greedy",
        max_points: int = 64,
        points_per_step: int = 4,
        window: int = 32,
        stride: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(net, **kwargs)
        self.distill = DistillationLoss(T=T, alpha=alpha, label_smoothing=self.hparams.label_smoothing)
        self.cross_entropy = DistillationLoss(T=T, alpha=0.0, label_smoothing=self.hparams.label_smoothing)  # generation 0
        self.eraser = InformativeRegionEraser(area=erase_area, aspect=erase_aspect, fill=erase_fill, p=erase_p,
                                              random_centres=random_centres)
        self.teacher_ckpt, self.centres_path = teacher_ckpt, centres_path
        self._teacher: list[nn.Module] = []  # a list: not a submodule (no optimiser, no DDP, no checkpoint)

    @property
    def teacher(self) -> nn.Module | None:
        """The frozen teacher (None in generation 0 or before fitting starts)."""
        return self._teacher[0] if self._teacher else None

    def set_teacher(self, teacher: nn.Module | None) -> None:
        """Use ``teacher`` (frozen here) instead of reading ``teacher_ckpt``."""
        self._teacher[:] = [] if teacher is None else [freeze(teacher).to(self.device)]

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        h = self.hparams
        if self.teacher is None and self.teacher_ckpt:
            self.set_teacher(load_network(self.teacher_ckpt, h.num_classes, h.in_chans, h.img_size))
            log.info("PASM: teacher read from %s (frozen, eval mode)", self.teacher_ckpt)
        if self.centres_path is None and not self.eraser.random_centres:
            return
        dm = getattr(self.trainer, "datamodule", None)
        train_set = getattr(dm, "train_set", None)
        if train_set is None:
            raise RuntimeError("PASMClassifier erases regions through the training transform: train with a FERDataModule")
        if isinstance(train_set.transform, RegionErasingTransform):
            return  # already wrapped (e.g. a second fit on the same data module)
        erasing = RegionErasingTransform(train_set.transform, self.eraser, self.centres_path)
        if erasing.centres is not None and len(erasing.centres) != len(train_set):
            raise ValueError(f"the centre file {self.centres_path} covers {len(erasing.centres)} samples but the training "
                             f"set has {len(train_set)}: compute the centres with the same data settings (train_limit, seed)")
        train_set.transform = erasing

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            freeze(self.teacher.to(self.device))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        x = batch["image"]
        logits = self(x)
        teacher_logits = None
        if self.teacher is not None and self.distill.alpha > 0:
            self.teacher.eval()
            with torch.no_grad():
                teacher_logits = self.teacher(x)
        target = batch["soft_label"] if "soft_label" in batch else batch["label"]
        out = (self.cross_entropy if teacher_logits is None else self.distill)(logits, teacher_logits, target)
        if not self.check_finite(out.total, batch):
            return None
        bs = logits.shape[0]
        self.log_train("train/loss", out.total, batch_size=bs, prog_bar=True)
        for name, value in out.log_dict("train/").items():
            self.log_train(name, value, batch_size=bs)
        self.log_train("train/acc", (logits.argmax(1) == batch["label"]).float().mean(), batch_size=bs, prog_bar=True)
        return out.total

    def make_locator(self, network: nn.Module | None = None) -> PointAttackLocator:
        """The locator this model's settings describe, attacking ``network`` (default: this model's network)."""
        h = self.hparams
        return PointAttackLocator(network if network is not None else self.model, attack=h.attack,
                                  max_points=h.max_points, points_per_step=h.points_per_step, window=h.window,
                                  stride=h.stride)


class CentreLocatorModule(L.LightningModule):
    """Lightning's predict over the training set: each rank locates the centres of its shard, and every rank's
    ``(index, centre)`` pairs are gathered into one ``[N, 2]`` bank (:class:`ferkit.state.PerSampleBank`).

    Args:
        teacher: the frozen network to attack. datamodule: a :class:`ferkit.data.FERDataModule` (its training set in
        the evaluation transform is what is located). locator_kwargs: :class:`PointAttackLocator` options.
    """

    def __init__(self, teacher: nn.Module, datamodule: Any, batch_size: int | None = None, **locator_kwargs: Any) -> None:
        super().__init__()
        self.teacher = freeze(teacher)
        self.dm, self.batch_size = datamodule, batch_size
        self.locator = PointAttackLocator(self.teacher, **locator_kwargs)
        if datamodule.train_set is None:
            datamodule.setup("fit")
        self.centres = PerSampleBank(len(datamodule.train_set), (2,), torch.int32, MISSING_CENTRE)

    def predict_dataloader(self):
        loader = self.dm.judge_dataloader(preset="eval", batch_size=self.batch_size)
        loader.dataset.transform = RecordRawSize(loader.dataset.transform)
        return loader

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        # predict runs under inference mode; the attack needs the input's gradient (the teacher's weights stay frozen)
        with torch.inference_mode(False), torch.enable_grad():
            x, y = batch["image"].clone(), batch["label"].clone()
            found = self.locator.locate(x, y)
        h = self.dm.hparams
        original = to_original_coordinates(found, batch["raw_size"], h.img_size, h.resize)
        self.centres.write(batch["index"].clone(), original.round().to(torch.int32), reduce="last")


def precompute_centres(teacher: nn.Module | str | Path, datamodule: Any, out: str | Path | None = None,
                       trainer_kwargs: dict[str, Any] | None = None, batch_size: int | None = None,
                       **locator_kwargs: Any) -> torch.Tensor:
    """Locate every training image's centre with ``teacher`` (a network or a checkpoint path) and return them,
    ``int16 [N, 2]`` ``(x, y)`` in original-image coordinates keyed by training-set index; write them to ``out``.

    Runs through ``Trainer.predict`` (``trainer_kwargs``: e.g. ``devices=2, strategy="ddp"``): each rank locates
    its shard of the training set and the results are gathered by index, so the file equals a one-process run's.
    """
    if isinstance(teacher, (str, Path)):
        h = datamodule.hparams
        teacher = load_network(teacher, datamodule.num_classes, h.channels, h.img_size)
    module = CentreLocatorModule(teacher, datamodule, batch_size=batch_size, **locator_kwargs)
    kw = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
              use_distributed_sampler=False)  # judge_dataloader shards the training set itself
    kw.update(trainer_kwargs or {})
    kw["inference_mode"] = False
    trainer = L.Trainer(**kw)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="predict returned None")  # the results live in module.centres
        trainer.predict(module, return_predictions=False)
    centres = module.centres.values.to(torch.int16).cpu()
    if out is not None and trainer.is_global_zero:
        save_centres(out, centres, num_samples=len(centres), locator=repr(module.locator),
                     img_size=int(datamodule.hparams.img_size), resize=datamodule.hparams.resize)
    return centres
