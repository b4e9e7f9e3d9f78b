"""ASM LightningModule end to end on tiny synthetic faces: mining, logging, resume, export, report, ARM pool."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from conftest import make_synthetic_dm
from ferkit.export import export_inference_model, load_inference_model, save_inference_model
from ferkit.methods.asm import ASMClassifier, ASMModel
from ferkit.models import FERNetConfig

IMG = 32
N_TRAIN = 48


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    yield


def _dm(num_train: int = N_TRAIN, **kw):
    args = dict(channels=3, batch_size=16, train_preset="weak", strong_preset="strong", label_noise=0.3, noise_seed=0)
    args.update(kw)
    return make_synthetic_dm(num_train=num_train, num_val=16, num_test=16, image_size=IMG, **args)


def _model(dm, net: dict | None = None, **kw) -> ASMClassifier:
    args = dict(net=FERNetConfig(**{"backbone": "test_resnet", "small_input": True, **(net or {})}), num_classes=dm.num_classes,
                class_names=dm.class_names, img_size=IMG, in_chans=3, warmup_epochs=1, t_clean=0.6, t_noisy=0.3,
                optimizer=lambda p: torch.optim.Adam(p, lr=3e-3, weight_decay=1e-4))
    args.update(kw)
    return ASMClassifier(**args)


def _trainer(tmp: Path, epochs: int, callbacks=(), **kw) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=str(tmp), callbacks=list(callbacks),
                     num_sanity_val_steps=0, **kw)


class Snapshot(Callback):
    """Copies of the miner's buffers at chosen moments of a run."""

    def __init__(self) -> None:
        self.at_train_start: dict[str, torch.Tensor] | None = None
        self.at_first_batch: dict[str, torch.Tensor] | None = None
        self.first_epoch: int | None = None

    @staticmethod
    def grab(module: ASMClassifier) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in module.state_dict().items() if k.startswith("miner.") or k == "stats_epoch"}

    def on_train_start(self, trainer, module) -> None:
        self.at_train_start = self.grab(module)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if self.at_first_batch is None:
            self.at_first_batch, self.first_epoch = self.grab(module), trainer.current_epoch


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(torch.nan_to_num(a[k], nan=-7.0), torch.nan_to_num(b[k], nan=-7.0)), k


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Warm-up 1 epoch, then 2 mined epochs (extra pass); a checkpoint every epoch."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("asm_fit")
    L.seed_everything(0, verbose=False)
    dm = _dm()
    model = _model(dm)
    ckpt = ModelCheckpoint(dirpath=tmp / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}", save_last=True)
    trainer = _trainer(tmp, 3, [ckpt])
    parts: list[tuple[int, dict[str, float], tuple[int, int, int]]] = []  # each step's Tri-Regularization terms
    model.tri.register_forward_hook(lambda mod, args, out: parts.append(
        (trainer.current_epoch, {k: float(v) for k, v in out.terms.items()}, out.counts)))
    try:
        trainer.fit(model, dm)
    finally:
        torch.set_num_threads(threads)
    return {"tmp": tmp, "dm": dm, "model": model, "trainer": trainer, "parts": parts}


