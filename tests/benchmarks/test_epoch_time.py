"""benchmarks/epoch_time.py: a queued run's cost alone, projected from a few of its epochs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import epoch_time  # noqa: E402
from benchmarks.suite import Run  # noqa: E402


def test_projection_from_the_timed_epochs() -> None:
    # epochs ended at 100, 160, 220 and 290 s; the timed fit took 300 s in all, the test 5 s
    p = epoch_time.project([100.0, 160.0, 220.0, 290.0], fit_seconds=300.0, test_seconds=5.0, epochs=10)
    assert p["epoch_seconds"] == [60.0, 60.0, 70.0] and p["median_epoch_seconds"] == 60.0
    assert p["first_epoch_and_startup_seconds"] == 110.0       # 300 - (60 + 60 + 70)
    assert p["projected_fit_seconds"] == 110.0 + 9 * 60.0       # the first epoch, then 9 more at the median
    assert p["projected_fit_and_test_seconds"] == p["projected_fit_seconds"] + 5.0
    with pytest.raises(SystemExit, match="fewer than 2 epochs"):
        epoch_time.project([100.0], 120.0, 0.0, 10)


def test_the_runs_own_epochs(tmp_path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("trainer:\n  max_epochs: 12\n")
    assert epoch_time.full_epochs(Run("r", "x", 0, ["--trainer.max_epochs", "30", "--trainer.max_epochs", "60"]),
                                  str(config)) == 60
    assert epoch_time.full_epochs(Run("r", "x", 0, ["--trainer.max_epochs=45"]), str(config)) == 45
    assert epoch_time.full_epochs(Run("r", "x", 0, []), str(config)) == 12


def test_refuses_a_shared_cpu_and_unknown_runs(monkeypatch) -> None:
    monkeypatch.setattr(epoch_time, "other_fits", lambda: [])
    with pytest.raises(SystemExit, match="no run 'nope'"):
        epoch_time.main(["smoke", "nope"])
    monkeypatch.setenv("FERKIT_BENCH_LANES", "2")
    with pytest.raises(SystemExit, match="share the CPU"):
        epoch_time.main(["smoke", "avg_s0"])
    monkeypatch.delenv("FERKIT_BENCH_LANES")
    monkeypatch.setattr(epoch_time, "other_fits", lambda: ["123 python -m ferkit.cli fit --config x"])
    with pytest.raises(SystemExit, match="other ferkit fits are running"):
        epoch_time.main(["smoke", "avg_s0"])


@pytest.mark.slow
def test_times_a_tiny_run_end_to_end(tmp_path) -> None:
    out = tmp_path / "t.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/epoch_time.py"), "smoke", "avg_s0", "--epochs", "2",
                           "--output", str(out), "--force"], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert (r["suite"], r["run"], r["timed_epochs"], r["full_epochs"]) == ("smoke", "avg_s0", 2, 3)
    assert len(r["epoch_seconds"]) == 1 and r["median_epoch_seconds"] == r["epoch_seconds"][0] > 0
    assert r["projected_fit_seconds"] == pytest.approx(r["first_epoch_and_startup_seconds"] + 2 * r["median_epoch_seconds"])
    assert r["machine"]["threads"] == 1
    assert not (REPO / "benchmarks/results/timing/smoke__avg_s0.json").exists()


def test_a_paused_fit_does_not_count_as_running() -> None:
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.2)
        assert not epoch_time.stopped(str(proc.pid))
        proc.send_signal(signal.SIGSTOP)
        for _ in range(50):  # the state changes asynchronously
            if epoch_time.stopped(str(proc.pid)):
                break
            time.sleep(0.05)
        assert epoch_time.stopped(str(proc.pid))
        assert not epoch_time.stopped("999999999")  # no such process
    finally:
        proc.kill()
        proc.wait()
