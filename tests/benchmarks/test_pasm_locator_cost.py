"""``benchmarks/pasm_locator_cost.py``: the fresh-teacher measurement on synthetic faces and the trained-teacher one
from a ferkit checkpoint write consistent result files (tiny settings; no test reads a time)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "pasm_locator_cost.py"
TINY = ["--images", "8", "--batch-size", "8", "--max-points", "8", "--points-per-step", "4", "--epochs", "30"]

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(SCRIPT), *TINY, *args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(Path(args[args.index("--output") + 1]).read_text())


def _check(result: dict) -> None:
    assert set(result["attacks"]) == {"l0_greedy", "sparse_pgd", "saliency"}
    step = result["train_step_ms_per_image"]
    assert step > 0
    for name, r in result["attacks"].items():
        assert r["ms_per_image"] > 0
        assert r["fraction_of_one_training_epoch"] == pytest.approx(r["ms_per_image"] / step, rel=0.02, abs=0.01)
        assert r["fraction_of_a_generation"] == pytest.approx(r["fraction_of_one_training_epoch"] / 30, rel=0.05, abs=1e-3)
        assert 0 < r["mean_perturbed_pixels"] <= 8  # the budget: --max-points 8
    assert result["attacks"]["saliency"]["gradient_passes_worst_case"] == 1


def test_fresh_teacher_on_synthetic_faces(tmp_path) -> None:
    result = _run(["--output", str(tmp_path / "fresh.json")], tmp_path)
    _check(result)
    assert "teacher" not in result


def test_trained_teacher_from_a_checkpoint(tmp_path) -> None:
    """A checkpoint in ferkit's layout (``net`` hyper-parameters, ``model.*`` weights) is attacked as it is: the result
    names it and the teacher's accuracy on the images it was timed on."""
    from conftest import write_network_checkpoint

    ckpt = write_network_checkpoint(tmp_path / "teacher.ckpt", backbone="resnet18")
    result = _run(["--teacher", str(ckpt), "--output", str(tmp_path / "trained.json")], tmp_path)
    _check(result)
    assert result["teacher"]["checkpoint"] == "teacher.ckpt"
    assert 0.0 <= result["teacher"]["accuracy_on_these_images"] <= 1.0


def test_a_missing_teacher_is_named(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(SCRIPT), *TINY, "--teacher", str(tmp_path / "none.ckpt"), "--output",
                          str(tmp_path / "x.json")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "none.ckpt" in out.stderr and not (tmp_path / "x.json").exists()
