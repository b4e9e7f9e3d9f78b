from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from ferkit.core.errors import DataError
from ferkit.data import (BalancedSampling, FolderSource, MRRSampling, ProgressiveSampling, RAFDBSource,
                         SyntheticSource, check_data)
from ferkit.data.base import SubsetFER
from ferkit.data.datamodule import FERDataModule

SMALL = dict(num_train=210, num_val=70, num_test=70, image_size=32)


def _dm(**kw):
    args = dict(dataset=SyntheticSource(**SMALL), img_size=32, channels=3, batch_size=16)
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


def test_default_source_is_synthetic():
    dm = FERDataModule()
    assert isinstance(dm.source, SyntheticSource) and dm.num_classes == 7


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
    labels0 = dm.source.build("train").labels.copy()
    dm.setup("fit")
    ds = dm.train_set
    flipped = ds.labels != ds.clean_labels
    assert 0.25 < flipped.mean() < 0.55
    item = ds[0]
    assert {"image", "image_strong", "clean_label", "label", "index"} <= set(item)
    # the source is not mutated by noise: a fresh build has the original labels and no clean copy; validation
    # labels are untouched
    fresh = dm.source.build("train")
    assert fresh.clean_labels is None and np.array_equal(fresh.labels, labels0)
    assert np.array_equal(ds.clean_labels, labels0)
    assert dm.val_set.clean_labels is None


@pytest.mark.parametrize("factory, cls", [(BalancedSampling(), "ClassBalancedSampler"),
                                          (MRRSampling(per_class_cap=20), "MinimalRandomResamplingSampler"),
                                          (ProgressiveSampling(), "ProgressivelyBalancedSampler")])
def test_typed_samplers_plug_in(factory, cls):
    dm = _dm(sampler=factory)
    dm.trainer = SimpleNamespace(max_epochs=3)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert type(loader.sampler).__name__ == cls
    n = sum(len(b["index"]) for b in loader)
    assert n == len(loader.sampler)


def test_progressive_sampler_needs_max_epochs_and_strings_are_rejected():
    dm = _dm(sampler=ProgressiveSampling())
    dm.setup("fit")
    with pytest.raises(ValueError, match="max_epochs"):
        dm.train_dataloader()
    assert len(_dm(sampler=ProgressiveSampling(max_epochs=4)).make_sampler(SimpleNamespace(labels=[0, 1, 1]))) == 3
    with pytest.raises(TypeError, match="SamplerFactory"):
        _dm(sampler="balanced")
    with pytest.raises(TypeError, match="DatasetSource"):
        FERDataModule(dataset="synthetic")
    with pytest.raises(ValueError, match="on_bad_image"):
        _dm(on_bad_image="ignore")
    with pytest.raises(ValueError, match="resize"):
        _dm(resize="stretch")


def test_source_without_val_split_names_val_fraction(tmp_path):
    with pytest.raises(DataError, match="val_fraction"):
        RAFDBSource(str(tmp_path)).build("val")


def test_judge_dataloader_is_the_training_set_in_order_in_the_eval_transform():
    dm = _dm(label_noise=0.3, train_preset="strong", hflip=1.0)
    dm.setup("fit")
    loader = dm.judge_dataloader(batch_size=50)
    batches = list(loader)
    index = torch.cat([b["index"] for b in batches])
    assert index.tolist() == list(range(len(dm.train_set)))  # every sample once, never shuffled
    labels = torch.cat([b["label"] for b in batches])
    assert labels.tolist() == dm.train_set.labels.tolist()  # the (noisy) training labels
    # eval transform: deterministic and unflipped, unlike the training view
    again = torch.cat([b["image"] for b in dm.judge_dataloader(batch_size=50)])
    assert torch.equal(torch.cat([b["image"] for b in batches]), again)
    plain = dm.make_transform("eval", 0.0, "x")(image=dm.train_set.load_image(0))["image"]
    assert torch.equal(batches[0]["image"][0], plain)
    # a training preset with flips gives a different view
    weak = next(iter(dm.judge_dataloader(preset="strong", batch_size=50)))["image"]
    assert not torch.equal(weak, batches[0]["image"])


def _tree(root: Path, folders: dict[str, int], size=(12, 12)) -> None:
    for folder, count in folders.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            cv2.imwrite(str(root / folder / f"img{k}.png"), np.full((*size, 3), 20 * k + 10, np.uint8))