def test_fit_mines_after_warmup_and_logs(fitted) -> None:
    model, trainer = fitted["model"], fitted["trainer"]
    assert int(model.miner.mined_epoch) == 3  # epoch 1 is warm-up; epochs 2 and 3 mined
    split = model.miner.split
    assert int(split.unknown.sum()) == 0 and len(split) == N_TRAIN
    m = trainer.callback_metrics
    assert sum(float(m[f"asm/frac_{s}"]) for s in ("clean", "ambiguous", "noisy")) == pytest.approx(1.0)
    name = model.class_names[0]
    for key in (f"asm/t_clean/{name}", f"asm/t_noisy/{name}", f"asm/n_noisy/{name}", "asm/frac_noisy", "asm/noisy_precision",
                "asm/noisy_recall", "train/loss_noisy", "asm/lambda"):
        assert key in m, key
    # the logged thresholds are the miner's and the detection scores are computed against the real flips
    assert float(m[f"asm/t_clean/{name}"]) == pytest.approx(float(model.miner.thresholds.clean[0]))
    ds = fitted["dm"].train_set
    flipped = np.asarray(ds.labels) != np.asarray(ds.clean_labels)
    noisy = model.miner.split.noisy.numpy()
    assert noisy.any() and flipped.any() and (noisy & flipped).any()  # the checks below are not vacuous
    assert float(m["asm/noisy_precision"]) == pytest.approx(flipped[noisy].mean())
    # per given class, against the same flips
    labels = np.asarray(ds.labels)
    for k, cls in enumerate(model.class_names):
        mine = labels == k
        if (noisy & mine).any():
            assert float(m[f"asm/noisy_precision/{cls}"]) == pytest.approx(flipped[noisy & mine].mean())
        if (flipped & mine).any():
            assert float(m[f"asm/noisy_recall/{cls}"]) == pytest.approx(noisy[flipped & mine].mean())
            assert float(m[f"asm/flip_rate/{cls}"]) == pytest.approx(flipped[mine].mean())
    # a class without a clean sample has an undefined purity: logged as NaN, never a former epoch's value
    clean = model.miner.split.clean.numpy()
    empty = [cls for k, cls in enumerate(model.class_names) if not (clean & (labels == k)).any()]
    assert empty and all(np.isnan(float(m[f"asm/clean_purity/{cls}"])) for cls in empty)
    # labels seen by the miner are the (noisy) training labels, keyed by dataset index
    assert np.array_equal(model.miner.labels.values.numpy(), np.asarray(ds.labels))


def test_loss_terms_are_epoch_means_over_their_subsets(fitted) -> None:
    """``train/loss_<subset>``: each step's subset mean weighted by that subset's size in the step (a step without
    the subset does not pull the epoch value toward 0)."""
    m, last = fitted["trainer"].callback_metrics, fitted["trainer"].current_epoch - 1
    steps = [(terms, counts) for epoch, terms, counts in fitted["parts"] if epoch == last]
    assert steps
    for i, name in enumerate(("clean", "ambiguous", "noisy")):
        n = sum(c[i] for _, c in steps)
        expected = sum(t[name] * c[i] for t, c in steps) / n if n else float("nan")
        assert float(m[f"train/loss_{name}"]) == pytest.approx(expected, rel=1e-5, nan_ok=True), name


def test_mining_scores_leave_out_samples_without_a_known_truth(fitted) -> None:
    """A ``clean_label`` of -1 (no truth known) is neither a flipped nor a correct sample in the mining scores."""
    model, ds = fitted["model"], fitted["dm"].train_set
    original = ds.clean_labels
    logged: dict[str, float] = {}
    try:
        unknown = np.arange(len(ds)) % 3 == 0
        ds.clean_labels = np.where(unknown, -1, original)
        model.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
        model._log_mining()
    finally:
        ds.clean_labels = original
        del model.log
    flipped = np.asarray(ds.labels) != np.asarray(original)
    noisy, known = model.miner.split.noisy.numpy(), ~unknown
    assert (noisy & known).any() and (flipped & known).any()
    assert logged["asm/noisy_precision"] == pytest.approx(flipped[noisy & known].mean())
    assert logged["asm/noisy_recall"] == pytest.approx(noisy[flipped & known].mean())
    assert logged["asm/flip_rate"] == pytest.approx(flipped[known].mean())


def test_judge_a_loaded_checkpoint_outside_fit(fitted) -> None:
    """The data module's judge_dataloader judges a loaded checkpoint without a trainer (benchmarks/asm_rule_study.py)."""
    dm = fitted["dm"]
    model = ASMClassifier.load_from_checkpoint(fitted["tmp"] / "ckpt" / "last.ckpt", map_location="cpu")
    loader = dm.judge_dataloader(preset=model.hparams.judge_transform)
    assert len(loader.dataset) == len(dm.train_set)
    model.miner.reset_observations()
    model.judge(loader)
    assert bool((model.miner.acc_count.values == 1).all())  # every training sample judged exactly once
    split = model.miner.mine()
    assert int(split.unknown.sum()) == 0 and len(split) == len(dm.train_set)


def test_resume_at_epoch_boundary_restores_thresholds_and_split(fitted, tmp_path) -> None:
    path = fitted["tmp"] / "ckpt" / "epoch=2.ckpt"  # end of epoch 3 (0-based 2): two epochs past warm-up
    saved = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    dm = _dm()
    model = _model(dm)
    snap = Snapshot()
    _trainer(tmp_path, 4, [snap], limit_train_batches=1, limit_val_batches=0).fit(model, dm, ckpt_path=str(path))
    expected = {k: v for k, v in saved.items() if k.startswith("miner.") or k == "stats_epoch"}
    _assert_same(snap.at_train_start, expected)
    assert int(saved["miner.mined_epoch"]) == 3
    assert int(model.miner.mined_epoch) == 4  # the resumed run then mines its own new epoch


