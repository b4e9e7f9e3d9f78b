"""LightningDataModule over any dataset source, with transforms, samplers, label noise and a pre-flight check."""
from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
from typing import Any, Mapping, TextIO

import lightning as L
import numpy as np
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from ferkit.core.errors import DataError
from ferkit.core.labels import LabelSpace
from ferkit.data.base import FERDataset, SubsetFER, skip_bad_collate
from ferkit.data.folder import UnlabelledImageFolder
from ferkit.data.noise import apply_label_noise
from ferkit.data.samplers import ShuffleSampler
from ferkit.data.sampling import SamplerFactory
from ferkit.data.sources import DatasetSource, SyntheticSource, validate_dataset
from ferkit.data.transforms import RESIZE_MODES, FERTransform, MultiView
from ferkit.landmarks.cache import attach_landmarks

log = logging.getLogger(__name__)

__all__ = ["FERDataModule", "check_data", "describe", "instantiate"]

BAD_IMAGE_POLICIES: tuple[str, ...] = ("raise", "skip")


class FERDataModule(L.LightningDataModule):
    """Train / val / test / predict loaders for one FER dataset source.

    Args:
        dataset: a :class:`~ferkit.data.sources.DatasetSource` (``class_path`` / ``init_args`` in a config, and
            in Python also that dict); None means ``SyntheticSource()``. :func:`ferkit.data.available_sources` lists them.
        img_size: square input side of the model. channels: 1 (grayscale) or 3.
        batch_size: per-device training batch; eval_batch_size defaults to it.
        num_workers: DataLoader worker processes (each draws its own reproducible augmentation stream).
        train_preset / eval_preset: augmentation presets (``ferkit.data.transforms.available_presets()``).
        hflip: horizontal-flip probability for training (landmark identities are swapped).
        strong_preset: if set, training items also carry ``image_strong`` (two-view methods such as ASM).
        mean, std: normalisation (default: ImageNet's for 3 channels, 0.5 / 0.5 for 1).
        sampler: a :class:`~ferkit.data.sampling.SamplerFactory` (``BalancedSampling``, ``MRRSampling``,
            ``ProgressiveSampling``); None shuffles.
        label_noise / noise_mode / noise_seed: synthetic label noise on the training split (clean labels kept).
        train_limit / val_limit / test_limit: use a class-stratified random subset of that many samples (by ``seed``).
        val_fraction: hold out this fraction of train as validation. Without it, a source that has no validation
            split validates on its test split (as the papers' recipes do) and a warning says so.
        predict_split: which split ``predict`` runs over; predict_folder: run ``predict`` over every image under
            this folder instead (recursively, unlabelled: items carry ``image``, ``index`` and ``id``).
        seed: seed of the subsets, the validation hold-out and the samplers.
        drop_last: drop the last incomplete training batch.
        landmarks_cache: a landmark cache file or folder written by ``ferkit landmarks extract`` (one file per split,
            ``<name>_<split>.npz`` inside a folder); attaches landmarks to datasets that ship none (failed faces are NaN).
        on_bad_image: ``"raise"`` stops at an unreadable image; ``"skip"`` leaves it out of its batch, counts it
            (:attr:`skipped_images`) and logs a warning naming it. :meth:`check` lists all bad files up front.
        resize: how non-square images become square: ``"squash"``, ``"center_crop"`` or ``"pad"``.

    The augmentation is reproducible: after ``L.seed_everything(s)`` the same run draws the same flips and
    augmentations, with a distinct stream per worker and per DDP rank (see :mod:`ferkit.data.transforms`).
    """

    def __init__(
        self,
        dataset: DatasetSource | None = None,
        img_size: int = 64,
        channels: int = 3,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        train_preset: str = "default",
        eval_preset: str = "eval",
        hflip: float = 0.5,
        strong_preset: str | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        sampler: SamplerFactory | None = None,
        label_noise: float = 0.0,
        noise_mode: str = "symmetric",
        noise_seed: int = 0,
        train_limit: int | None = None,
        val_limit: int | None = None,
        test_limit: int | None = None,
        val_fraction: float = 0.0,
        predict_split: str = "test",
        predict_folder: str | None = None,
        seed: int = 0,
        drop_last: bool = False,
        landmarks_cache: str | None = None,
        on_bad_image: str = "raise",
        resize: str = "squash",
    ) -> None:
        super().__init__()
        # The source and sampler objects are recorded as {class_path, init_args} dicts (the config's own shape):
        # checkpoints then hold plain data, which torch.load(weights_only=True) accepts and from_hparams rebuilds.
        self.save_hyperparameters(ignore=["dataset", "sampler"])
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(f"on_bad_image must be one of {BAD_IMAGE_POLICIES}, got {on_bad_image!r}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        # the saved form ({"class_path", "init_args"}), so FERDataModule(**hparams) and load_from_checkpoint work
        if isinstance(dataset, Mapping):
            dataset = instantiate(dataset)
        if isinstance(sampler, Mapping):
            sampler = instantiate(sampler)
        if sampler is not None and not isinstance(sampler, SamplerFactory):
            raise TypeError(f"sampler must be a ferkit.data SamplerFactory (BalancedSampling, MRRSampling, "
                            f"ProgressiveSampling) or None, got {sampler!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.source: DatasetSource = dataset if dataset is not None else SyntheticSource()
        if not isinstance(self.source, DatasetSource):
            raise TypeError(f"dataset must be a ferkit.data DatasetSource (e.g. FERPlusSource(root=...)), got {dataset!r}")
        self.sampler_factory = sampler
        self.hparams["dataset"] = describe(self.source)
        self.hparams["sampler"] = None if sampler is None else describe(sampler)
        self.label_space: LabelSpace = self.source.label_space
        self.train_set: FERDataset | None = None
        self.val_set: FERDataset | None = None
        self.test_set: FERDataset | None = None
        self.predict_set: FERDataset | None = None
        #: ``(id, reason)`` of every image skipped with ``on_bad_image="skip"`` in this process
        self.skipped_images: list[tuple[str, str]] = []

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any], **overrides: Any) -> "FERDataModule":
        """Rebuild a data module from its saved hyper-parameters (e.g. a checkpoint's
        ``datamodule_hyper_parameters``); ``overrides`` replace single arguments."""
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        kwargs = {k: v for k, v in dict(hparams).items() if k in accepted}  # drops LightningCLI's bookkeeping keys
        kwargs.update(overrides)
        return cls(**kwargs)

    # -- what the model needs to know before setup (linked by the CLI) ---------------------------------
    @property
    def num_classes(self) -> int:
        return self.label_space.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.label_space.names)

    # -- construction ------------------------------------------------------------------------------------
    def _build(self, split: str) -> FERDataset:
        ds = self.source.build(split, None)
        if self.hparams.landmarks_cache:
            attach_landmarks(ds, self.hparams.landmarks_cache, split=split)
        ds.on_bad_image = self.hparams.on_bad_image
        if ds.num_classes != self.num_classes:
            raise DataError(
                f"{self.source!r}: the {split!r} split has {ds.num_classes} classes but the training label space has "
                f"{self.num_classes}; every split must share one label space (set num_classes= on the source)")
        return ds

    def make_transform(self, preset: str, hflip: float, stream: str) -> FERTransform:
        """A transform with this data module's size, channels, normalisation and resize mode."""
        h = self.hparams
        return FERTransform(img_size=h.img_size, channels=h.channels, preset=preset, hflip=hflip, mean=h.mean,
                            std=h.std, stream=stream, resize=h.resize)

    def _transform(self, train: bool):
        h = self.hparams
        if not train:
            return self.make_transform(h.eval_preset, 0.0, "eval")
        main = self.make_transform(h.train_preset, h.hflip, "train/image")
        if h.strong_preset:
            return MultiView({"image": main, "image_strong": self.make_transform(h.strong_preset, h.hflip, "train/image_strong")})
        return main

    @staticmethod
    def _stratified(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
        """``n`` indices keeping the class proportions (deterministic by seed)."""
        rng = np.random.default_rng(seed)
        if n >= len(labels):
            return np.arange(len(labels))
        order = rng.permutation(len(labels))
        # round-robin over classes in proportion: sort the permutation by (rank within class / class size)
        ranks = np.empty(len(labels))
        for c in np.unique(labels):
            members = order[labels[order] == c]
            ranks[members] = (np.arange(len(members)) + rng.random()) / len(members)
        return np.sort(np.argsort(ranks, kind="stable")[:n])

    def _limit(self, ds: FERDataset, n: int | None, name: str) -> FERDataset:
        if n is None or n >= len(ds):
            return ds
        log.info("using a stratified subset of %d / %d %s samples (seed %d)", n, len(ds), name, self.hparams.seed)
        return SubsetFER(ds, self._stratified(np.asarray(ds.labels), n, self.hparams.seed))

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if stage in (None, "fit", "validate") and self.train_set is None:
            train = self._build("train")
            if h.val_fraction > 0:
                hold = self._stratified(np.asarray(train.labels), int(round(h.val_fraction * len(train))), h.seed + 1)
                keep = np.setdiff1d(np.arange(len(train)), hold)
                val, train = SubsetFER(train, hold), SubsetFER(train, keep)
            elif not self.source.has_split("val"):
                log.warning("%r has no validation split: validating on its test split (as the paper recipes do); "
                            "set data.val_fraction to hold out part of train instead", self.source)
                val = self._build("test")
            else:
                val = self._build("val")
            train = self._limit(train, h.train_limit, "train")
            if h.label_noise > 0:
                if not isinstance(train, SubsetFER):
                    train = SubsetFER(train, np.arange(len(train)))  # noise never mutates a shared dataset object
                apply_label_noise(train, h.label_noise, mode=h.noise_mode, seed=h.noise_seed)
            train.transform = self._transform(train=True)
            val = self._limit(val, h.val_limit, "val")
            val.transform = self._transform(train=False)
            self.train_set, self.val_set = train, val
            log.info("images are made %dx%d by %r (data.resize: squash | center_crop | pad when not square)",
                     h.img_size, h.img_size, h.resize)
        if stage in (None, "test") and self.test_set is None:
            self.test_set = self._limit(self._build("test"), h.test_limit, "test")
            self.test_set.transform = self._transform(train=False)
        if stage == "predict" and self.predict_set is None:
            if h.predict_folder:
                grayscale = h.channels == 1
                ds: FERDataset = UnlabelledImageFolder(h.predict_folder, self.label_space, grayscale=grayscale)
                ds.on_bad_image = h.on_bad_image
            else:
                ds = self._build(h.predict_split)
                ds = self._limit(ds, h.test_limit if h.predict_split == "test" else None, "predict")
            ds.transform = self._transform(train=False)
            self.predict_set = ds

    # -- loaders -----------------------------------------------------------------------------------------
    def _loader(self, ds: FERDataset, train: bool, **overrides: Any) -> DataLoader:
        h = self.hparams
        kw: dict[str, Any] = dict(
            batch_size=h.batch_size if train else (h.eval_batch_size or h.batch_size),
            num_workers=h.num_workers,
            # training workers are re-created each epoch so that they see the epoch the transform is seeded with
            persistent_workers=h.num_workers > 0 and not train,
            pin_memory=False,
        )
        if h.on_bad_image == "skip":
            kw["collate_fn"] = skip_bad_collate
        if train:
            sampler = self.make_sampler(ds)
            if sampler is None:
                sampler = ShuffleSampler(len(ds), seed=self.sampling_seed())
            set_epoch = getattr(ds.transform, "set_epoch", None)
            if set_epoch is not None:
                set_epoch(0)  # epoch 0 until the trainer says otherwise (Lightning calls sampler.set_epoch each epoch)
                sampler.epoch_listeners.append(set_epoch)
            kw["sampler"] = sampler
            kw["drop_last"] = h.drop_last
        kw.update(overrides)
        return DataLoader(ds, **kw)

    def make_sampler(self, ds: FERDataset):
        """The training sampler built by ``sampler`` from ``ds``'s labels, or None (shuffle)."""
        if self.sampler_factory is None:
            return None
        trainer = getattr(self, "trainer", None)
        max_epochs = getattr(trainer, "max_epochs", None) if trainer is not None else None
        return self.sampler_factory.build(np.asarray(ds.labels), seed=self.sampling_seed(), max_epochs=max_epochs)

    def sampling_seed(self) -> int:
        """The seed of the training order: ``seed`` combined with ``L.seed_everything``'s seed (``$PL_GLOBAL_SEED``,
        the same on every rank), so ``--seed_everything`` varies the data order as well as the initial weights."""
        return int(np.random.SeedSequence([int(self.hparams.seed), int(os.environ.get("PL_GLOBAL_SEED", 0))]).generate_state(1)[0])

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, train=False)

    def judge_dataloader(self, preset: str = "eval", hflip: float | None = None,
                         batch_size: int | None = None) -> DataLoader:
        """The training set (with its possibly noisy labels) in another transform, in order, for judging passes.

        Never shuffled; under DDP each rank gets its shard from a ``DistributedSampler(shuffle=False)`` (the last
        shard is padded with repeats, so consumers key per-sample state by ``batch["index"]``). Items carry
        ``index``, the training set's sample index.

        Args:
            preset: the transform preset: ``"eval"`` (no augmentation) or a training preset (e.g. ``"weak"``).
            hflip: flip probability; default 0 for ``"eval"``, the training ``hflip`` otherwise.
            batch_size: default ``eval_batch_size`` (or ``batch_size``).
        """
        if self.train_set is None:
            self.setup("fit")
        h = self.hparams
        flip = (0.0 if preset == "eval" else h.hflip) if hflip is None else hflip
        judge_set = SubsetFER(self.train_set, np.arange(len(self.train_set)),
                              transform=self.make_transform(preset, flip, f"judge/{preset}"))
        sampler = None
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            sampler = DistributedSampler(judge_set, num_replicas=dist.get_world_size(), rank=dist.get_rank(),
                                         shuffle=False)
        return self._loader(judge_set, train=False, sampler=sampler, shuffle=False,
                            batch_size=batch_size or h.eval_batch_size or h.batch_size)

    # -- bad images --------------------------------------------------------------------------------------
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict) and "bad_images" in batch:
            bad = batch.pop("bad_images")
            self.skipped_images.extend(bad)
            for ident, reason in bad:
                log.warning("skipped unreadable image %s (%s); %d skipped so far (data.on_bad_image=skip)",
                            ident, reason, len(self.skipped_images))
        return batch

    def check(self, progress: bool = True) -> list[tuple[str, str]]:
        """Read every image this data module would use once; return all problems as ``(id or path, reason)``.

        Covers the source's train / validation / test splits (those it has) and ``predict_folder`` when set.
        """
        splits = tuple(s for s in ("train", "val", "test") if self.source.has_split(s))
        problems = self.source.validate(splits, progress=progress)
        if self.hparams.predict_folder:
            try:
                ds = UnlabelledImageFolder(self.hparams.predict_folder, self.label_space)
                problems.extend(validate_dataset(ds, progress=progress, desc="checking predict_folder"))
            except DataError as exc:
                problems.append((str(self.hparams.predict_folder), str(exc)))
        return problems


