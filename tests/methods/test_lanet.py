"""LA-Net: the network, its export, the LightningModule on synthetic faces, and resume restoring the memory."""
from __future__ import annotations

import warnings

import lightning as L
import numpy as np
import pytest
import torch

from conftest import make_synthetic_dm
from ferkit.export import export_inference_model, load_inference_model, save_inference_model
from ferkit.methods.lanet import LANetClassifier, LANetModel
from ferkit.models import FERNet, FERNetConfig

SIZE = 32
NET = "resnet10t"  # the smallest timm ResNet: the same code paths as resnet18 at half the cost


@pytest.fixture(scope="module")
def net() -> LANetModel:
    torch.manual_seed(0)
    return LANetModel(FERNetConfig(NET, small_input=True), num_classes=7, img_size=SIZE).eval()


def test_shapes_and_entry_points(net: LANetModel) -> None:
    x = torch.randn(3, 3, SIZE, SIZE)
    logits, h_e, h_l, heat = net.forward_train(x)
    assert logits.shape == (3, 7) and h_e.shape == (3, 512) and h_l.shape == (3, 64)
    assert heat.shape == (3, 19, SIZE // 2, SIZE // 2) and net.heatmap_stride == 2 and net.heatmap_size() == SIZE // 2
    torch.testing.assert_close(net(x), logits)  # forward = the expression path only
    k_e, k_l = net.forward_keys(x)
    torch.testing.assert_close(k_e, h_e)
    torch.testing.assert_close(k_l, h_l)
    big = LANetModel(FERNetConfig(NET), num_classes=7, img_size=64)
    assert big.heatmap_stride == 4 and big.forward_train(torch.randn(1, 3, 64, 64))[3].shape[-1] == 16


def test_both_branches_start_from_the_same_backbone_weights() -> None:
    torch.manual_seed(1)
    m = LANetModel(FERNetConfig(NET, small_input=True), num_classes=7, img_size=SIZE)
    assert m.lmk_names == ["layer2", "layer3", "layer4"]  # the stages after the trunk, from timm's feature_info
    for name in ("layer2", "layer3", "layer4"):
        a, b = getattr(m.backbone.model, name).state_dict(), m.lmk_layers[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("backbone", ["mobilenetv3_small_050", "efficientnet_b0"])
def test_any_timm_cnn_with_stages(backbone) -> None:
    """The branches come from timm's feature API, not from ResNet attribute names."""
    torch.manual_seed(0)
    m = LANetModel(FERNetConfig(backbone), num_classes=7, img_size=SIZE).eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    logits, h_e, h_l, heat = m.forward_train(x)
    assert logits.shape == (2, 7) and h_e.shape == (2, m.num_features) and h_l.shape == (2, m.lmk_dim)
    assert heat.shape == (2, 19, SIZE // 4, SIZE // 4) and m.heatmap_stride == 4
    with torch.no_grad():
        torch.testing.assert_close(m(x), logits)
        plain = export_inference_model(m)
        assert type(plain) is FERNet
        torch.testing.assert_close(plain(x), m(x))


def test_eval_logits_do_not_depend_on_batch_companions(net: LANetModel) -> None:
    x = torch.randn(4, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(net(x)[:1], net(x[:1]), rtol=1e-4, atol=1e-5)


def test_export_is_a_plain_fernet_with_identical_logits(net: LANetModel, tmp_path) -> None:
    plain = export_inference_model(net)
    assert isinstance(plain, FERNet)
    ref = FERNet(FERNetConfig(NET, small_input=True), num_classes=7, img_size=SIZE)
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in ref.parameters())
    assert sum(p.numel() for p in net.parameters()) > 1.5 * sum(p.numel() for p in plain.parameters())
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), net(x))
    for fmt in ("state_dict", "torchscript"):
        again = load_inference_model(save_inference_model(net, tmp_path / f"lanet.{fmt}", format=fmt))
        with torch.no_grad():
            torch.testing.assert_close(again(x), net(x))


def test_arm_as_the_expression_pool() -> None:
    m = LANetModel(FERNetConfig(NET, small_input=True, pool="arm", pool_kwargs={"shuffle": 16, "kernel_size": 16, "stride": 8}),
                   num_classes=7, img_size=48).eval()
    x = torch.randn(2, 3, 48, 48)
    logits, h_e, _, _ = m.forward_train(x)
    assert h_e.shape == (2, m.num_features)
    with torch.no_grad():
        torch.testing.assert_close(export_inference_model(m)(x), m(x))


FIT = 24  # the Lightning runs use 24 px inputs (heatmaps 12 x 12) to stay fast on a shared CPU


def _dm(**kw):
    args = dict(batch_size=8, label_noise=0.25, train_preset="eval")
    args.update(kw)
    return make_synthetic_dm(num_train=16, num_val=4, num_test=4, image_size=FIT, **args)


def _model(dm, **kw) -> LANetClassifier:
    torch.manual_seed(0)
    args = dict(num_classes=dm.num_classes, class_names=dm.class_names, img_size=FIT, queue_size=32, lde_k=3,
                net=FERNetConfig(NET, small_input=True))
    args.update(kw)
    return LANetClassifier(**args)


def _trainer(root, epochs: int, **kw) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=str(root), log_every_n_steps=1,
                     num_sanity_val_steps=0, **kw)


