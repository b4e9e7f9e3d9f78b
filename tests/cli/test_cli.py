"""The command line end to end on tiny synthetic data: fit, test, predict, resume, demo, and DDP on 2 CPU processes."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ferkit.cli import main, run_demo

REPO = Path(__file__).resolve().parents[2]
TINY = ["--data.dataset_kwargs={num_train: 64, num_val: 32, num_test: 40, image_size: 32}", "--data.img_size=32",
        "--data.batch_size=16", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def _args(cmd, tmp_path, *extra):
    return [cmd, "--config", str(REPO / "configs/arm_synthetic.yaml"), *TINY,
            f"--trainer.logger.init_args.save_dir={tmp_path}", f"--model.init_args.output_dir={tmp_path / 'out'}", *extra]


def test_fit_resume_test_predict(tmp_path):
    main(_args("fit", tmp_path, "--trainer.max_epochs=1", "--model.init_args.scheduler=exponential"))
    ckpts = sorted(tmp_path.glob("arm_synthetic/version_0/checkpoints/last.ckpt"))
    assert ckpts, list(tmp_path.rglob("*"))
    # the saved config is the reproducibility record
    assert (tmp_path / "arm_synthetic/version_0/config.yaml").exists()
    # resume for one more epoch from the last checkpoint
    main(_args("fit", tmp_path, "--trainer.max_epochs=2", "--model.init_args.scheduler=exponential", f"--ckpt_path={ckpts[0]}"))
    import torch

    last = torch.load(tmp_path / "arm_synthetic/version_1/checkpoints/last.ckpt", weights_only=False)
    assert last["epoch"] == 1 and last["ferkit"]["class_names"][3] == "happy"
    # the per-epoch schedule continued where it stopped: lr after 2 epochs = lr * 0.9**2
    assert last["lr_schedulers"][0]["last_epoch"] == 2
    # a finished one-cycle schedule cannot be silently extended
    with pytest.raises(RuntimeError, match="one-cycle"):
        main(_args("fit", tmp_path, "--trainer.max_epochs=1"))
        main(_args("fit", tmp_path, "--trainer.max_epochs=2", f"--ckpt_path={tmp_path / 'arm_synthetic/version_2/checkpoints/last.ckpt'}"))
    main(_args("test", tmp_path, f"--ckpt_path={ckpts[0]}"))
    metrics = json.loads((tmp_path / "out/metrics_test.json").read_text())
    assert metrics["num_samples"] == 40 and len(metrics["confusion_matrix"]) == 7
    assert (tmp_path / "out/confusion_matrix_test.csv").exists() and (tmp_path / "out/confusion_matrix_test.png").exists()
    pred = tmp_path / "pred.csv"
    main(_args("predict", tmp_path, f"--ckpt_path={ckpts[0]}", f"--prediction_writer.output={pred}"))
    rows = list(csv.DictReader(pred.open()))
    assert len(rows) == 40 and rows[0]["id"] == "synthetic:test:0"
    probs = [float(rows[0][f"prob_{c}"]) for c in ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]]
    assert abs(sum(probs) - 1) < 1e-4 and rows[0]["pred"] in ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def test_demo_prints_both_accuracies(tmp_path, capsys):
    summary = run_demo(["--epochs", "1", "--num-train", "64", "--num-eval", "32", "--img-size", "32", "--small-input", "--no-progress",
                        "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "test overall accuracy" in out and "test mean-class accuracy" in out
    assert 0 <= summary["test_overall_acc"] <= 100 and 0 <= summary["test_mean_class_acc"] <= 100


def test_ddp_two_processes_matches_one_process(tmp_path):
    """ARM trained with DDP on 2 CPU processes; its test evaluation on 2 processes equals the one on 1 process."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    ferkit = [sys.executable, "-m", "ferkit.cli"]
    def run(*args):
        proc = subprocess.run([*ferkit, *args], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc
    fit = _args("fit", tmp_path, "--trainer.max_epochs=1", "--trainer.devices=2", "--trainer.strategy=ddp")
    run(*fit)
    ckpt = tmp_path / "arm_synthetic/version_0/checkpoints/last.ckpt"
    assert ckpt.exists()
    results = {}
    for devices in (1, 2):
        out = tmp_path / f"eval{devices}"
        args = _args("test", tmp_path, f"--ckpt_path={ckpt}", f"--trainer.devices={devices}",
                     f"--model.init_args.output_dir={out}")
        if devices == 2:
            args.append("--trainer.strategy=ddp")
        run(*args)
        results[devices] = json.loads((out / "metrics_test.json").read_text())
    # 40 test images over 2 ranks with batch 16: padding duplicates must not be counted
    assert results[2]["num_samples"] == results[1]["num_samples"] == 40
    assert results[2]["confusion_matrix"] == results[1]["confusion_matrix"]
    assert results[2]["acc"] == results[1]["acc"] and results[2]["mean_class_acc"] == results[1]["mean_class_acc"]
