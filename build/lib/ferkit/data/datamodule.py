"""LightningDataModule over every registered dataset, with transforms, samplers and synthetic label noise."""
from __future__ import annotations

import logging
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from ferkit.data.base import FERDataset, SubsetFER
from ferkit.core.labels import LabelSpace
from ferkit.data.registry import build_dataset, get_entry
from ferkit.data.transforms import FERTransform, MultiView

log = logging.getLogger(__name__)


class FERDataModule(L.LightningDataModule):
    """Train / val / test / predict loaders for one FER dataset.

    Args:
        dataset: a registered dataset name (``ferkit.data.registry.available_datasets()``).
        root: folder (or file) holding the dataset; unused for ``synthetic``.
        dataset_kwargs: extra arguments for the dataset class (e.g. ``label_mode`` for FER+, ``num_classes``).
        img_size: square input side of the model. channels: 1 (grayscale) or 3.
        batch_size: per-device training batch; eval_batch_size defaults to it.
        train_preset / eval_preset: augmentation presets (``ferkit.data.transforms.available_presets()``).
        hflip: horizontal-flip probability for training (landmark identities are swapped).
        strong_preset: if set, training items also carry ``image_strong`` (two-view methods such as ASM).
        sampler: ``"none"`` (shuffle), ``"balanced"`` (inverse-frequency), ``"mrr"`` (ARM's minimal random resampling),
            ``"progressive"`` (LA-Net's progressively class-balanced sampler; needs the trainer's ``max_epochs``).
        label_noise / noise_mode / noise_seed: synthetic label noise on the training split (clean labels kept).
        train_limit / val_limit / test_limit: use a class-stratified random subset of that many samples (by ``seed``).
        val_fraction: hold out this fraction of train as validation (for datasets without a validation split, the
            test split is used for validation otherwise, as the papers' recipes do; a warning says so).
        predict_split: which split ``predict`` runs over.
        landmarks_cache: a landmark cache file or folder written by ``ferkit landmarks extract`` (one file per split,
            ``<name>_<split>.npz`` inside a folder); attaches landmarks to datasets that ship none (failed faces are NaN).
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | None = None,
        dataset_kwargs: dict[str, Any] | None = None,
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
        sampler: str = "none",
        label_noise: float = 0.0,
        noise_mode: str = "symmetric",
        noise_seed: int = 0,
        train_limit: int | None = None,
        val_limit: int | None = None,
        test_limit: int | None = None,
        val_fraction: float = 0.0,
        predict_split: str = "test",
        seed: int = 0,
        drop_last: bool = False,
        landmarks_cache: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        entry = get_entry(dataset)
        if sampler not in ("none", "balanced", "mrr", "progressive"):
            raise ValueError(f"sampler must be 'none', 'balanced', 'mrr' or 'progressive', got {sampler!r}")
        self.dataset_kwargs = dict(dataset_kwargs or {})
        space = entry.label_space(self.dataset_kwargs)
        if space is None:  # folder layouts: the label space comes from the folder names
            space = self._build("train" if entry.splits.get("train") else "test", None).label_space
        self.label_space: LabelSpace = space
        self.train_set: FERDataset | None = None
        self.val_set: FERDataset | None = None
        self.test_set: FERDataset | None = None
        self.predict_set: FERDataset | None = None

    # -- what the model needs to know before setup (linked by the CLI) ---------------------------------
    @property
    def num_classes(self) -> int:
        return self.label_space.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.label_space.names)

    # -- construction ------------------------------------------------------------------------------------
    def _build(self, split: str, transform) -> FERDataset:
        ds = build_dataset(self.hparams.dataset, self.hparams.root, split, transform, **self.dataset_kwargs)
        if self.hparams.landmarks_cache:
            from ferkit.landmarks.cache import attach_landmarks

            attach_landmarks(ds, self.hparams.landmarks_cache, split=split)
        return ds

    def _transform(self, train: bool):
        h = self.hparams
        common = dict(img_size=h.img_size, channels=h.channels, mean=h.mean, std=h.std)
        if not train:
            return FERTransform(preset=h.eval_preset, hflip=0.0, **common)
        main = FERTransform(preset=h.train_preset, hflip=h.hflip, **common)
        if h.strong_preset:
            return MultiView({"image": main, "image_strong": FERTransform(preset=h.strong_preset, hflip=h.hflip, **common)})
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
        entry = get_entry(h.dataset)
        if stage in (None, "fit", "validate") and self.train_set is None:
            train = self._build("train", None)
            val = None
            if h.val_fraction > 0:
                hold = self._stratified(np.asarray(train.labels), int(round(h.val_fraction * len(train))), h.seed + 1)
                keep = np.setdiff1d(np.arange(len(train)), hold)
                val, train = SubsetFER(train, hold), SubsetFER(train, keep)
            elif entry.splits.get("val") is None:
                log.warning("dataset %r has no validation split: validating on its test split (as the paper recipes do); "
                            "set data.val_fraction to hold out part of train instead", h.dataset)
                val = self._build("test", None)
            else:
                val = self._build("val", None)
            train = self._limit(train, h.train_limit, "train")
            if h.label_noise > 0:
                from ferkit.data.noise import apply_label_noise

                if not isinstance(train, SubsetFER):
                    train = SubsetFER(train, np.arange(len(train)))  # noise never mutates a shared dataset object
                apply_label_noise(train, h.label_noise, mode=h.noise_mode, seed=h.noise_seed)
            train.transform = self._transform(train=True)
            val = self._limit(val, h.val_limit, "val")
            val.transform = self._transform(train=False)
            self.train_set, self.val_set = train, val
        if stage in (None, "test") and self.test_set is None:
            self.test_set = self._limit(self._build("test", None), h.test_limit, "test")
            self.test_set.transform = self._transform(train=False)
        if stage == "predict" and self.predict_set is None:
            ds = self._build(h.predict_split, None)
            ds = self._limit(ds, h.test_limit if h.predict_split == "test" else None, "predict")
            ds.transform = self._transform(train=False)
            self.predict_set = ds
        for ds in (self.train_set, self.val_set, self.test_set):
            if ds is not None and ds.num_classes != self.num_classes:
                raise ValueError(f"split has {ds.num_classes} classes but the data module declared {self.num_classes}")

    # -- loaders -----------------------------------------------------------------------------------------
    def _loader(self, ds: FERDataset, train: bool) -> DataLoader:
        h = self.hparams
        kw: dict[str, Any] = dict(
            batch_size=h.batch_size if train else (h.eval_batch_size or h.batch_size),
            num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0,
            pin_memory=False,
        )
        if train:
            sampler = self.make_sampler(ds)
            if sampler is None:
                kw["shuffle"] = True
            else:
                kw["sampler"] = sampler
            kw["drop_last"] = h.drop_last
        return DataLoader(ds, **kw)

    def make_sampler(self, ds: FERDataset):
        h = self.hparams
        if h.sampler == "none":
            return None
        from ferkit.data.samplers import ClassBalancedSampler, MinimalRandomResamplingSampler

        labels = np.asarray(ds.labels)
        if h.sampler == "progressive":
            from ferkit.data.progressive_sampler import ProgressivelyBalancedSampler

            max_epochs = getattr(self.trainer, "max_epochs", None)
            if not max_epochs or max_epochs < 0:
                raise ValueError("sampler='progressive' needs a trainer with a finite max_epochs (its schedule runs over them)")
            return ProgressivelyBalancedSampler(labels, max_epochs=max_epochs, seed=h.seed)
        cls = ClassBalancedSampler if h.sampler == "balanced" else MinimalRandomResamplingSampler
        return cls(labels, seed=h.seed)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, train=False)
