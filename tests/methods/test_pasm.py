"""PASMClassifier: frozen teacher outside the optimiser and the checkpoint, centres precomputed by index, erasing in
the training transform, export of the student alone; `ferkit pasm` generations with resume after a kill."""
from __future__ import annotations

import json

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from ferkit.data.erasing import MISSING_CENTRE, RegionErasingTransform, load_centres
from ferkit.export import export_inference_model
from ferkit.methods import FERClassifier, PASMClassifier, precompute_centres

IMG = 32


class Watch(Callback):
    """Records whether the teacher was in eval mode and what reached the optimiser, at every training batch."""

    def __init__(self) -> None:
        self.teacher_modes, self.optimised = [], set()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.teacher_modes.append(module.teacher.training)
        self.optimised |= {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
        self.erased_batch = batch


@pytest.fixture
def trained_teacher(tmp_path, synthetic_dm, tiny_module, tiny_trainer, one_thread):
    dm = synthetic_dm(num_train=40, num_val=16, num_test=16, image_size=IMG)
    teacher = tiny_module(FERClassifier, dm)
    trainer = tiny_trainer(limit_val_batches=0)
    trainer.fit(teacher, dm)
    path = tmp_path / "gen0.ckpt"
    trainer.save_checkpoint(path)
    return dm, teacher, path


@pytest.mark.slow
def test_student_generation(trained_teacher, tmp_path, synthetic_dm, tiny_module, tiny_trainer) -> None:
    dm, teacher, teacher_ckpt = trained_teacher
    centres = precompute_centres(teacher_ckpt, dm, tmp_path / "centres.pt", max_points=8, points_per_step=4, window=8, stride=2)
    assert centres.dtype == torch.int16 and centres.shape == (40, 2)
    assert (centres != MISSING_CENTRE).all() and (centres >= 0).all() and (centres < IMG).all()
    assert torch.equal(torch.from_numpy(load_centres(tmp_path / "centres.pt")["centres"]), centres)

    dm2 = synthetic_dm(num_train=40, num_val=16, num_test=16, image_size=IMG)
    student = tiny_module(PASMClassifier, dm2, teacher_ckpt=str(teacher_ckpt), centres_path=str(tmp_path / "centres.pt"),
                          erase_p=1.0, erase_fill=0.0)
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    watch = Watch()
    trainer = tiny_trainer(limit_val_batches=0, callbacks=[watch])
    trainer.fit(student, dm2)
    assert watch.teacher_modes and not any(watch.teacher_modes)  # the teacher stays in eval mode
    assert not watch.optimised & {id(p) for p in student.teacher.parameters()}
    assert watch.optimised == {id(p) for p in student.model.parameters()}
    assert all(torch.equal(before[k], v) for k, v in student.teacher.state_dict().items())  # not trained
    assert isinstance(dm2.train_set.transform, RegionErasingTransform)
    assert "region_centre" in watch.erased_batch and torch.isfinite(watch.erased_batch["region_centre"]).all()

    trainer.save_checkpoint(tmp_path / "gen1.ckpt")
    state = torch.load(tmp_path / "gen1.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert not any("teacher" in k for k in state)  # the checkpoint holds the student only
    assert sum(k.startswith("model.") for k in state) == len(student.model.state_dict())
    exported = export_inference_model(student)
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), student.eval()(x))
    assert type(exported).__name__ == "FERNet"


def test_bad_centre_file_and_teacher(tmp_path, synthetic_dm, tiny_module, tiny_trainer, trained_teacher) -> None:
    dm, _, teacher_ckpt = trained_teacher
    from ferkit.data.erasing import save_centres

    save_centres(tmp_path / "short.pt", torch.zeros(7, 2))
    dm2 = synthetic_dm(num_train=40, num_val=16, num_test=16, image_size=IMG)
    student = tiny_module(PASMClassifier, dm2, teacher_ckpt=str(teacher_ckpt), centres_path=str(tmp_path / "short.pt"))
    with pytest.raises(ValueError, match="covers 7 samples but the training set has 40"):
        tiny_trainer(limit_val_batches=0).fit(student, dm2)
    student = tiny_module(PASMClassifier, dm2, teacher_ckpt=str(tmp_path / "missing.ckpt"))
    with pytest.raises(FileNotFoundError, match="teacher checkpoint .* does not exist"):
        tiny_trainer(limit_val_batches=0).fit(student, dm2)


