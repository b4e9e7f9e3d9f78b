"""``benchmarks/gpu.sh`` argument handling, with a stand-in for Python that records each call."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
exit 0
"""


def calls(tmp_path: Path, *args: str) -> list[str]:
    fake = tmp_path / "fakepython"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    env = {**os.environ, "PYTHON": str(fake), "FAKE_LOG": str(log)}
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--smoke", "--work-dir", str(tmp_path / "w"),
                          *args], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    return [c for c in log.read_text().splitlines() if c.startswith("-m benchmarks run")]


def test_another_suites_runs_get_the_accelerator_and_a_share_of_the_loader_workers(tmp_path: Path) -> None:
    runs = calls(tmp_path, "--suite", "ferplus_noise30", "--parallel", "--workers", "3", "--only", "ce_s1", "asm_s1",
                 "--", "--trainer.max_epochs", "2")
    assert len(runs) == 2  # one process per run
    for name, call in zip(("ce_s1", "asm_s1"), sorted(runs, key=lambda c: "asm_s1" in c)):
        assert call.startswith("-m benchmarks run ferplus_noise30 --smoke --accelerator cpu")
        # the run names before `--`, then the overrides: the workers first, then the ones given
        assert call.endswith(f"--only {name} -- --data.num_workers 3 --trainer.max_epochs 2"), call


def test_the_gpu_suite_keeps_its_own_workers(tmp_path: Path) -> None:
    (call,) = calls(tmp_path, "--only", "recipe112_s0")
    assert call.startswith("-m benchmarks run gpu --smoke") and call.endswith("--only recipe112_s0")
    assert "num_workers" not in call


def test_another_suite_needs_named_runs(tmp_path: Path) -> None:
    fake = tmp_path / "fakepython"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--smoke", "--suite", "ferplus_noise30"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHON": str(fake), "FAKE_LOG": str(tmp_path / "log")})
    assert res.returncode == 2 and "needs the runs named after --only" in res.stderr


def test_another_suites_runs_default_to_a_share_of_the_cores_and_take_no_overrides(tmp_path: Path) -> None:
    runs = calls(tmp_path, "--suite", "ferplus_noise30", "--parallel", "--only", "ce_s1", "asm_s1")
    share = max(len(os.sched_getaffinity(0)) // 2 - 1, 0)  # nproc's cores, halved between the two runs, less the main
    assert len(runs) == 2 and all(c.endswith(f"-- --data.num_workers {share}") for c in runs), runs
    # without --smoke, overrides would make records that stand for runs trained otherwise: refused before anything
    fake = tmp_path / "fakepython"
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--suite", "ferplus_noise30", "--work-dir",
                          str(tmp_path / "w2"), "--only", "ce_s1", "--", "--trainer.max_epochs", "2"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHON": str(fake), "FAKE_LOG": str(tmp_path / "log2")})
    assert res.returncode == 2 and "takes no overrides" in res.stderr
    assert not (tmp_path / "log2").exists()


def test_workers_must_be_a_number_and_only_for_another_suite(tmp_path: Path) -> None:
    fake = tmp_path / "fakepython"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "FAKE_LOG": str(tmp_path / "log")}
    for args, message in ((["--suite", "ferplus_noise30", "--workers", "x", "--only", "ce_s1"], "takes a number"),
                          (["--workers", "3", "--only", "recipe112_s0"], "is for --suite NAME")):
        res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--smoke", *args], capture_output=True,
                             text=True, timeout=60, env=env)
        assert res.returncode == 2 and message in res.stderr, res.stderr
    assert not (tmp_path / "log").exists()


def test_missing_packages_are_named_before_any_run(tmp_path: Path) -> None:
    """A lent machine without ferkit's packages (here: Python started without its site-packages) is told which ones
    to carry, and exits 3 before the harness starts."""
    import sys

    fake = tmp_path / "barepython"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> "$FAKE_LOG"\nexec {sys.executable} -S "$@"\n')
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    env = {**os.environ, "PYTHON": str(fake), "FAKE_LOG": str(log), "PYTHONPATH": ""}
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--smoke", "--work-dir", str(tmp_path / "w"),
                          "--only", "recipe112_s0"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "missing: albumentations jsonargparse lightning timm torchmetrics" in res.stderr
    assert not [c for c in log.read_text().splitlines() if "benchmarks run" in c]
