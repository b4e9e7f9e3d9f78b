"""Omni's parts: the on-disk embedding store, embedding through predict (and its resume), condensation (smoke,
labels, resume), the manifest, overlap exclusion, OmniSource and the OmniClassifier's losses and state."""
from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import torch

from ferkit.core.errors import DataError
from ferkit.core.labels import LabelSpace
from ferkit.data import OmniSource, SyntheticSource
from ferkit.data.folder import ImageFolderFER, UnlabelledImageFolder
from ferkit.data.manifest import ManifestDataset, ManifestRow, overlap_mask, read_manifest, write_manifest
from ferkit.methods.omni import CondensedSet, DatasetCondensation, OmniClassifier, embed_pool
from ferkit.models import FERNetConfig
from ferkit.state.embedding_store import EmbeddingStore

SPACE = LabelSpace.basic(7)


# -- embedding store ---------------------------------------------------------------------------------------
def test_embedding_store_writes_by_index_and_resumes(tmp_path):
    store = EmbeddingStore.create(tmp_path / "emb", 10, 4, 3, ids=[f"img{i}" for i in range(10)])
    assert store.missing().tolist() == list(range(10)) and not store.complete
    f, p = torch.randn(3, 4), torch.softmax(torch.randn(3, 3), 1)
    store.write(torch.tensor([7, 2, 5]), f, p)
    store.flush()
    again = EmbeddingStore.create(tmp_path / "emb", 10, 4, 3)   # reopened, not wiped
    assert again.missing().tolist() == [0, 1, 3, 4, 6, 8, 9]
    torch.testing.assert_close(again.features.read(2, 3), f[1:2].half().float())
    torch.testing.assert_close(again.probs.read(5, 6), p[2:3].half().float())
    assert again.ids()[7] == "img7"
    with pytest.raises(ValueError, match="exists"):
        EmbeddingStore.create(tmp_path / "emb", 11, 4, 3)
    with pytest.raises(IndexError, match="outside 0..9"):
        again.write(torch.tensor([10]), torch.zeros(1, 4), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="non-finite"):
        again.write(torch.tensor([0]), torch.full((1, 4), float("nan")), torch.zeros(1, 3))
    with pytest.raises(FileNotFoundError, match="ferkit omni embed"):
        EmbeddingStore(tmp_path / "nothing")


def _tiny_module(num_classes=7, img=32):
    return OmniClassifier(net=FERNetConfig(backbone="test_resnet", small_input=True), num_classes=num_classes,
                          class_names=list(SPACE.names), img_size=img, in_chans=3)


def test_embed_pool_through_predict_and_resume(tmp_path, synthetic_dm, one_thread):
    dm = synthetic_dm(num_train=8, num_val=8, num_test=21, image_size=32)
    dm.setup("test")
    module = _tiny_module().eval()
    store = embed_pool(module, dm.test_set, tmp_path / "emb", 7, batch_size=8)
    assert store.complete
    x = torch.stack([dm.test_set[i]["image"] for i in range(21)])
    module.eval()
    with torch.no_grad():
        feats = torch.nn.functional.normalize(module.model.forward_features(x), dim=1)
        probs = torch.softmax(module(x), 1)
    torch.testing.assert_close(store.features.read(0, 21), feats.half().float(), atol=2e-3, rtol=0)
    torch.testing.assert_close(store.probs.read(0, 21), probs.half().float(), atol=2e-3, rtol=0)
    # an interrupted run: rows 5..12 were never written; a second call fills exactly those
    done = np.memmap(tmp_path / "emb/done.u8", np.uint8, "r+", shape=(21,))
    done[5:13] = 0
    done.flush()
    ref = store.features.read(0, 21).clone()
    rows = np.memmap(tmp_path / "emb/features.f16", np.float16, "r+", shape=(21, store.dim))
    rows[5:13] = 0
    rows[0] = 7.0  # a row marked done: a second call must leave it alone
    rows.flush()
    again = embed_pool(module, dm.test_set, tmp_path / "emb", 7, batch_size=8)
    assert again.complete
    filled = again.features.read(0, 21)
    assert torch.all(filled[0] == 7.0)  # not embedded again
    torch.testing.assert_close(filled[1:], ref[1:], atol=2e-3, rtol=0)  # rows 5..12 filled, the rest kept


