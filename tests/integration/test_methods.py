"""Every method end to end through the CLI on tiny synthetic data: fit -> resume -> test -> predict -> export.

A new method is covered by one more line in ``METHODS``: its packaged synthetic config and any tiny overrides.
"""
from __future__ import annotations

import csv
import json

import pytest
import torch

from ferkit.cli import main
from ferkit.export import export_inference_model, load_inference_model, load_module, save_inference_model

METHODS = [
    pytest.param("avg_synthetic", [], id="avg-ce"),
    pytest.param("arm_synthetic", [], id="arm"),
    pytest.param("asm_synthetic", ["--model.init_args.warmup_epochs=1"], id="asm"),
    pytest.param("pasm_synthetic", ["--model.init_args.random_centres=true"], id="pasm-random-erasing"),
    pytest.param("lanet_synthetic", ["--model.init_args.queue_size=32", "--model.init_args.lde_k=3"], id="lanet"),
    pytest.param("omni_synthetic", ["--model.init_args.condensation.init_args.iterations=2"], id="omni"),
]
# a per-epoch schedule, so that a resumed run may train longer than the first (a one-cycle plan may not)
EPOCH_SCHEDULE = "--model.init_args.scheduler={class_path: torch.optim.lr_scheduler.ExponentialLR, init_args: {gamma: 0.9}}"


@pytest.mark.slow
@pytest.mark.parametrize("config,extra", METHODS)
def test_fit_resume_test_predict_export(config, extra, tmp_path, monkeypatch, synthetic_data_args, one_thread):
    monkeypatch.chdir(tmp_path)  # the packaged configs log to ./runs
    common = ["--config", config, *synthetic_data_args(), "--model.init_args.net.backbone=resnet10t",
              "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.log_every_n_steps=1",
              EPOCH_SCHEDULE, *extra]
    run = tmp_path / "runs" / config
    main(["fit", *common, "--trainer.max_epochs=1"])
    ckpts = sorted(p.name for p in (run / "version_0/checkpoints").iterdir())
    assert len(ckpts) == 2 and "last.ckpt" in ckpts and ckpts[0].startswith("best-"), ckpts  # one copy per role

    # resume continues the same run folder and the best-checkpoint tracking
    last = run / "version_0/checkpoints/last.ckpt"
    before = (run / "version_0/metrics.csv").read_text()
    main(["fit", *common, "--trainer.max_epochs=2", f"--ckpt_path={last}"])
    after = (run / "version_0/metrics.csv").read_text()
    # epoch 0 was not trained again: its rows are there once, and the resumed run only added epoch-1 rows
    rows_after = list(csv.DictReader(after.splitlines()))
    rows_before = list(csv.DictReader(before.splitlines()))
    assert [r for r in rows_after if r.get("epoch") == "0"] == [
        {k: r.get(k, "") for k in rows_after[0]} for r in rows_before if r.get("epoch") == "0"]
    assert sorted(p.name for p in run.iterdir()) == ["version_0"]
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["epoch"] == 1
    best = [v for k, v in state["callbacks"].items() if "val/mean_class_acc" in k]
    assert best and f"{config}/version_0/checkpoints/best-" in best[0]["best_model_path"]
    epochs = {row["epoch"] for row in csv.DictReader((run / "version_0/metrics.csv").open()) if row.get("epoch")}
    assert {"0", "1"} <= epochs  # one metrics.csv holds both epochs

    # test and predict of the run's checkpoint write into the run's folder, not a new version_N
    main(["test", *common, f"--ckpt_path={last}"])
    metrics = json.loads((run / "version_0/metrics_test.json").read_text())
    assert metrics["num_samples"] == 24 and len(metrics["confusion_matrix"]) == 7
    pred = tmp_path / "pred.csv"
    main(["predict", *common, f"--ckpt_path={last}", f"--prediction_writer.output={pred}"])
    assert sorted(p.name for p in run.iterdir()) == ["version_0"]
    rows = list(csv.DictReader(pred.open()))
    assert len(rows) == 24 and rows[0]["id"] == "synthetic:test:0"
    probs = torch.tensor([[float(r[k]) for k in r if k.startswith("prob_")] for r in rows])
    assert probs.shape == (24, 7) and torch.allclose(probs.sum(1), torch.ones(24), atol=1e-4)

    # export: the deployed network gives the module's logits, in both file formats
    module = load_module(last).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = module(x)
        torch.testing.assert_close(export_inference_model(module)(x), ref)
        for fmt in ("torchscript", "state_dict"):
            path = save_inference_model(last, tmp_path / f"model.{fmt}", format=fmt)
            again = load_inference_model(path)
            assert again.class_names == module.class_names
            torch.testing.assert_close(again(x), ref, rtol=1e-4, atol=1e-5)