def test_folder_validation_alias_and_missing_val_message(tmp_path):
    _tree(tmp_path, {"train/happy": 3, "train/sad": 3, "test/happy": 2, "test/sad": 2})
    src = FolderSource(str(tmp_path))
    assert src.splits == ("train", "test")
    dm = FERDataModule(dataset=src, img_size=16, batch_size=4)
    with pytest.raises(DataError, match="val_fraction"):
        src.build("val")
    _tree(tmp_path, {"validation/happy": 1, "validation/sad": 1})
    src = FolderSource(str(tmp_path))
    assert src.splits == ("train", "val", "test") and len(src.build("val")) == 2
    dm = FERDataModule(dataset=src, img_size=16, batch_size=4)
    dm.setup("fit")
    assert len(dm.val_set) == 2
    (tmp_path / "validation").rename(tmp_path / "valid")
    assert len(FolderSource(str(tmp_path)).build("val")) == 2


def test_folder_class_only_in_train_names_split_and_fix(tmp_path):
    _tree(tmp_path, {"train/happy": 2, "train/contempt": 2, "test/happy": 2})
    with pytest.raises(DataError, match=r"'test' split has 7 classes but train has 8.*contempt.*num_classes="):
        FERDataModule(dataset=FolderSource(str(tmp_path)), img_size=16).setup("test")
    dm = FERDataModule(dataset=FolderSource(str(tmp_path), num_classes=8), img_size=16)
    dm.setup("test")
    assert dm.test_set.num_classes == 8


@pytest.mark.parametrize("mode", ["squash", "center_crop", "pad"])
def test_non_square_images_resize_mode(tmp_path, mode, caplog):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :10] = 255  # a white band on the left quarter
    (tmp_path / "train" / "happy").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "train" / "happy" / "a.png"), img)
    dm = FERDataModule(dataset=FolderSource(str(tmp_path)), img_size=20, channels=1, mean=[0.0], std=[1.0],
                       resize=mode, val_fraction=0.0)
    t = dm.make_transform("eval", 0.0, "x")
    with caplog.at_level("INFO", logger="ferkit.data.transforms"):
        out = t(image=cv2.imread(str(tmp_path / "train" / "happy" / "a.png"))[..., ::-1])["image"][0]
    assert f"resize={mode!r}" in caplog.text
    white_cols = int((out[10] > 0.5).sum())
    # squash: 10/40 of 20 columns; centre crop keeps columns 10..29 (no white); pad keeps 10/40 of 40 -> 5 columns
    assert white_cols == {"squash": 5, "center_crop": 0, "pad": 5}[mode]
    if mode == "pad":
        assert float(out[0].max()) == 0.0  # padded rows above the image are black
    elif mode == "squash":
        assert float(out[0, 0]) > 0.5


def test_predict_folder_reads_unlabelled_images_recursively(tmp_path):
    _tree(tmp_path / "in", {"a": 2, "a/b": 1}, size=(10, 14))
    cv2.imwrite(str(tmp_path / "in" / "c.jpg"), np.zeros((8, 8, 3), np.uint8))
    dm = _dm(predict_folder=str(tmp_path / "in"))
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert "label" not in batch and batch["image"].shape == (4, 3, 32, 32)
    assert sorted(batch["id"]) == ["a/b/img0.png", "a/img0.png", "a/img1.png", "c.jpg"]
    assert batch["index"].tolist() == [0, 1, 2, 3]


def _folder_with_bad_files(tmp_path: Path) -> Path:
    _tree(tmp_path, {"train/happy": 4, "train/sad": 4, "test/happy": 2, "test/sad": 2})
    (tmp_path / "train" / "happy" / "img1.png").write_bytes(b"not a png")
    (tmp_path / "train" / "sad" / "img2.png").write_bytes(b"")
    (tmp_path / "test" / "sad" / "img0.png").write_bytes(b"\x89PNG broken")
    return tmp_path


def test_check_lists_every_bad_file_and_exits_nonzero(tmp_path):
    import io

    dm = FERDataModule(dataset=FolderSource(str(_folder_with_bad_files(tmp_path))), img_size=16)
    problems = dm.check(progress=False)
    assert sorted(p for p, _ in problems) == ["happy/img1.png", "sad/img0.png", "sad/img2.png"]
    assert any("empty" in reason for _, reason in problems)
    out = io.StringIO()
    assert check_data(dm, stream=out, progress=False) == 1
    text = out.getvalue()
    assert "happy/img1.png" in text and "sad/img2.png" in text and "3 bad file(s)" in text
    good = FERDataModule(dataset=SyntheticSource(num_train=5, num_val=3, num_test=3, image_size=24))
    assert check_data(good, stream=io.StringIO(), progress=False) == 0


