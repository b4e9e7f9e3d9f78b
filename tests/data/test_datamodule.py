import numpy as np
import pytest
import torch

from ferkit.core.errors import DataError
from ferkit.data.base import SubsetFER
from ferkit.data.datamodule import FERDataModule
from ferkit.data.registry import available_datasets, build_dataset

SMALL = {"num_train": 210, "num_val": 70, "num_test": 70, "image_size": 32}


def _dm(**kw):
    args = dict(dataset="synthetic", dataset_kwargs=SMALL, img_size=32, channels=3, batch_size=16)
    args.update(kw)
    return FERDataModule(**args)


def test_label_space_known_before_setup_and_batches_follow_the_contract():
    dm = _dm()
    assert dm.num_classes == 7 and dm.class_names[0] == "angry" and dm.class_names[6] == "neutral"
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (16, 3, 32, 32)
    assert batch["label"].dtype == torch.long and batch["index"].dtype == torch.long
    assert batch["landmarks"].shape == (16, 68, 2)
    assert len(dm.train_set) == 210 and len(dm.val_set) == 70


def test_limit_is_stratified_and_reindexed():
    dm = _dm(train_limit=70)
    dm.setup("fit")
    ds = dm.train_set
    assert isinstance(ds, SubsetFER) and len(ds) == 70
    counts = np.bincount(ds.labels, minlength=7)
    assert counts.min() >= 8 and counts.max() <= 12  # 210 balanced -> 70 keeps ~10 per class
    assert ds[69]["index"] == 69  # per-sample state stays dense


def test_label_noise_keeps_clean_labels_and_two_views():
    dm = _dm(label_noise=0.4, noise_seed=3, strong_preset="strong", train_preset="weak")
    dm.setup("fit")
    ds = dm.train_set
    flipped = ds.labels != ds.clean_labels
    assert 0.25 < flipped.mean() < 0.55
    item = ds[0]
    assert {"image", "image_strong", "clean_label", "label", "index"} <= set(item)
    # the original dataset object is not mutated by noise: validation labels are untouched
    assert dm.val_set.clean_labels is None


@pytest.mark.parametrize("sampler", ["balanced", "mrr", "progressive"])
def test_samplers_plug_in(sampler):
    from types import SimpleNamespace

    dm = _dm(sampler=sampler)
    dm.trainer = SimpleNamespace(max_epochs=3)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.sampler is not None and type(loader.sampler).__name__ != "RandomSampler"
    n = sum(len(b["index"]) for b in loader)
    assert n > 0


def test_progressive_sampler_needs_max_epochs():
    dm = _dm(sampler="progressive")
    dm.setup("fit")
    with pytest.raises(ValueError, match="max_epochs"):
        dm.train_dataloader()


def test_registry_errors():
    assert {"synthetic", "fer2013", "ferplus", "rafdb", "affectnet", "folder"} <= set(available_datasets())
    with pytest.raises(ValueError, match="unknown dataset"):
        FERDataModule(dataset="nope")
    with pytest.raises(DataError, match="needs data.root"):
        build_dataset("fer2013", None, "train")
    with pytest.raises(DataError, match="no 'val' split"):
        build_dataset("rafdb", "/nonexistent", "val")
    with pytest.raises(ValueError, match="sampler"):
        _dm(sampler="weird")
