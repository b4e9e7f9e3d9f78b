"""``python -m benchmarks status`` from hand-made run folders."""
from __future__ import annotations

import fcntl
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.status import expected_minutes, run_status, status_lines  # noqa: E402


def make_run(run_dir: Path, phase: str, val: list[float], times: list[float], max_epochs: int | None = 10) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "state.json").write_text(json.dumps({"phase": phase, "attempts": 1}))
    (run_dir / "history.jsonl").write_text("".join(
        json.dumps({"epoch": e, "time": t, "metrics": {"val/acc": v}}) + "\n" for e, (v, t) in enumerate(zip(val, times))))
    if max_epochs is not None:
        for attempt, n in ((0, 99), (1, max_epochs)):  # the latest attempt's config counts
            cfg = run_dir / "fit" / f"attempt_{attempt}" / "config.yaml"
            cfg.parent.mkdir(parents=True)
            # a max_epochs outside the trainer section (a scheduler argument) must not be read as the run's
            cfg.write_text(f"model:\n  sched:\n    max_epochs: 3\ntrainer:\n  accelerator: cpu\n  max_epochs: {n}\n")


def test_a_running_run_shows_its_epochs_best_pace_and_time_left(tmp_path) -> None:
    run = tmp_path / "suite" / "ce_s0"
    # epochs 60 s apart, one 1-hour gap across a restart (left out of the pace)
    make_run(run, "fitting", [0.5, 0.7, 0.6, 0.7], [0.0, 60.0, 3660.0, 3720.0])
    with open(run / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        s = run_status(run)
        assert s["running"]
    assert not run_status(run)["running"]
    # best: the first epoch of the tie at 0.7 (epoch index 1); 6 epochs left at 1 minute each
    assert s["epochs"] == 4 and s["max_epochs"] == 10 and s["best"] == (1, 0.7)
    assert s["min_per_epoch"] == 1.0 and s["minutes_left"] == 6.0


def test_the_pace_leaves_out_restarts_and_pauses_few_epochs_cannot_outvote(tmp_path) -> None:
    """With three epochs the median cannot single out a gap that spans a restart or a pause: the attempt's start time
    (its ``config.yaml``) and the epoch's CPU seconds do. With no clean gap left, the epochs' median CPU time."""
    import os

    def pace(name, times, cpu=None, restart=None):
        run = tmp_path / "s" / name
        make_run(run, "fitting", [0.5] * len(times), times, max_epochs=10)
        if cpu is not None:
            rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
            (run / "history.jsonl").write_text("".join(json.dumps({**r, "cpu_s": c}) + "\n" for r, c in zip(rows, cpu)))
        if restart is not None:  # attempt_1 began at `restart`; attempt_0 before the first epoch
            os.utime(run / "fit" / "attempt_0" / "config.yaml", (-50.0, -50.0))
            os.utime(run / "fit" / "attempt_1" / "config.yaml", (restart, restart))
        return run_status(run)["min_per_epoch"]

    assert pace("plain", [0.0, 60.0, 300.0]) == 2.5  # nothing to tell the 240-s gap from an epoch: median of 60, 240
    assert pace("restart", [0.0, 60.0, 300.0], restart=100.0) == 1.0  # attempt 1 began inside the 240-s gap
    assert pace("paused", [0.0, 60.0, 300.0], cpu=[55, 55, 55]) == 1.0  # 240 s of wall for 55 CPU seconds
    assert pace("busy", [0.0, 60.0, 160.0], cpu=[55, 55, 55]) == pytest.approx(80 / 60)  # 100 s per 55: kept
    assert pace("cpu_only", [0.0, 300.0], cpu=[50, 66], restart=100.0) == pytest.approx(58 / 60)
    assert pace("nothing", [0.0, 300.0], restart=100.0) is None


def test_status_lines_cover_every_started_run(tmp_path) -> None:
    make_run(tmp_path / "a" / "ce_s0", "done", [0.5, 0.6], [0.0, 60.0], max_epochs=2)
    make_run(tmp_path / "a" / "asm_s0", "new", [], [], max_epochs=None)
    (tmp_path / "a" / "_shared").mkdir()
    lines = status_lines(tmp_path)
    assert lines[0] == "a:" and len(lines) == 3
    assert "asm_s0" in lines[1] and "0/?" in lines[1] and "no epoch yet" in lines[1]
    assert "ce_s0" in lines[2] and "2/2" in lines[2] and "best val 60.00 (epoch 2)" in lines[2]
    assert "left" not in lines[2]  # a finished run has no time left
    assert status_lines(tmp_path, ["b"]) == []
    make_run(tmp_path / "c" / "omni_s0", "done", [0.5], [0.0], max_epochs=-1)  # a run bounded by max_steps
    assert run_status(tmp_path / "c" / "omni_s0")["max_epochs"] is None


def test_a_run_in_a_step_before_its_fit_shows_the_step(tmp_path) -> None:
    """A run whose step (a centre pass) is running shows the step and how long ago it began; a finished step is not
    shown, and a step killed part-way shows as unfinished."""
    import time

    run = tmp_path / "pasm" / "gen1_s0"
    make_run(run, "new", [], [], max_epochs=None)
    marks = tmp_path / "pasm" / "_shared" / ".steps"
    marks.mkdir(parents=True)
    (run / "step_centres_gen1_s0.log").write_text("$ ferkit pasm locate ...\n")
    (marks / "centres_gen1_s0.started").write_text(json.dumps({"time": time.time() - 600, "run": "gen1_s0"}))
    with open(run / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        line = status_lines(tmp_path)[1]
    assert "step centres_gen1_s0 running, begun 10 min ago" in line and "no epoch yet" not in line
    assert "step centres_gen1_s0 unfinished" in status_lines(tmp_path)[1]  # nobody drives it: killed
    (marks / "centres_gen1_s0.done").write_text("{}")
    assert "no epoch yet" in status_lines(tmp_path)[1] and run_status(run)["steps"] == []


def test_expected_minutes_of_a_queue_step_count_only_the_epochs_left(tmp_path) -> None:
    """cpu_queue.sh's deadline check: a run killed 4 epochs into 10 needs 6/10 of its step's minutes plus 5 for its
    resume and test; a fitted run its test; a run not begun (or with no folder) all of them."""
    make_run(tmp_path / "s" / "part", "fitting", [0.5] * 4, [0.0, 60.0, 120.0, 180.0], max_epochs=10)
    assert expected_minutes(tmp_path / "s" / "part", 100) == 65
    make_run(tmp_path / "s" / "fitted", "fitted", [0.5] * 10, [60.0 * i for i in range(10)], max_epochs=10)
    assert expected_minutes(tmp_path / "s" / "fitted", 100) == 10
    make_run(tmp_path / "s" / "fresh", "fitting", [], [], max_epochs=10)
    assert expected_minutes(tmp_path / "s" / "fresh", 100) == 100
    assert expected_minutes(tmp_path / "s" / "absent", 100) == 100
    make_run(tmp_path / "s" / "last", "fitting", [0.5] * 10, [60.0 * i for i in range(10)], max_epochs=10)
    assert expected_minutes(tmp_path / "s" / "last", 3) == 3  # nothing left: never more than the full estimate


def test_expected_minutes_use_the_runs_own_pace_where_this_machine_is_slower(tmp_path) -> None:
    """A step estimated at 30 minutes for 10 epochs (3 per epoch) whose run took 6 minutes per epoch here (a slower
    machine) needs its 6 epochs left at 6 minutes, plus 5: 41, not 23. A faster pace keeps the step's estimate."""
    make_run(tmp_path / "s" / "slow", "fitting", [0.5] * 4, [0.0, 360.0, 720.0, 1080.0], max_epochs=10)
    assert expected_minutes(tmp_path / "s" / "slow", 30) == 41
    assert expected_minutes(tmp_path / "s" / "slow", 30) > 30  # past the full estimate: it was made elsewhere
    make_run(tmp_path / "s" / "fast", "fitting", [0.5] * 4, [0.0, 60.0, 120.0, 180.0], max_epochs=10)
    assert expected_minutes(tmp_path / "s" / "fast", 30) == 23
    # 7 epochs at 6 minutes, then 4 that each waited out a 24-minute pause: the pace over all epochs is still 6,
    # so 20 epochs left need 125 minutes (the last 5 epochs alone would say 30 per epoch: 605)
    times = [360.0 * e for e in range(7)] + [2160.0 + 1800.0 * e for e in range(1, 5)]
    make_run(tmp_path / "s" / "paused", "fitting", [0.5] * 11, times, max_epochs=31)
    assert expected_minutes(tmp_path / "s" / "paused", 100) == 125


def test_pace_scales_only_the_estimates_this_machine_has_not_timed(tmp_path) -> None:
    """``--pace 2.6`` (a machine 2.6x slower than the one the estimates were made on): a run not begun, or with no
    folder, needs 2.6x its step's minutes, a fitted one 2.6x the 10 of its test; a run with one epoch (no pace of its
    own yet) its epochs left at the scaled rate; a run with its own pace is timed by that pace, not by the factor."""
    make_run(tmp_path / "s" / "fresh", "fitting", [], [], max_epochs=10)
    assert expected_minutes(tmp_path / "s" / "fresh", 100, 2.6) == 260
    assert expected_minutes(tmp_path / "s" / "absent", 80, 2.6) == 208  # 207.99999... rounds to 208, not 209
    make_run(tmp_path / "s" / "fitted", "fitted", [0.5] * 10, [60.0 * i for i in range(10)], max_epochs=10)
    assert expected_minutes(tmp_path / "s" / "fitted", 100, 2.6) == 26
    make_run(tmp_path / "s" / "one", "fitting", [0.5], [0.0], max_epochs=10)
    assert expected_minutes(tmp_path / "s" / "one", 100, 2.0) == 185  # 9/10 of 200, plus 5
    make_run(tmp_path / "s" / "part", "fitting", [0.5] * 4, [0.0, 360.0, 720.0, 1080.0], max_epochs=10)
    assert expected_minutes(tmp_path / "s" / "part", 30, 2.6) == expected_minutes(tmp_path / "s" / "part", 30) == 41