def test_on_bad_image_skip_counts_and_logs_raise_stops(tmp_path, caplog):
    root = _folder_with_bad_files(tmp_path)
    dm = FERDataModule(dataset=FolderSource(str(root)), img_size=16, batch_size=8, on_bad_image="skip",
                       val_fraction=0.0)
    dm.setup("fit")
    seen = 0
    with caplog.at_level("WARNING", logger="ferkit.data.datamodule"):
        for batch in dm.train_dataloader():
            batch = dm.on_before_batch_transfer(batch, 0)
            assert "bad_images" not in batch
            seen += len(batch["index"])
    assert seen == 6 and sorted(i for i, _ in dm.skipped_images) == ["happy/img1.png", "sad/img2.png"]
    assert "happy/img1.png" in caplog.text and "skipped" in caplog.text
    strict = FERDataModule(dataset=FolderSource(str(root)), img_size=16, batch_size=8)
    strict.setup("fit")
    with pytest.raises(DataError, match="img"):
        list(strict.train_dataloader())


def test_hparams_are_plain_data_that_rebuild_the_data_module(tmp_path):
    import io

    dm = _dm(sampler=MRRSampling(class_probs=[1.0] * 7, per_class_cap=5), label_noise=0.2)
    buffer = io.BytesIO()
    torch.save({"datamodule_hyper_parameters": dict(dm.hparams)}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)["datamodule_hyper_parameters"]  # what resuming a checkpoint reads
    assert saved["dataset"] == {"class_path": "ferkit.data.sources.SyntheticSource",
                                "init_args": {**SMALL, "num_classes": 7, "seed": 0, "difficulty": 1.0,
                                              "ambiguity": 1.0, "grayscale": False, "cache": False}}
    again = FERDataModule.from_hparams({**saved, "_class_path": "ignored"}, batch_size=4)
    assert isinstance(again.source, SyntheticSource) and again.source.num_train == 210
    assert isinstance(again.sampler_factory, MRRSampling) and again.sampler_factory.per_class_cap == 5
    assert again.hparams.batch_size == 4 and again.hparams.label_noise == 0.2
    again.setup("fit")
    dm.setup("fit")
    np.testing.assert_array_equal(again.train_set.labels, dm.train_set.labels)  # same data, same noise


def test_a_source_inside_a_source_is_saved_as_plain_data(tmp_path):
    """OmniSource holds its labelled source: the checkpoint must still load with weights_only=True (as
    `ferkit test --ckpt_path` and `ferkit omni embed` read it) and rebuild the same data."""
    import io

    from ferkit.data import OmniSource

    dm = FERDataModule(dataset=OmniSource(SyntheticSource(**SMALL), labelled_fraction=0.5, pool_limit=20),
                       img_size=32, batch_size=8)
    buffer = io.BytesIO()
    torch.save({"datamodule_hyper_parameters": dict(dm.hparams)}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)["datamodule_hyper_parameters"]
    assert saved["dataset"]["class_path"] == "ferkit.data.omni.OmniSource"
    assert saved["dataset"]["init_args"]["labelled"]["class_path"] == "ferkit.data.sources.SyntheticSource"
    again = FERDataModule.from_hparams({**saved, "_class_path": "ignored"})
    assert isinstance(again.source, OmniSource) and isinstance(again.source.labelled, SyntheticSource)
    assert again.source.pool_limit == 20
    again.setup("fit")
    dm.setup("fit")
    np.testing.assert_array_equal(again.train_set.labels, dm.train_set.labels)


def test_lightning_load_from_checkpoint_rebuilds_the_data_module(tmp_path):
    dm = _dm(sampler=BalancedSampling(num_samples=30))
    torch.save({"datamodule_hyper_parameters": dict(dm.hparams), "state_dict": {}, "pytorch-lightning_version": "2.6.0"},
               tmp_path / "x.ckpt")
    again = FERDataModule.load_from_checkpoint(tmp_path / "x.ckpt")
    assert isinstance(again.source, SyntheticSource) and isinstance(again.sampler_factory, BalancedSampling)
    assert again.sampler_factory.num_samples == 30