def describe(obj: Any) -> dict[str, Any]:
    """``{"class_path": ..., "init_args": {...}}`` of a source or sampler factory: its ``__init__`` arguments read
    back from the attributes of the same names (how every ferkit source and sampler factory stores them)."""
    init_args = {}
    for name, param in inspect.signature(type(obj).__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        value = getattr(obj, name, param.default)
        if value is inspect.Parameter.empty:
            raise TypeError(f"{type(obj).__name__} does not keep its argument {name!r} as an attribute; "
                            "store every __init__ argument under its own name")
        if isinstance(value, (DatasetSource, SamplerFactory)):
            value = describe(value)  # a source inside a source (OmniSource's labelled data): plain data all the way down
        init_args[name] = dict(value) if isinstance(value, Mapping) else (list(value) if isinstance(value, tuple) else value)
    return {"class_path": f"{type(obj).__module__}.{type(obj).__qualname__}", "init_args": init_args}


def instantiate(spec: Mapping[str, Any]) -> Any:
    """The object a ``{"class_path": ..., "init_args": {...}}`` dict describes (the inverse of :func:`describe`)."""
    module, _, name = str(spec["class_path"]).rpartition(".")
    init_args = {k: instantiate(v) if isinstance(v, Mapping) and "class_path" in v else v
                 for k, v in dict(spec.get("init_args") or {}).items()}
    return getattr(importlib.import_module(module), name)(**init_args)


def check_data(datamodule: FERDataModule, stream: TextIO | None = None, progress: bool = True) -> int:
    """Run :meth:`FERDataModule.check`, print every bad file (``<id or path>: <reason>``) and a summary line.

    Returns the exit status for a command line: 0 when every file reads, 1 otherwise.
    """
    out = stream if stream is not None else sys.stdout
    problems = datamodule.check(progress=progress)
    for ident, reason in problems:
        print(f"{ident}: {reason}", file=out)
    if problems:
        print(f"{len(problems)} bad file(s) in {datamodule.source!r}; fix or remove them, or train with "
              "data.on_bad_image=skip", file=out)
        return 1
    print(f"all files of {datamodule.source!r} read correctly", file=out)
    return 0