def test_resume_mid_epoch_keeps_the_split_and_statistics(tmp_path) -> None:
    """train_forward statistics: a checkpoint saved in the middle of a mined epoch resumes with the same split
    (no re-mining) and the same accumulated statistics."""
    L.seed_everything(1, verbose=False)
    dm = _dm()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=5, save_top_k=-1, filename="{step}")
    _trainer(tmp_path, 2, [ckpt], limit_val_batches=0).fit(_model(dm, stats="train_forward"), dm)
    path = tmp_path / "ckpt" / "step=5.ckpt"  # 3 steps per epoch: step 5 is the 2nd of 3 batches of epoch 2
    saved = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    assert int(saved["miner.mined_epoch"]) == 2 and int(saved["stats_epoch"]) == 2
    assert int(saved["miner.acc_count.values"].sum()) == 32  # two batches of epoch 2 accumulated so far
    dm2 = _dm()
    model = _model(dm2, stats="train_forward")
    snap = Snapshot()
    _trainer(tmp_path / "resume", 2, [snap], limit_val_batches=0).fit(model, dm2, ckpt_path=str(path))
    expected = {k: v for k, v in saved.items() if k.startswith("miner.") or k == "stats_epoch"}
    _assert_same(snap.at_train_start, expected)
    assert snap.first_epoch == 1
    _assert_same(snap.at_first_batch, expected)  # on_train_epoch_start neither re-mined nor reset the statistics


def test_train_forward_statistics_come_from_the_previous_epoch(tmp_path) -> None:
    L.seed_everything(2, verbose=False)
    dm = _dm()
    model = _model(dm, stats="train_forward")
    _trainer(tmp_path, 3, limit_val_batches=0, enable_checkpointing=False).fit(model, dm)
    assert int(model.miner.mined_epoch) == 3 and int(model.stats_epoch) == 3
    assert int(model.miner.split.unknown.sum()) == 0
    assert int(model.miner.acc_count.values.sum()) == N_TRAIN  # epoch 3's observations, waiting for epoch 4


def test_inference_is_the_average_and_independent_of_batch_companions(fitted) -> None:
    model = fitted["model"].eval()
    x = torch.randn(5, 3, IMG, IMG)
    with torch.no_grad():
        z1, z2 = model.model.forward_pair(x)
        torch.testing.assert_close(model(x), 0.5 * (z1 + z2))
        single = torch.cat([model(x[i : i + 1]) for i in range(5)])
        torch.testing.assert_close(model(x), single, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model(x[[3, 1]]), model(x)[[3, 1]], rtol=1e-4, atol=1e-5)


def test_export_inference_model(fitted, tmp_path) -> None:
    model = fitted["model"].eval()
    x = torch.randn(3, 3, IMG, IMG)
    net = export_inference_model(model)
    assert isinstance(net, ASMModel) and not net.training and net.class_names == model.class_names
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(net(x), ref)
        for fmt in ("torchscript", "state_dict"):
            loaded = load_inference_model(save_inference_model(model, tmp_path / f"asm.{fmt}", format=fmt))
            torch.testing.assert_close(loaded(x), ref, rtol=1e-5, atol=1e-5)
            assert list(loaded.class_names) == model.class_names
    # from a checkpoint path too
    last = fitted["tmp"] / "ckpt" / "last.ckpt"
    with torch.no_grad():
        torch.testing.assert_close(export_inference_model(str(last))(x), ref)