class EpochsSeen(Callback):
    """Records the epochs a fit trains: a resumed fit starts after its checkpoint's epoch."""

    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self.epochs.append(trainer.current_epoch)


class KillAtSecondEpoch(Callback):
    """Stands in for a killed process: fails at the start of epoch 1 (epoch 0's last.ckpt is written)."""

    def on_train_epoch_start(self, trainer, module) -> None:
        if trainer.current_epoch == 1 and module.teacher is not None:
            raise RuntimeError("killed")


@pytest.mark.slow
def test_generations_resume_after_a_kill(tmp_path, monkeypatch, synthetic_data_args, one_thread) -> None:
    from ferkit.commands.pasm import run_generations

    monkeypatch.chdir(tmp_path)
    overrides = [*synthetic_data_args(num_train=32, num_val=16, num_test=16), "--model.init_args.net.backbone=resnet10t",
                 "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.max_epochs=2",
                 "--model.init_args.max_points=8", "--model.init_args.window=8", "--model.init_args.stride=4"]
    out = tmp_path / "pasm"
    with pytest.raises(RuntimeError, match="killed"):
        run_generations("pasm_synthetic", 1, out, overrides, trainer_defaults={"callbacks": [KillAtSecondEpoch()]})
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["generations"]) == ["0"] and summary["generations"]["0"]["status"] == "done"
    gen0 = out / "gen_0/version_0/checkpoints/last.ckpt"
    stamp0, stamp_centres = gen0.stat().st_mtime_ns, (out / "centres_gen_1.pt").stat().st_mtime_ns
    killed = torch.load(out / "gen_1/version_0/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert killed["epoch"] == 0

    seen = EpochsSeen()
    summary = run_generations("pasm_synthetic", 1, out, overrides, trainer_defaults={"callbacks": [seen]})  # again
    assert seen.epochs == [1]  # generation 0 skipped, generation 1 continued from its epoch-0 checkpoint
    assert gen0.stat().st_mtime_ns == stamp0 and (out / "centres_gen_1.pt").stat().st_mtime_ns == stamp_centres
    g1 = summary["generations"]["1"]
    assert g1["status"] == "done" and g1["resumed_from"].endswith("gen_1/version_0/checkpoints/last.ckpt")
    assert g1["teacher"] == str(gen0) and g1["epochs"] == 2 and "val/acc" in g1["val"] and "test/acc" in g1["test"]
    assert sorted(p.name for p in (out / "gen_1").iterdir()) == ["version_0"]
    rows = (out / "gen_1/version_0/metrics.csv").read_text().splitlines()
    epoch_col = rows[0].split(",").index("epoch")
    assert {r.split(",")[epoch_col] for r in rows[1:]} >= {"0", "1"}  # one metrics.csv across the kill
    done = torch.load(out / "gen_1/version_0/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert done["epoch"] == 1 and done["hyper_parameters"]["teacher_ckpt"] == str(gen0)
    assert len(load_centres(out / "centres_gen_1.pt")["centres"]) == 32
    with pytest.raises(SystemExit, match="holds a run of"):
        run_generations("pasm_synthetic", 1, out, overrides[:-1])


@pytest.mark.slow
def test_random_position_control_needs_no_centres(tmp_path, monkeypatch, synthetic_data_args, one_thread) -> None:
    from ferkit.commands.pasm import run_generations

    monkeypatch.chdir(tmp_path)
    overrides = [*synthetic_data_args(num_train=32, num_val=16, num_test=16), "--model.init_args.net.backbone=resnet10t",
                 "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.max_epochs=1",
                 "--model.init_args.random_centres=true"]
    summary = run_generations("pasm_synthetic", 1, tmp_path / "control", overrides, test=False)
    g0, g1 = summary["generations"]["0"], summary["generations"]["1"]
    assert g1["centres"] is None and not list((tmp_path / "control").glob("centres_*"))
    assert g1["teacher"] == g0["checkpoint"]
    hp0 = torch.load(g0["checkpoint"], map_location="cpu", weights_only=False)["hyper_parameters"]
    hp1 = torch.load(g1["checkpoint"], map_location="cpu", weights_only=False)["hyper_parameters"]
    assert hp0["random_centres"] is False and hp0["teacher_ckpt"] is None  # generation 0 is plain CE
    assert hp1["random_centres"] is True and hp1["teacher_ckpt"] == g0["checkpoint"]