@pytest.fixture(scope="module")
def first_fit(tmp_path_factory):
    """One epoch (2 steps) of LA-Net on noisy synthetic faces, checkpointed."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    tmp = tmp_path_factory.mktemp("lanet_fit")
    dm = _dm()
    model = _model(dm)
    ckpt = ModelCheckpoint(dirpath=tmp / "ckpt", save_last=True)
    _trainer(tmp, 1, callbacks=[ckpt]).fit(model, dm)
    return model, dm, tmp / "ckpt" / "last.ckpt"


@pytest.mark.slow
def test_fit_updates_memory_and_queue_and_logs_every_loss(first_fit) -> None:
    model, dm, _ = first_fit
    bank = model.lde_bank
    assert len(bank) == 16 and bool(bank.initialized)
    noisy = torch.as_tensor(np.asarray(dm.train_set.labels))
    assert not torch.equal(noisy, torch.as_tensor(np.asarray(dm.train_set.clean_labels)))  # the noise is there
    assert torch.equal(bank.memory.argmax(1), noisy)  # one epoch: the given (noisy) label still dominates (0.9)
    assert (bank.memory.max(1).values < 1.0).all()  # ... but every row was blended once
    assert int(model.el_loss.queue.ptr) == 16 % 32
    metrics = model.trainer.callback_metrics
    for key in ("train/ce", "train/lmk", "train/kl", "train/el", "train/lmk_missing", "train/target_clean_acc", "val/acc"):
        assert key in metrics and torch.isfinite(metrics[key])
    assert float(metrics["train/lmk_missing"]) == 0.0
    # the memory against the clean labels, at the epoch's end: after one visit (momentum 0.9) every memory still ranks
    # its given label first, so none ranks a flipped sample's true label first and the memory is as right as the labels
    clean = torch.as_tensor(np.asarray(dm.train_set.clean_labels))
    assert float(metrics["memory/flipped_ranks_given_first"]) == 1.0
    assert float(metrics["memory/correct_ranks_given_first"]) == 1.0
    assert float(metrics["memory/flipped_ranks_clean_first"]) == 0.0
    assert float(metrics["memory/memory_label_accuracy"]) == pytest.approx(float((noisy == clean).float().mean()))
    assert 0.0 <= float(metrics["memory/flip_auroc"]) <= 1.0
    for k, name in enumerate(model.class_names):  # per true class: the memory still holds the given labels
        if bool((clean == k).any()):
            assert float(metrics[f"memory/recall_{name}"]) == pytest.approx(float((noisy[clean == k] == k).float().mean()))


@pytest.mark.slow
def test_resume_restores_memory_and_queues(first_fit, tmp_path) -> None:
    from lightning.pytorch.callbacks import Callback

    _, _, ckpt = first_fit
    saved = torch.load(ckpt, weights_only=False)["state_dict"]
    assert "lde_bank.values" in saved and "el_loss.queue.keys" in saved and "key_model.head.weight" in saved

    seen = {}

    class Grab(Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            seen["memory"] = pl_module.lde_bank.memory.clone()
            seen["queue"] = pl_module.el_loss.queue.labels.clone()

    second = _model(_dm())
    _trainer(tmp_path, 2, callbacks=[Grab()], enable_checkpointing=False, limit_val_batches=0).fit(second, _dm(), ckpt_path=str(ckpt))
    torch.testing.assert_close(seen["memory"], saved["lde_bank.values"])
    assert torch.equal(seen["queue"], saved["el_loss.queue.labels"])
    # the freshly initialised memory would be the one-hot labels: resume really replaced it
    assert not torch.equal(seen["memory"], torch.nn.functional.one_hot(seen["memory"].argmax(1), 7).float())
    assert int(second.el_loss.queue.ptr) == 32 % 32  # and training went on from there
    # loading for inference sizes the empty memory from the checkpoint
    loaded = LANetClassifier.load_from_checkpoint(ckpt, map_location="cpu")
    torch.testing.assert_close(loaded.lde_bank.memory, saved["lde_bank.values"])


@pytest.mark.slow
def test_class_prior_alignment_trains_checkpoints_and_resumes(tmp_path) -> None:
    """``lde_align="given"``: the prior is the given labels' class shares, the moving average is checkpointed and a
    resumed run starts from the saved values, not from a fresh first step."""
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint

    dm = _dm()
    model = _model(dm, lde_align="given")
    _trainer(tmp_path, 1, callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)]).fit(model, dm)
    shares = torch.bincount(torch.as_tensor(np.asarray(dm.train_set.labels)), minlength=dm.num_classes).float() / 16
    torch.testing.assert_close(model.lde.align_prior, shares)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["state_dict"]
    assert bool(saved["lde.align_ready"]) and torch.isclose(saved["lde.align_running"].sum(), torch.tensor(1.0))
    seen = {}

    class Grab(Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            seen["running"] = pl_module.lde.align_running.clone()

    second = _model(_dm(), lde_align="given")
    _trainer(tmp_path / "b", 2, callbacks=[Grab()], enable_checkpointing=False, limit_val_batches=0).fit(
        second, _dm(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    torch.testing.assert_close(seen["running"], saved["lde.align_running"])
    assert not torch.equal(second.lde.align_running, saved["lde.align_running"])  # and it went on moving


def test_class_prior_alignment_with_a_rebalancing_sampler_warns() -> None:
    from ferkit.data.sampling import BalancedSampling

    dm = _dm(sampler=BalancedSampling())
    dm.setup("fit")
    model = _model(dm, lde_align="given")
    model.trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    model.trainer.datamodule = dm
    with pytest.warns(UserWarning, match="undo the sampler's rebalancing"):
        model.setup("fit")
    plain = _model(dm)
    plain.trainer = model.trainer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain.setup("fit")  # LA-Net as published: no word


def test_missing_landmarks_are_masked_and_counted(tmp_path) -> None:
    dm = _dm()
    dm.setup("fit")
    dm.train_set.landmarks = dm.train_set.landmarks.copy()
    dm.train_set.landmarks[:8] = np.nan
    model = _model(dm, el_weight=0.0)
    heat = torch.zeros(8, 19, FIT // 2, FIT // 2)
    batch = {"landmarks": torch.as_tensor(dm.train_set.landmarks[4:12])}
    loss, missing = model.landmark_loss(heat, batch)
    assert int(missing) == 4
    _, weight = model.heatmap_targets(batch["landmarks"], (FIT // 2, FIT // 2))
    assert weight[:4].sum() == 0 and weight[4:].min() >= 1
    with pytest.raises(KeyError, match="landmarks_cache"):
        model.landmark_loss(heat, {})
    assert model.key_model is None  # el_weight=0: no momentum encoder


def test_setup_without_datamodule_explains() -> None:
    dm = _dm()
    model = _model(dm)
    model.trainer = L.Trainer(accelerator="cpu", logger=False)
    with pytest.raises(RuntimeError, match="init_from_labels"):
        model.setup("fit")


@pytest.mark.slow
def test_example_script_tiny(tmp_path, monkeypatch) -> None:
    import runpy
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    script = Path(__file__).resolve().parents[2] / "examples" / "lanet_synthetic.py"
    out = runpy.run_path(str(script))["main"](["--tiny", "--backbone", NET, "--out", str(tmp_path)])
    assert out["exported"] == "FERNet"
    for name in ("ce", "lanet"):
        assert out[name]["test_samples"] == 8  # the whole test split was evaluated


def test_one_training_step_with_arm_as_the_pool(monkeypatch) -> None:
    torch.manual_seed(0)
    model = LANetClassifier(net=FERNetConfig(NET, small_input=True, pool="arm",
                                             pool_kwargs={"shuffle": 16, "kernel_size": 16, "stride": 8}),
                            img_size=48, num_classes=7, queue_size=16, lde_k=2)
    model.lde_bank.init_from_labels(torch.arange(8) % 7)
    logged = {}
    monkeypatch.setattr(model, "log", lambda name, value, **kw: logged.__setitem__(name, value))
    monkeypatch.setattr(model, "log_dict", lambda d, **kw: logged.update(d))
    from ferkit.data.synthetic import SyntheticFaces

    ds = SyntheticFaces(num_samples=8, image_size=48)
    batch = {"image": torch.randn(8, 3, 48, 48), "label": torch.as_tensor(ds.labels), "index": torch.arange(8),
             "landmarks": torch.as_tensor(ds.landmarks)}
    loss = model.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss) and {"train/lmk", "train/kl", "train/el"} <= set(logged)
    assert model.lde.scorer_expr.dim == model.model.num_features  # the LDE runs on ARM's features
    assert model.model.pool.kernel.grad is not None and model.model.pool.kernel.grad.abs().sum() > 0  # ARM trains