def test_report_writes_csv_and_contact_sheet(fitted, tmp_path) -> None:
    from ferkit.commands.asm_report import main

    last = fitted["tmp"] / "ckpt" / "last.ckpt"
    summary = main(["--ckpt", str(last), "--out", str(tmp_path / "rep"), "--top", "3"])
    with open(tmp_path / "rep" / "asm_split.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == N_TRAIN
    assert list(rows[0]) == ["index", "id", "label", "clean_label", "pred", "confidence", "subset", "t_clean", "t_noisy"]
    model = fitted["model"]
    subsets = [r["subset"] for r in rows]
    assert subsets == [("clean", "ambiguous", "noisy")[i] for i in model.miner.subset.values.tolist()]
    ds = fitted["dm"].train_set
    assert [r["id"] for r in rows] == list(ds.ids)
    assert [r["label"] for r in rows] == [model.class_names[int(y)] for y in ds.labels]
    png = tmp_path / "rep" / "asm_suspects.png"
    import cv2

    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] == len(model.class_names) * (96 + 18)
    js = json.loads((tmp_path / "rep" / "asm_split_summary.json").read_text())
    assert js["counts"] == summary["counts"] and "noisy_recall" in js["detection"]
    per = js["detection_per_class"]
    assert list(per) == model.class_names
    labels = np.asarray(ds.labels)
    flipped = labels != np.asarray(ds.clean_labels)
    for k, cls in enumerate(model.class_names):
        assert per[cls]["flip_rate"] == pytest.approx(flipped[labels == k].mean())
    assert js["recomputed"] is False and js["mined_epoch"] == 3  # the split stored in the checkpoint


def test_arm_pool_and_missing_strong_view(tmp_path) -> None:
    L.seed_everything(3, verbose=False)
    dm = _dm(num_train=32)
    model = _model(dm, net={"pool": "arm", "pool_kwargs": {"shuffle": 4, "kernel_size": 4, "stride": 2}}, t_clean=0.99, t_noisy=0.9)
    _trainer(tmp_path, 2, limit_val_batches=0, enable_checkpointing=False).fit(model, dm)
    assert type(model.model.net1.pool).__name__ != "GlobalAvgPool"
    assert int(model.miner.split.noisy.sum()) > 0  # high thresholds: the noisy branch (strong view) ran
    # without a strong view the error says which setting to add
    dm2 = _dm(num_train=32, strong_preset=None)
    with pytest.raises(KeyError, match="strong_preset"):
        _trainer(tmp_path / "b", 2, limit_val_batches=0, enable_checkpointing=False).fit(
            _model(dm2, t_clean=0.99, t_noisy=0.9), dm2)


def test_one_forward_per_network_per_step_with_strong_views_of_noisy_samples(tmp_path) -> None:
    """A mined step runs each network once, over the weak batch plus the strong views of its noisy samples."""
    L.seed_everything(4, verbose=False)
    dm = _dm(num_train=32)
    model = _model(dm, t_clean=0.99, t_noisy=0.9)  # high thresholds: most samples are noisy
    calls: list[tuple[int, int]] = []  # (epoch, batch size) of every training-mode forward of net1

    def hook(mod, inp, out):
        if mod.training:
            calls.append((model.current_epoch, inp[0].shape[0]))

    model.model.net1.register_forward_hook(hook)
    expected: list[tuple[int, int]] = []

    class Expect(Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            b = batch["image"].shape[0]
            if module.epoch <= module.hparams.warmup_epochs:
                expected.append((trainer.current_epoch, b))
            else:
                expected.append((trainer.current_epoch, b + int(module.miner.split_for(batch["index"]).noisy.sum())))

    _trainer(tmp_path, 2, [Expect()], limit_val_batches=0, enable_checkpointing=False).fit(model, dm)
    assert calls == expected
    assert any(b > 16 for e, b in calls if e == 1)  # the mined epoch did forward strong views


def test_argument_errors() -> None:
    dm = _dm()
    with pytest.raises(ValueError, match="stats"):
        _model(dm, stats="sometimes")
    with pytest.raises(ValueError, match="threshold_fn"):
        _model(dm, threshold_fn="ferkit.nowhere:rule")
    m = _model(dm, threshold_fn="ferkit.state.thresholds:max_normalised_thresholds")
    from ferkit.state.thresholds import max_normalised_thresholds

    assert m.miner.thresholds.threshold_fn is max_normalised_thresholds


@pytest.mark.parametrize("flavour", ["torch", "lightning"])
def test_example_script_runs(flavour: str, tmp_path) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "asm_synthetic.py"
    spec = importlib.util.spec_from_file_location("asm_synthetic_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--tiny", "--flavour", flavour, "--out", str(tmp_path)])
    assert res["test_samples"] == 64  # the whole test split was evaluated
    if flavour == "torch":
        assert sum(res["split"]) == 96  # every training sample was judged
    else:
        assert Path(res["report"]["csv"]).exists() and (tmp_path / "asm_inference.pt").exists()
