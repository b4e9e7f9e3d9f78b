"""``benchmarks/pasm_locator_cost.py``: the fresh-teacher measurement on synthetic faces and the trained-teacher one
from a ferkit checkpoint write consistent result files (tiny settings; no test reads a time)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "pasm_locator_cost.py"
TINY = ["--images", "8", "--batch-size", "8", "--max-points", "8", "--points-per-step", "4", "--epochs", "30"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """``name -> (returncode, output, output file)`` of the script's three runs: a fresh teacher, a trained one from
    a checkpoint, and a teacher file that does not exist. They are independent and start side by side (most of each
    one's time is its single-threaded start-up)."""
    from conftest import run_side_by_side, write_network_checkpoint

    base = tmp_path_factory.mktemp("pasm_locator_cost")
    ckpt = write_network_checkpoint(base / "teacher.ckpt", backbone="resnet18")
    cases = {"fresh": [], "trained": ["--teacher", str(ckpt)], "missing": ["--teacher", str(base / "none.ckpt")]}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    outputs = {name: base / f"{name}.json" for name in cases}
    done = run_side_by_side({name: [sys.executable, str(SCRIPT), *TINY, *extra, "--output", str(outputs[name])]
                             for name, extra in cases.items()}, cwd=base, env=env)
    return {name: (*done[name], outputs[name]) for name in cases}


def _result(runs: dict, name: str) -> dict:
    rc, text, out = runs[name]
    assert rc == 0, text[-4000:]
    return json.loads(out.read_text())


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


def test_fresh_teacher_on_synthetic_faces(runs) -> None:
    result = _result(runs, "fresh")
    _check(result)
    assert "teacher" not in result


def test_trained_teacher_from_a_checkpoint(runs) -> None:
    """A checkpoint in ferkit's layout (``net`` hyper-parameters, ``model.*`` weights) is attacked as it is: the result
    names it and the teacher's accuracy on the images it was timed on."""
    result = _result(runs, "trained")
    _check(result)
    assert result["teacher"]["checkpoint"] == "teacher.ckpt"
    assert 0.0 <= result["teacher"]["accuracy_on_these_images"] <= 1.0


def test_a_missing_teacher_is_named(runs) -> None:
    rc, text, out = runs["missing"]
    assert rc != 0 and "none.ckpt" in text and not out.exists()