# -- condensation ------------------------------------------------------------------------------------------
def _tiny_set(n_per_class=6, num_classes=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    images = torch.randn(len(labels), 1, size, size, generator=g) + labels[:, None, None, None].float()
    return [{"image": im, "label": int(y)} for im, y in zip(images, labels)], labels


@pytest.mark.parametrize("method", ["gradient_matching", "distribution_matching"])
def test_condensation_smoke(method, tmp_path, one_thread):
    data, labels = _tiny_set()
    dc = DatasetCondensation(method=method, ipc=2, iterations=2, batch_real=4, width=8, depth=2, lr_img=0.1)
    init = DatasetCondensation(method=method, ipc=2, iterations=0, batch_real=4, width=8, depth=2).run(data, labels, ["a", "b", "c"])
    out = dc.run(data, labels, ["a", "b", "c"])
    assert out.images.shape == (6, 1, 8, 8) and torch.isfinite(out.images).all()
    assert out.labels.tolist() == [0, 0, 1, 1, 2, 2] and out.ipc == 2
    assert not torch.equal(out.images, init.images)   # the images moved
    # real init: every initial image is near a real image of its own class
    real = torch.stack([d["image"] for d in data])
    for img, y in zip(init.images, init.labels):
        dist = ((real - img) ** 2).flatten(1).sum(1)
        assert int(labels[dist.argmin()]) == int(y) and float(dist.min()) < 0.1
    path = out.save(tmp_path / "d.pt")
    back = CondensedSet.load(path)
    assert back.class_names == ["a", "b", "c"] and torch.equal(back.images, out.images)
    assert back.info["method"] == method and back.info["iterations"] == 2


def test_condensation_resume_equals_uninterrupted(tmp_path, one_thread):
    data, labels = _tiny_set()
    kw = dict(method="gradient_matching", ipc=1, batch_real=4, width=8, depth=2, save_every=2)
    full = DatasetCondensation(iterations=4, **kw).run(data, labels, ["a", "b", "c"])
    ckpt = tmp_path / "state.pt"
    DatasetCondensation(iterations=2, **kw).run(data, labels, ["a", "b", "c"], checkpoint=ckpt)  # "interrupted" at 2
    assert torch.load(ckpt, weights_only=True)["iteration"] == 2
    calls: list[int] = []
    resumed = DatasetCondensation(iterations=4, **kw).run(data, labels, ["a", "b", "c"], checkpoint=ckpt,
                                                          progress=calls.append)
    assert len(calls) == 2  # only iterations 3 and 4 ran: the first two came from the checkpoint
    torch.testing.assert_close(resumed.images, full.images)
    with pytest.raises(ValueError, match="another run"):
        DatasetCondensation(iterations=4, **{**kw, "ipc": 2}).run(data, labels, ["a", "b", "c"], checkpoint=ckpt)


def test_condensation_errors(tmp_path):
    data, labels = _tiny_set()
    with pytest.raises(ValueError, match="no images of class"):
        DatasetCondensation(iterations=1).run(data, labels, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="method must be"):
        DatasetCondensation(method="kip")
    torch.save({"images": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a ferkit distilled set"):
        CondensedSet.load(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError, match="ferkit omni distill"):
        CondensedSet.load(tmp_path / "absent.pt")


# -- manifest and overlap exclusion --------------------------------------------------------------------------
def _write_images(folder, n, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(n):
        img = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"img{i}.png"), img)
        images.append(img)
    return images


def test_overlap_exclusion_removes_a_planted_test_duplicate(tmp_path):
    test_imgs = _write_images(tmp_path / "eval/test/happy", 4, seed=1)
    _write_images(tmp_path / "pool/a", 5, seed=2)
    _write_images(tmp_path / "pool/b/c", 3, seed=3)
    cv2.imwrite(str(tmp_path / "pool/b/renamed_copy.bmp"), test_imgs[2])  # the same pixels, other name and format
    pool = UnlabelledImageFolder(tmp_path / "pool", SPACE)
    eval_set = ImageFolderFER(tmp_path / "eval", split="test")
    mask = overlap_mask(pool, [eval_set], by=("pixels",))
    assert [pool.ids[i] for i in np.flatnonzero(mask)] == ["b/renamed_copy.bmp"]
    assert not overlap_mask(pool, [eval_set], by=("id",)).any()
    # by id: an eval set holding the same relative path
    same_ids = UnlabelledImageFolder(tmp_path / "pool/a", SPACE)
    same_ids.ids = ["a/img1.png"]
    same_ids.paths = same_ids.paths[:1]
    same_ids.labels = same_ids.labels[:1]
    assert [pool.ids[i] for i in np.flatnonzero(overlap_mask(pool, [same_ids], by=("id",)))] == ["a/img1.png"]


def test_manifest_round_trip_and_errors(tmp_path):
    _write_images(tmp_path / "pool", 3, seed=0)
    rows = [ManifestRow("img0.png", 3, 0.91, 0.97, 0), ManifestRow("img2.png", 0, 0.85, float("nan"), 2)]
    path = write_manifest(tmp_path / "mined.csv", rows, SPACE.names)
    assert next(csv.reader(path.open())) == ["path", "pseudo_label", "similarity", "confidence", "pool_index"]
    ds = ManifestDataset(path, SPACE, root=tmp_path / "pool")
    assert ds.labels.tolist() == [3, 0] and ds.ids == ["img0.png", "img2.png"]
    assert ds[1]["image"].shape == (12, 12, 3) and ds[1]["label"] == 0
    assert np.isnan(ds.confidence[1]) and ds.pool_index.tolist() == [0, 2]
    bad = tmp_path / "bad.csv"
    bad.write_text("path,pseudo_label\nimg0.png,elated\n")
    with pytest.raises(DataError, match=r"bad.csv, row 2: pseudo_label 'elated'"):
        read_manifest(bad, SPACE)
    bad.write_text("file,label\n")
    with pytest.raises(DataError, match="lacks column"):
        read_manifest(bad, SPACE)
    with pytest.raises(DataError, match="pass the pool folder as root="):
        ManifestDataset(path, SPACE, root=tmp_path)


# -- OmniSource ------------------------------------------------------------------------------------------------
def test_omni_source_fraction_pool_and_mined(tmp_path):
    base = SyntheticSource(num_train=70, num_val=7, num_test=7, image_size=32)
    src = OmniSource(base, labelled_fraction=0.2, seed=0)
    assert "pool" in src.splits and src.label_space == base.label_space
    train, pool = src.build("train"), src.build("pool")
    assert len(train) + len(pool) == 70 and 10 <= len(train) <= 18
    assert np.bincount(train.labels, minlength=7).min() >= 1
    assert set(train.sources.tolist()) == {0} and train[0]["source"] == 0
    assert (pool.hidden_labels == pool.labels).all()
    rows = [ManifestRow(pool.ids[i], int(pool.labels[i]) if i else (int(pool.labels[i]) + 1) % 7, 0.9, 0.9, i) for i in range(5)]
    write_manifest(tmp_path / "mined.csv", rows, base.label_space.names)
    mined_src = OmniSource(base, labelled_fraction=0.2, seed=0, mined_manifest=str(tmp_path / "mined.csv"))
    both = mined_src.build("train")
    assert len(both) == len(train) + 5 and both.sources.tolist() == [0] * len(train) + [1] * 5
    item = both[len(train)]
    assert item["source"] == 1 and item["label"] == rows[0].pseudo_label   # the pseudo-label, not the hidden one
    assert np.array_equal(item["image"], pool[0]["image"])
    bad = [ManifestRow("x", 0, 0.9, 0.9, 10_000)]
    write_manifest(tmp_path / "bad.csv", bad, base.label_space.names)
    with pytest.raises(DataError, match="pool_index 10000 is not a row"):
        OmniSource(base, labelled_fraction=0.2, mined_manifest=str(tmp_path / "bad.csv")).build("train")


def test_omni_source_pool_limit_samples_the_pool_the_same_way_for_every_reader(tmp_path):
    base = SyntheticSource(num_train=70, num_val=7, num_test=7, image_size=32)
    full_pool = OmniSource(base, labelled_fraction=0.2, seed=0).build("pool")
    src = OmniSource(base, labelled_fraction=0.2, seed=0, pool_limit=9)
    pool = src.build("pool")
    assert len(pool) == 9 and len(src.build("train")) == len(OmniSource(base, labelled_fraction=0.2).build("train"))
    # a sample of the full pool (same images), in index order, identical when built again
    full_images = {np.asarray(full_pool[i]["image"]).tobytes() for i in range(len(full_pool))}
    assert all(np.asarray(pool[i]["image"]).tobytes() in full_images for i in range(9))
    again = OmniSource(base, labelled_fraction=0.2, seed=0, pool_limit=9).build("pool")
    assert all(np.array_equal(pool[i]["image"], again[i]["image"]) for i in range(9))
    # a manifest's pool_index refers to the limited pool, in the fit as in the mining
    rows = [ManifestRow(pool.ids[i], int(pool.labels[i]), 0.9, 0.9, i) for i in (0, 8)]
    write_manifest(tmp_path / "mined.csv", rows, base.label_space.names)
    train = OmniSource(base, labelled_fraction=0.2, seed=0, pool_limit=9, mined_manifest=str(tmp_path / "mined.csv")).build("train")
    assert np.array_equal(train[len(train) - 1]["image"], pool[8]["image"])
    with pytest.raises(ValueError, match="pool_limit"):
        OmniSource(base, labelled_fraction=0.2, pool_limit=0)


# -- OmniClassifier --------------------------------------------------------------------------------------------
def test_omni_classifier_weights_sources_and_keeps_distilled_in_state(one_thread):
    torch.manual_seed(0)
    module = _tiny_module()
    distilled = CondensedSet(torch.randn(14, 3, 16, 16), torch.arange(7).repeat_interleave(2), list(SPACE.names))
    module.set_distilled(distilled)   # resized to the model's 32 px
    assert module.distilled_images.shape == (14, 3, 32, 32)
    batch = {"image": torch.randn(4, 3, 32, 32), "label": torch.tensor([0, 1, 2, 3]), "index": torch.arange(4),
             "source": torch.tensor([0, 0, 1, 1])}
    module.train()
    logs = {}
    module.log = lambda name, value, **kw: logs.__setitem__(name, float(value))
    module.hparams.distilled_weight = 0.0
    module.hparams.mined_weight = 0.0
    only_labelled = module.training_step(batch, 0)
    logits = module(batch["image"])   # train-mode BN: same batch, same statistics
    ce = torch.nn.functional.cross_entropy(logits, batch["label"], reduction="none")
    torch.testing.assert_close(only_labelled, ce[:2].sum() / 4)
    module.hparams.mined_weight = 1.0
    torch.testing.assert_close(module.training_step(batch, 0), ce.mean())
    module.hparams.distilled_weight = 0.5
    with_distilled = module.training_step(batch, 0)
    assert "train/distilled" in logs and logs["train/mined_fraction"] == 0.5
    torch.testing.assert_close(with_distilled, torch.tensor(logs["train/real"] + 0.5 * logs["train/distilled"]))
    # the distilled set travels in the state dict into a fresh module
    fresh = _tiny_module()
    fresh.configure_model()
    module_state = module.state_dict()
    fresh.load_state_dict(module_state)
    assert torch.equal(fresh.distilled_images, module.distilled_images)
    assert "condensation" not in module.hparams
    with pytest.raises(ValueError, match="differ from the model"):
        module.set_distilled(CondensedSet(torch.zeros(2, 3, 32, 32), torch.tensor([0, 1]), ["a", "b"]))


def test_condensation_leaves_the_global_random_state_alone():
    data, labels = _tiny_set()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    DatasetCondensation(method="distribution_matching", ipc=1, iterations=1, batch_real=4, width=8, depth=2).run(
        data, labels, ["a", "b", "c"])
    assert torch.equal(torch.rand(3), expected)
