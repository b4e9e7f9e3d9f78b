"""The ``ferkit`` command: help for every command, packaged configs by name, override warnings on resume, the demo,
and DDP on 2 CPU processes. (fit -> resume -> test -> predict -> export of every method: tests/integration.)"""
import json
import warnings
import os
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ferkit.cli import COMMANDS, main
from ferkit.commands import demo

REPO = Path(__file__).resolve().parents[2]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def _ferkit(*args, cwd, timeout=600):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "ferkit", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def test_help_lists_every_command_and_each_names_itself(tmp_path, capsys):
    main(["--help"])
    out = capsys.readouterr().out
    for name in ("fit", "validate", "test", "predict", "demo", "info", "asm-report", "landmarks", "export", "data", "omni", "pasm"):
        assert f"\n  {name} " in out, name
    for name in ("asm-report", "landmarks", "export", "demo", "info", "data", "omni", "pasm"):
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert capsys.readouterr().out.startswith(f"usage: ferkit {name}"), name
    proc = _ferkit("fit", "--help", cwd=tmp_path, timeout=120)
    first = proc.stdout.splitlines()[0] if proc.stdout else ""
    assert proc.returncode == 0 and first.startswith("usage: ferkit [options] fit "), first + proc.stderr[-2000:]


def test_unknown_command_and_unknown_config_say_what_exists(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["trian"])
    assert "unknown command 'trian'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="packaged configs: .*arm_ferplus"):
        main(["fit", "--config", "arm_ferplsu"])


def test_info_lists_the_packaged_configs(capsys):
    info = main(["info"])
    assert "arm_ferplus" in info["configs"] and "ARMClassifier" in info["methods"]
    assert "arm_ferplus" in capsys.readouterr().out


