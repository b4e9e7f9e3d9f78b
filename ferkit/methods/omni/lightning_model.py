"""OmniClassifier: training on labelled + distilled (+ optionally mined) data, each source with its own weight.

Omni-supervised FER (Liu et al., "Omni-supervised Facial Expression Recognition via Distilled Data", arXiv
2005.08551): the distilled images (a few per class, made by :class:`DatasetCondensation` from a mined or labelled
set) are added to the labelled training set. Here every training step's loss is

    loss = [ sum over the batch of w(source_i) * CE(x_i, y_i) ] / B  +  distilled_weight * CE(distilled batch)

where ``w`` is 1 for labelled images and ``mined_weight`` for mined ones (items carry ``source`` when the data is an
:class:`ferkit.data.OmniSource`), and the distilled batch is ``distilled_batch`` images drawn from the distilled set
(all of them by default: ``C x ipc`` images, a negligible cost next to the real batch).

The distilled images are registered buffers (``distilled_images``, ``distilled_labels``), so a checkpoint carries
them and resume, test and predict need no file. They are read from ``distilled`` (a ``.pt`` written by
``ferkit omni distill`` / :meth:`CondensedSet.save`) when fitting starts. With ``condensation`` set and the file
absent, the module distils its own training set (its labelled images in the evaluation transform) first and writes
the file: the config-driven path.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ferkit.methods.base import FERModule
from ferkit.methods.omni.condensation import CondensedSet, DatasetCondensation
from ferkit.models import FERNetConfig

log = logging.getLogger(__name__)

__all__ = ["OmniClassifier"]


class OmniClassifier(FERModule):
    """A FER network trained on labelled, mined and distilled images with one weight per source.

    Args (beyond :class:`FERModule`'s):
        distilled: path of the distilled set (``.pt``); None trains without one.
        distilled_weight: weight of the distilled images' cross-entropy.
        distilled_batch: distilled images per step (drawn at random each step); None uses all of them.
        mined_weight: weight of mined images (items with ``source == 1``) relative to labelled ones.
        condensation: a :class:`DatasetCondensation` run at the start of fitting when ``distilled`` does not exist
            yet (on rank 0; the others wait and read the file).
    """

    def __init__(
        self,
        net: FERNetConfig | None = None,
        distilled: str | None = None,
        distilled_weight: float = 1.0,
        distilled_batch: int | None = None,
        mined_weight: float = 1.0,
        condensation: DatasetCondensation | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(net, **kwargs)
        if distilled_weight < 0 or mined_weight < 0:
            raise ValueError(f"OmniClassifier: distilled_weight and mined_weight must be >= 0, got {distilled_weight}, "
                             f"{mined_weight}")
        if distilled_batch is not None and distilled_batch < 1:
            raise ValueError(f"OmniClassifier: distilled_batch must be >= 1 or None, got {distilled_batch}")
        if condensation is not None and distilled is None:
            raise ValueError("OmniClassifier: condensation needs distilled= the .pt path to write the distilled set to")
        self.condensation = condensation
        self.save_hyperparameters(ignore=["output_dir", "optimizer", "scheduler", "condensation"])
        self.hparams["net"] = self.net.to_dict()
        h = self.hparams
        self.register_buffer("distilled_images", torch.zeros(0, h.in_chans, h.img_size, h.img_size))
        self.register_buffer("distilled_labels", torch.zeros(0, dtype=torch.long))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the distilled set's size is only known once it is made: take the checkpoint's shapes
        for name in ("distilled_images", "distilled_labels"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- the distilled set -----------------------------------------------------------------------------
    def set_distilled(self, condensed: CondensedSet) -> None:
        """Use ``condensed`` as the distilled set (checked against the label space and input geometry)."""
        h = self.hparams
        if list(condensed.class_names) != self.class_names:
            raise ValueError(f"distilled set's classes {condensed.class_names} differ from the model's {self.class_names}; "
                             "distil with the same label space")
        images = condensed.images
        if images.shape[1] != h.in_chans:
            raise ValueError(f"distilled images have {images.shape[1]} channel(s), the model {h.in_chans}; distil with "
                             "the same data.channels")
        if images.shape[-1] != h.img_size:
            log.info("resizing distilled images from %d to %d px", images.shape[-1], h.img_size)
            images = F.interpolate(images, size=(h.img_size, h.img_size), mode="bilinear", align_corners=False)
        self.distilled_images = images.to(self.distilled_images.device)
        self.distilled_labels = condensed.labels.to(self.distilled_labels.device)

    def _distil_if_missing(self, path: Path) -> None:
        dm = self.trainer.datamodule
        if dm is None or not hasattr(dm, "judge_dataloader"):
            raise RuntimeError("OmniClassifier: condensation at fit start needs a FERDataModule (the training set to distil)")
        ds = dm.judge_dataloader(preset="eval").dataset
        labels = getattr(ds, "labels")
        sources = getattr(getattr(ds, "parent", ds), "sources", None)
        if sources is not None:  # an OmniTrainSet: distil what was given (labelled and mined alike)
            log.info("distilling %d training images (labelled and mined)", len(ds))
        ckpt = path.with_suffix(".state.pt")
        condensed = self.condensation.run(ds, labels, self.class_names, checkpoint=ckpt)  # type: ignore[union-attr]
        condensed.save(path)
        ckpt.unlink(missing_ok=True)  # the finished file replaces the resume state
        log.info("wrote the distilled set %s (%s)", path, condensed.info)

    def on_fit_start(self) -> None:
        path = self.hparams.distilled
        if path is None:
            return
        path = Path(path).expanduser()
        if not path.is_file() and self.condensation is not None:
            if self.trainer.is_global_zero:
                self._distil_if_missing(path)
            self.trainer.strategy.barrier("omni-distil")
        if path.is_file():
            self.set_distilled(CondensedSet.load(path))
        elif self.distilled_images.numel() == 0:
            raise FileNotFoundError(f"{path}: distilled set not found; run `ferkit omni distill` first, or set "
                                    "model.init_args.condensation to distil at fit start")

    # -- training --------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        h = self.hparams
        images, bs = batch["image"], batch["image"].shape[0]
        use_distilled = self.distilled_images.numel() > 0 and h.distilled_weight > 0
        if use_distilled:
            dx, dy = self.distilled_images, self.distilled_labels
            if h.distilled_batch is not None and h.distilled_batch < dx.shape[0]:
                pick = torch.randperm(dx.shape[0], device=dx.device)[: h.distilled_batch]
                dx, dy = dx[pick], dy[pick]
            # one forward for real and distilled images, so batch-norm statistics see both
            images = torch.cat([images, dx.to(images.dtype)])
        all_logits = self(images)
        logits = all_logits[:bs]
        target = batch["soft_label"] if "soft_label" in batch else batch["label"]
        ce = F.cross_entropy(logits, target, label_smoothing=h.label_smoothing, reduction="none")
        if "source" in batch:
            mined = batch["source"] == 1
            w = torch.where(mined, torch.full_like(ce, h.mined_weight), torch.ones_like(ce))
            self.log_train("train/mined_fraction", mined.float().mean(), batch_size=bs)
        else:
            w = torch.ones_like(ce)
        loss = (w * ce).sum() / bs
        terms = {"real": loss.detach()}
        if use_distilled:
            d = F.cross_entropy(all_logits[bs:], dy, label_smoothing=h.label_smoothing)
            loss = loss + h.distilled_weight * d
            terms["distilled"] = d.detach()
        if not self.check_finite(loss, batch):
            return None
        self.log_train("train/loss", loss, batch_size=bs, prog_bar=True)
        for k, v in terms.items():
            self.log_train(f"train/{k}", v, batch_size=bs)
        self.log_train("train/acc", (logits.argmax(1) == batch["label"]).float().mean(), batch_size=bs, prog_bar=True)
        return loss