def test_wheel_ships_configs_and_py_typed(tmp_path):
    # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    src = tmp_path / "src"
    shutil.copytree(REPO / "ferkit", src / "ferkit", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                           "--no-index", "--disable-pip-version-check",
                           "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and "No module named" in proc.stderr:
        pytest.skip(f"cannot build a wheel here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("ferkit-*.whl"))).namelist()
    packaged = {Path(n).stem for n in names if n.startswith("ferkit/configs/") and n.endswith(".yaml")}
    assert {p.stem for p in (REPO / "ferkit/configs").glob("*.yaml")} == packaged
    assert "ferkit/py.typed" in names


def test_packaged_config_by_name_from_any_folder_and_override_warning(tmp_path, monkeypatch, synthetic_data_args):
    monkeypatch.chdir(tmp_path)
    args = ["--config", "avg_synthetic", *synthetic_data_args(), "--model.init_args.net.backbone=resnet10t", *QUIET,
            "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"]
    main(["fit", *args])
    last = tmp_path / "runs/avg_synthetic/version_0/checkpoints/last.ckpt"
    assert last.is_file()
    # a model argument given on the command line but replaced by the checkpoint's is named in a warning
    with pytest.warns(UserWarning, match=r"--model.init_args.label_smoothing 0.3 -> 0.0"):
        main(["test", *args, "--model.init_args.label_smoothing=0.3", f"--ckpt_path={last}"])


def test_evaluation_options_on_the_command_line_win_over_the_checkpoint(tmp_path, monkeypatch, synthetic_data_args):
    """A run trained with flip averaging can be validated without it (and the reverse): ``eval_flip`` and
    ``channels_last`` change how the network is evaluated, not what it learned, so the command line's value is used;
    without the argument the checkpoint's value stays."""
    monkeypatch.chdir(tmp_path)
    args = ["--config", "avg_synthetic", *synthetic_data_args(), "--model.init_args.net.backbone=resnet10t", *QUIET,
            "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"]
    main(["fit", *args, "--model.init_args.eval_flip=true"])
    last = f"--ckpt_path={tmp_path / 'runs/avg_synthetic/version_0/checkpoints/last.ckpt'}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = main(["validate", *args, "--model.init_args.eval_flip=false", "--model.channels_last=true", last])
    assert not [w for w in caught if "override" in str(w.message)]  # no "the checkpoint overrides" warning for these
    assert plain.model.hparams.eval_flip is False and plain.model.hparams.channels_last is True
    assert main(["validate", *args, last]).model.hparams.eval_flip is True  # not given: the checkpoint's


def test_demo_prints_omni_and_its_ce_baseline_in_one_table(tmp_path, monkeypatch, capsys, recwarn):
    """The default demo: CE on the labelled quarter mines the pool; Omni trains on labelled + mined + distilled."""
    monkeypatch.chdir(tmp_path)
    data = "--data.dataset.init_args.labelled.init_args"
    results = demo.main([f"{data}.num_train=64", f"{data}.num_val=16", f"{data}.num_test=16", f"{data}.image_size=32",
                         "--data.img_size=32", "--model.init_args.net.backbone=resnet10t", "--trainer.max_steps=4", *QUIET])
    out = capsys.readouterr().out
    assert [r["model"] for r in results] == ["CE (labelled only)", "Omni (+ mined, distilled)"]
    # Omni's log folder already holds its inputs; Lightning's "previous log files will be deleted" would only alarm
    assert not [w for w in recwarn if "will be deleted" in str(w.message)]
    assert "CE (labelled only)" in out and "Omni (+ mined, distilled)" in out and "pseudo-labels are right" in out
    run = tmp_path / "runs/demo/omni/version_0"
    for name in ("mined.csv", "distilled.pt", "demo_summary.json", "demo.png", "omni_demo.json", "metrics.csv"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "omni_demo.json").read_text())
    # a quarter of the 64 training faces keep their labels (class-stratified), the rest is the pool
    assert summary["labelled"] + summary["pool"] == 64 and 10 <= summary["labelled"] <= 18
    assert 0 <= summary["mined_right"] <= summary["mined"] <= summary["pool"]
    assert summary["omni_train_set"] == summary["labelled"] + summary["mined"] and summary["steps"] == 4
    assert (tmp_path / "runs/demo/omni_baseline/version_0/metrics.csv").is_file()
    assert all(0 <= r["acc"] <= 100 for r in results)


def test_demo_prints_pasm_and_its_ce_generation_in_one_table(tmp_path, monkeypatch, capsys, synthetic_data_args):
    """PASM generation 1 against generation 0 (CE), one table, one plot, a summary."""
    monkeypatch.chdir(tmp_path)
    results = demo.main(["--config", "demo_pasm", *synthetic_data_args(num_train=32, num_val=16, num_test=16), "--model.init_args.net.backbone=resnet10t",
                         "--trainer.max_epochs=2", "--model.init_args.window=8", *QUIET])
    out = capsys.readouterr().out
    assert [r["model"] for r in results] == ["CE (generation 0)", "PASM (generation 1)"]
    assert "CE (generation 0)" in out and "PASM (generation 1)" in out and "mean-class %" in out
    run = tmp_path / "runs/demo/pasm/version_0"
    assert (run / "centres_gen_1.pt").is_file() and (run / "demo_summary.json").is_file()
    assert [len(r["val_acc"]) for r in results] == [2, 2]  # one validation point per epoch, read from metrics.csv
    assert all(0 <= a <= 100 for r in results for a in r["val_acc"])
    assert (run / "demo.png").is_file() and "plot: runs/demo/pasm/version_0/demo.png" in out
    # a second demo does not reuse the first one's generations
    demo.main(["--config", "demo_pasm", *synthetic_data_args(num_train=32, num_val=16, num_test=16),
               "--model.init_args.net.backbone=resnet10t", "--trainer.max_epochs=1", "--model.init_args.window=8", *QUIET])
    assert (tmp_path / "runs/demo/pasm/version_1/demo_summary.json").is_file()


def test_demo_of_a_pooling_method_trains_the_average_pool_baseline(tmp_path, monkeypatch, capsys, synthetic_data_args):
    monkeypatch.chdir(tmp_path)
    results = demo.main(["--config", "arm_synthetic", *synthetic_data_args(num_train=32, num_val=16, num_test=16),
                         "--model.init_args.net.backbone=resnet10t", "--model.init_args.net.small_input=true",
                         "--trainer.max_epochs=1", *QUIET])
    out = capsys.readouterr().out
    assert [r["model"] for r in results] == ["ARMClassifier (arm)", "FERClassifier (avg)"]
    assert "ARMClassifier (arm)" in out and "FERClassifier (avg)" in out
    assert (tmp_path / "runs/arm_synthetic/version_0/demo.png").is_file()
    assert (tmp_path / "runs/baseline/version_0").is_dir()


def test_demo_names_the_real_flag(capsys):
    with pytest.raises(SystemExit):
        demo.main(["--img-size", "32"])
    assert "--data.img_size" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_processes_matches_one_process(tmp_path, synthetic_data_args):
    """ARM trained with DDP on 2 CPU processes; its test evaluation on 2 processes equals the one on 1 process."""
    common = ["--config", "arm_synthetic", *synthetic_data_args(num_test=40), "--model.init_args.net.backbone=resnet10t", *QUIET]

    def run(*args):
        proc = _ferkit(*args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    run("fit", *common, "--trainer.max_epochs=1", "--trainer.devices=2", "--trainer.strategy=ddp")
    ckpt = tmp_path / "runs/arm_synthetic/version_0/checkpoints/last.ckpt"
    assert ckpt.exists()

    def evaluate(devices: int) -> dict:
        out = tmp_path / f"eval{devices}"
        args = ["test", *common, f"--ckpt_path={ckpt}", f"--trainer.devices={devices}", f"--model.init_args.output_dir={out}"]
        if devices == 2:
            args.append("--trainer.strategy=ddp")
        run(*args)
        return json.loads((out / "metrics_test.json").read_text())

    # the two evaluations are independent: side by side, their processes' start-up overlaps
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip((1, 2), pool.map(evaluate, (1, 2))))
    # 40 test images over 2 ranks with batch 16: padding duplicates must not be counted
    assert results[2]["num_samples"] == results[1]["num_samples"] == 40
    assert results[2]["confusion_matrix"] == results[1]["confusion_matrix"]
    assert results[2]["acc"] == results[1]["acc"] and results[2]["mean_class_acc"] == results[1]["mean_class_acc"]


def test_data_check_reads_every_file_and_sets_the_exit_status(tmp_path, capsys):
    good = ["--config", "arm_folder", f"--data.dataset.init_args.root={tmp_path}"]
    import numpy as np
    import cv2

    for split in ("train", "val", "test"):
        for name in ("happy", "sad"):
            (tmp_path / split / name).mkdir(parents=True)
            cv2.imwrite(str(tmp_path / split / name / "a.png"), np.full((20, 20, 3), 128, np.uint8))
    assert main(["data", "check", *good]) == 0  # exit status 0, no SystemExit
    assert "read correctly" in capsys.readouterr().out
    (tmp_path / "train/sad/broken.png").write_bytes(b"not an image")
    (tmp_path / "test/happy/broken.jpg").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", *good])
    out = capsys.readouterr().out
    assert exit_info.value.code == 1 and "broken.png" in out and "broken.jpg" in out  # every bad file, at once


def _fit_record(run_dir: Path) -> tuple[list[dict], float]:
    """The logged metrics (without timings) and a parameter checksum of ``last.ckpt`` of a ``ferkit fit`` run."""
    import csv

    import torch

    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    rows = [{k: v for k, v in r.items() if "time" not in k and "seconds" not in k} for r in rows]
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    checksum = float(sum(v.double().sum() for v in state.values() if v.is_floating_point()))
    return rows, checksum


def test_two_identical_fits_log_identical_metrics_and_weights(tmp_path, synthetic_data_args):
    """Issue 'what a new user hits' #1: the same config and seed give bit-identical runs on the CPU, with 2 workers."""
    data_args = synthetic_data_args()

    def fit(name: str):
        args = ["fit", "--config", "asm_synthetic", *data_args, *QUIET, "--trainer.max_epochs=3",
                "--model.init_args.warmup_epochs=1", "--data.num_workers=2", f"--trainer.logger.init_args.save_dir={tmp_path}",
                f"--trainer.logger.init_args.name={name}"]
        proc = _ferkit(*args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return _fit_record(tmp_path / name / "version_0")

    # side by side (their start-up overlaps): the two fits share the CPU, and must still agree bit for bit
    with ThreadPoolExecutor(max_workers=2) as pool:
        (rows_a, sum_a), (rows_b, sum_b) = pool.map(fit, ("a", "b"))
    assert len(rows_a) > 3 and any(r.get("val/acc") for r in rows_a)
    assert rows_a == rows_b
    assert sum_a == sum_b


def test_predict_over_a_plain_folder_of_unlabelled_images(tmp_path, monkeypatch, synthetic_data_args):
    """A checkpoint (trained here, in this process) predicts a nested folder of unlabelled images of several sizes and
    formats through the real ``ferkit predict`` command: one row per image, no label column, probabilities that sum
    to 1 and a ``pred`` that is their arg-max."""
    import csv

    import numpy as np
    from PIL import Image

    folder = tmp_path / "faces" / "nested"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, ext in enumerate(["png", "jpg", "png"]):
        Image.fromarray(rng.integers(0, 255, (40 + 10 * i, 40, 3), dtype=np.uint8)).save(folder / f"f{i}.{ext}")
    common = ["--config", "avg_synthetic", *synthetic_data_args(), *QUIET, f"--trainer.default_root_dir={tmp_path}",
              f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.logger.init_args.name=run"]
    monkeypatch.chdir(tmp_path)
    main(["fit", *common, "--trainer.max_epochs=1"])
    out = tmp_path / "preds.csv"
    proc = _ferkit("predict", *common, f"--ckpt_path={tmp_path / 'run/version_0/checkpoints/last.ckpt'}",
                   f"--data.predict_folder={tmp_path / 'faces'}", f"--prediction_writer.output={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 3 and "label" not in rows[0]
    assert sorted(Path(r["id"]).name for r in rows) == ["f0.png", "f1.jpg", "f2.png"]
    prob_cols = [k for k in rows[0] if k.startswith("prob_")]
    assert prob_cols == [f"prob_{n}" for n in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")]
    for r in rows:
        probs = [float(r[k]) for k in prob_cols]
        assert abs(sum(probs) - 1) < 1e-4 and r["pred"] == prob_cols[int(np.argmax(probs))][5:]


def test_the_console_script_exits_0_when_a_command_returns_a_value(tmp_path):
    """``ferkit info`` returns a dict and ``ferkit demo`` its rows: the console script must not turn that into exit 1."""
    exe = shutil.which("ferkit")
    if exe is None:
        pytest.skip("the ferkit console script is not installed (pip install -e .)")
    proc = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "configs" in proc.stdout and "{" not in proc.stderr


def test_a_class_in_the_working_folder_is_found_after_installed_packages(tmp_path, monkeypatch, capsys):
    """``ferkit fit --model my_module.MyClass`` finds a module in the folder the command runs in, as ``python -m``
    would, without ``PYTHONPATH``; the folder goes last on the path (an installed package of the same name wins) and
    only once however often the command runs in one process."""
    (tmp_path / "my_fer_module.py").write_text(
        "from ferkit.methods import ARMClassifier\n\n\nclass WorkingFolderARM(ARMClassifier):\n    pass\n")
    start = [p for p in sys.path if p and Path(p).resolve() != tmp_path.resolve()]
    monkeypatch.setattr(sys, "path", list(start))
    monkeypatch.delitem(sys.modules, "my_fer_module", raising=False)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        with pytest.raises(SystemExit) as stop:
            main(["fit", "--config", "arm_synthetic", "--model", "my_fer_module.WorkingFolderARM", "--print_config"])
        assert stop.value.code in (0, None)
        assert "class_path: my_fer_module.WorkingFolderARM" in capsys.readouterr().out
    assert sys.path == start + [str(tmp_path)]
