"""``benchmarks/cpu_queue.sh`` with a stand-in for Python: every step runs once across the two workers, a second
queue is refused while one runs, and ``stop`` ends the workers and their runs at once."""
from __future__ import annotations

import calendar
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKE_PYTHON = """#!/usr/bin/env bash
# stands in for `python -m benchmarks ...`: records the call; a `run` sleeps FAKE_SLEEP seconds
echo "$*" >> "$FAKE_LOG"
if [ "$3" = run ] && [ -n "${FAKE_SLEEP:-}" ]; then sleep "$FAKE_SLEEP"; fi
exit 0
"""


@pytest.fixture
def queue(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    shutil.copy(REPO / "benchmarks" / "cpu_queue.sh", tmp_path / "benchmarks" / "cpu_queue.sh")
    fake = tmp_path / "fakepython"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    # the second worker starts 1 s after the first (5 s in real use): enough for the first to claim its step
    env = {**os.environ, "PYTHON": str(fake), "FAKE_LOG": str(tmp_path / "calls.log"), "FERKIT_QUEUE_STAGGER": "1"}
    return tmp_path, env


def steps_in_script() -> list[str]:
    text = (REPO / "benchmarks" / "cpu_queue.sh").read_text()
    body = text[text.index("STEPS=(") + len("STEPS=("):text.index("\n)\n", text.index("STEPS=("))]
    return [line.split('"')[1] for line in body.splitlines() if line.strip().startswith('"')]


def single_run(steps: list[str]) -> list[str]:
    """The steps of one run (``suite --only name``): only those have a run of their own whose epochs left the queue
    asks `benchmarks.status expected` for."""
    return [s for s in steps if len(step_args(s).split()) == 3]


def step_args(step: str) -> str:
    """A step without its expected minutes."""
    minutes, args = step.split(" ", 1)
    assert minutes.isdigit(), f"{step!r} does not start with its expected lane minutes"
    return args


def test_every_step_runs_once_across_the_two_workers(queue) -> None:
    root, env = queue
    env = {**env, "FAKE_SLEEP": "0.5"}  # long enough for the second worker (started 1 s after the first) to join
    subprocess.run(["bash", "benchmarks/cpu_queue.sh"], cwd=root, env=env, check=True, timeout=120,
                   capture_output=True)
    calls = (root / "calls.log").read_text().splitlines()
    runs = [c.split(" ", 3)[3] for c in calls if c.split()[2] == "run"]
    assert sorted(runs) == sorted(map(step_args, steps_in_script()))  # each once, none lost between the workers
    assert sum(c.split()[2] == "table" for c in calls) == len(runs)  # tables rebuilt after every step
    logs = [(root / "benchmarks" / "runs" / f"cpu_queue_{w}.log").read_text() for w in "ab"]
    assert all("[queue]" in log for log in logs)  # both workers took steps


def test_a_finished_step_is_passed_over_without_calling_python(queue) -> None:
    """A step whose runs all have records is not handed to the harness (nor to `benchmarks.status`), with or without
    a deadline: only the other steps reach Python."""
    root, env = queue
    steps = steps_in_script()
    done = step_args(steps[0])
    suite, names = done.split()[0], done.split()[done.split().index("--only") + 1:]
    (root / "benchmarks" / "results" / suite).mkdir(parents=True)
    for name in names:
        (root / "benchmarks" / "results" / suite / f"{name}.json").write_text("{}")
    for extra in ([], ["--until", "1000 minutes"]):
        (root / "calls.log").unlink(missing_ok=True)
        subprocess.run(["bash", "benchmarks/cpu_queue.sh", "two", *extra], cwd=root, env={**env, "FAKE_SLEEP": "0.2"},
                       check=True, timeout=120, capture_output=True)
        calls = (root / "calls.log").read_text().splitlines()
        runs = sorted(c.split(" ", 3)[3] for c in calls if c.split()[2] == "run")
        assert runs == sorted(step_args(s) for s in steps[1:])
        assert not [c for c in calls if suite in c.split() and set(names) & set(c.split())]


def test_until_skips_the_steps_that_would_not_end_in_time(queue) -> None:
    """With a deadline 100 minutes away, the workers run exactly the steps expected to take less, and log the rest;
    a step whose runs all have records is passed over without a word."""
    root, env = queue
    steps = steps_in_script()
    done = step_args(max(steps, key=lambda s: int(s.split()[0])))  # a long step that has finished already
    suite, names = done.split()[0], done.split()[2:]  # "suite --only name..."
    (root / "benchmarks" / "results" / suite).mkdir(parents=True)
    for name in names:
        (root / "benchmarks" / "results" / suite / f"{name}.json").write_text("{}")
    env = {**env, "FAKE_SLEEP": "0.5"}
    subprocess.run(["bash", "benchmarks/cpu_queue.sh", "two", "--until", "100 minutes"], cwd=root, env=env, check=True,
                   timeout=120, capture_output=True)
    calls = (root / "calls.log").read_text().splitlines()
    runs = sorted(c.split(" ", 3)[3] for c in calls if c.split()[2] == "run")
    assert runs == sorted(step_args(s) for s in steps if int(s.split()[0]) < 100)
    assert runs and len(runs) < len(steps)  # the list has steps on both sides of the deadline
    logs = "".join((root / "benchmarks" / "runs" / f"cpu_queue_{w}.log").read_text() for w in "ab")
    skipped = [s for s in steps if int(s.split()[0]) >= 100 and step_args(s) != done]
    assert all(f"skip {step_args(s)}: needs ~{s.split()[0]} min" in logs for s in skipped)
    assert f"skip {done}:" not in logs
    bad = subprocess.run(["bash", "benchmarks/cpu_queue.sh", "--until"], cwd=root, env=env, capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode != 0


def test_until_a_clock_time_already_past_means_tomorrow_and_a_past_date_is_refused(queue) -> None:
    """A session that starts at 22:30 and gives ``--until 01:20`` means 01:20 tomorrow (``date`` alone would read today
    and skip every step); a deadline given with a date that has passed is an error, not a queue that runs nothing."""
    root, env = queue
    env = {**env, "FAKE_SLEEP": "0"}
    # "00:00" is always past (today's midnight), so it must become tomorrow's midnight, at any time of day
    started = subprocess.run(["bash", "benchmarks/cpu_queue.sh", "one", "--until", "00:00"], cwd=root, env=env,
                             capture_output=True, text=True, timeout=120, check=True)
    line = next(ln for ln in started.stdout.splitlines() if "steps must end by" in ln)
    deadline = calendar.timegm(time.strptime(line.split("steps must end by ")[1], "%Y-%m-%dT%H:%M:%SZ"))
    today = time.localtime()
    tomorrow = time.mktime((today.tm_year, today.tm_mon, today.tm_mday + 1, 0, 0, 0, 0, 0, -1))
    assert deadline == int(tomorrow)
    (root / "calls.log").unlink(missing_ok=True)  # near midnight no step fits, and none ran
    refused = subprocess.run(["bash", "benchmarks/cpu_queue.sh", "--until", "2000-01-01 01:20"], cwd=root, env=env,
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "already past" in refused.stderr
    assert not (root / "calls.log").exists()  # nothing was started


def test_a_second_queue_is_refused_and_stop_ends_everything(queue) -> None:
    root, env = queue
    env = {**env, "FAKE_SLEEP": "120"}
    first = subprocess.Popen(["bash", "benchmarks/cpu_queue.sh"], cwd=root, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:  # both workers are inside a step
            log = root / "calls.log"
            if log.is_file() and len(log.read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        second = subprocess.run(["bash", "benchmarks/cpu_queue.sh"], cwd=root, env=env, capture_output=True,
                                text=True, timeout=30)
        assert second.returncode == 1 and "another queue" in second.stderr
        stop = subprocess.run(["bash", "benchmarks/cpu_queue.sh", "stop"], cwd=root, env=env, capture_output=True,
                              text=True, timeout=30)
        assert stop.returncode == 0 and "stopping" in stop.stdout
        first.wait(timeout=10)  # the queue itself is gone ...
        sleepers = subprocess.run(["pgrep", "-f", f"{root}/fakepython"], capture_output=True, text=True).stdout
        assert sleepers.strip() == ""  # ... and so are the runs it had started
        again = subprocess.run(["bash", "benchmarks/cpu_queue.sh", "stop"], cwd=root, env=env, capture_output=True,
                               text=True, timeout=30)
        assert "no queue is running" in again.stdout
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)


def test_every_queued_run_exists_and_is_queued_once() -> None:
    import sys

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from benchmarks.suite import load_suite

    seen = set()
    for step in steps_in_script():
        parts = step_args(step).split()
        names = parts[parts.index("--only") + 1:]
        known = {r.name for r in load_suite(parts[0]).runs}
        for name in names:
            assert name in known, f"{step}: {parts[0]} has no run {name}"
            assert (parts[0], name) not in seen, f"{parts[0]}/{name} is queued twice"
            seen.add((parts[0], name))


def test_fill_continues_begun_runs_first_then_the_soonest_to_end(queue) -> None:
    """With ``--fill``, the skipped steps whose runs have finished epochs (begun) are taken first, whatever their
    estimate, then the others; within each group by expected minutes, list order among equals. Here the last two
    long steps of the list are begun (a history file each); the stand-in for `benchmarks.status expected` says
    the last needs 900 minutes, more than any fresh step, and the one before it 600. One worker (`one` mode scales
    every estimate by 0.65), so the order is the log's."""
    root, env = queue
    steps = steps_in_script()
    scaled = [int(s.split()[0]) * 65 // 100 for s in steps]
    long = [i for i, m in enumerate(scaled) if m > 100]
    begun = {long[-1]: 900, long[-2]: 600}
    assert max(scaled) * 100 // 65 < 600  # both estimates exceed every fresh step's
    checks = []
    for i, minutes in begun.items():
        suite, name = step_args(steps[i]).split()[0], step_args(steps[i]).split()[-1]
        (root / "benchmarks" / "runs" / suite / name).mkdir(parents=True)
        (root / "benchmarks" / "runs" / suite / name / "history.jsonl").write_text('{"epoch": 0}\n')
        checks.append(f'[ "$2 $5 $6" = "benchmarks.status {suite} {name}" ] && echo {minutes}')
    fake = root / "fakepython"
    fake.write_text(FAKE_PYTHON.replace("exit 0", "\n".join(checks) + "\nexit 0"))
    res = subprocess.run(["bash", "benchmarks/cpu_queue.sh", "one", "--until", "100 minutes", "--fill"], cwd=root,
                         env={**env, "FAKE_SLEEP": "0.1"}, check=True, timeout=180, capture_output=True, text=True)
    fills = [ln.split("Z fill ", 1)[1].split(":")[0] for ln in res.stdout.splitlines() if "Z fill " in ln]
    expected = [long[-2], long[-1]] + sorted((i for i in long if i not in begun), key=lambda i: (scaled[i], i))
    assert fills == [step_args(steps[i]) for i in expected]


def test_until_counts_only_the_epochs_left_of_a_run_killed_part_way(queue) -> None:
    """A long step whose run is mostly trained (the stand-in for `benchmarks.status expected` says 20 minutes) runs
    before a 100-minute deadline; the other long steps are still skipped."""
    root, env = queue
    steps = steps_in_script()
    long_step = step_args(max(single_run(steps), key=lambda s: int(s.split()[0])))
    suite, name = long_step.split()[0], long_step.split()[-1]
    fake = root / "fakepython"
    fake.write_text(FAKE_PYTHON.replace("exit 0", f'[ "$2 $5 $6" = "benchmarks.status {suite} {name}" ] && echo 20\nexit 0'))
    subprocess.run(["bash", "benchmarks/cpu_queue.sh", "two", "--until", "100 minutes"], cwd=root,
                   env={**env, "FAKE_SLEEP": "0.5"}, check=True, timeout=120, capture_output=True)
    calls = (root / "calls.log").read_text().splitlines()
    runs = sorted(c.split(" ", 3)[3] for c in calls if c.split()[2] == "run")
    assert runs == sorted([long_step] + [step_args(s) for s in steps if int(s.split()[0]) < 100])


def test_until_asks_the_real_status_command_for_a_killed_runs_epochs_left(queue) -> None:
    """The same decision through the real `python -m benchmarks.status expected` (only the harness is a stand-in):
    the queue's arguments reach it in the right order, and a long run killed 28 epochs into 30 runs before a
    100-minute deadline."""
    import json
    import sys

    root, env = queue
    steps = steps_in_script()
    long_step = max(single_run(steps), key=lambda s: int(s.split()[0]))
    suite, name = step_args(long_step).split()[0], step_args(long_step).split()[-1]
    run_dir = root / "benchmarks" / "runs" / suite / name
    (run_dir / "fit" / "attempt_0").mkdir(parents=True)
    (run_dir / "state.json").write_text(json.dumps({"phase": "fitting", "attempts": 1}))
    (run_dir / "history.jsonl").write_text("".join(json.dumps({"epoch": e, "time": 60.0 * e, "metrics": {}}) + "\n"
                                                   for e in range(28)))
    (run_dir / "fit" / "attempt_0" / "config.yaml").write_text("trainer:\n  max_epochs: 30\n")
    fake = root / "fakepython"
    fake.write_text(FAKE_PYTHON.replace("exit 0", f'[ "$2" = benchmarks.status ] && exec {sys.executable} "$@"\nexit 0'))
    env = {**env, "FAKE_SLEEP": "0.5", "PYTHONPATH": str(REPO)}
    subprocess.run(["bash", "benchmarks/cpu_queue.sh", "two", "--until", "100 minutes"], cwd=root, env=env, check=True,
                   timeout=180, capture_output=True)
    calls = (root / "calls.log").read_text().splitlines()
    runs = sorted(c.split(" ", 3)[3] for c in calls if c.split()[2] == "run")
    assert step_args(long_step) in runs  # ~2/30 of its minutes + 5, not the full estimate
    assert runs == sorted([step_args(long_step)] + [step_args(s) for s in steps if int(s.split()[0]) < 100])


def test_fill_runs_the_skipped_steps_once_nothing_else_fits(queue) -> None:
    """``--until 100 minutes --fill``: the steps that end in time run first; a worker left with none then takes the
    skipped ones (each once across the two workers, with a log line) instead of idling; ``--fill`` alone is refused."""
    root, env = queue
    steps = steps_in_script()
    long_steps = [step_args(s) for s in steps if int(s.split()[0]) >= 100]
    assert long_steps and len(long_steps) < len(steps)  # the list has steps on both sides of the deadline
    env = {**env, "FAKE_SLEEP": "0.5"}
    subprocess.run(["bash", "benchmarks/cpu_queue.sh", "two", "--until", "100 minutes", "--fill"], cwd=root, env=env,
                   check=True, timeout=180, capture_output=True)
    calls = (root / "calls.log").read_text().splitlines()
    runs = [c.split(" ", 3)[3] for c in calls if c.split()[2] == "run"]
    assert sorted(runs) == sorted(map(step_args, steps))  # every step, each once
    filled = []
    for w in "ab":
        log = (root / "benchmarks" / "runs" / f"cpu_queue_{w}.log").read_text()
        events = [ln.split("Z ", 1)[1] for ln in log.splitlines() if ln.startswith("[queue]") and "Z " in ln]
        fills = [i for i, e in enumerate(events) if e.startswith("fill ")]
        filled += [events[i][len("fill "):].split(":")[0] for i in fills]
        if fills:  # in each worker, no step that ends in time starts after its first fill step
            later = [e for e in events[fills[0]:] if e in runs]
            assert later and all(e in long_steps for e in later)
    assert sorted(filled) == sorted(long_steps)  # each skipped step was filled in once, by one of the workers
    alone = subprocess.run(["bash", "benchmarks/cpu_queue.sh", "two", "--fill"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=30)
    assert alone.returncode == 2 and "--fill needs --until" in alone.stderr


def test_pace_scales_the_estimates_and_reaches_the_status_command(queue) -> None:
    """``--until 100 minutes --pace 2``: only the steps under 50 minutes run (each needs twice its number here), the
    skip lines give the scaled minutes, and `benchmarks.status expected` gets the step's own minutes and the factor
    (it scales them itself, except for a run with its own pace). A bad factor, or one without a deadline, is refused."""
    root, env = queue
    steps = steps_in_script()
    assert any(int(s.split()[0]) < 50 for s in steps) and any(50 <= int(s.split()[0]) < 100 for s in steps)
    subprocess.run(["bash", "benchmarks/cpu_queue.sh", "two", "--until", "100 minutes", "--pace", "2"], cwd=root,
                   env={**env, "FAKE_SLEEP": "0.5"}, check=True, timeout=180, capture_output=True)
    calls = (root / "calls.log").read_text().splitlines()
    runs = sorted(c.split(" ", 3)[3] for c in calls if c.split()[2] == "run")
    assert runs == sorted(step_args(s) for s in steps if int(s.split()[0]) < 50)
    logs = "".join((root / "benchmarks" / "runs" / f"cpu_queue_{w}.log").read_text() for w in "ab")
    middle = next(s for s in steps if 50 <= int(s.split()[0]) < 100)
    assert f"skip {step_args(middle)}: needs ~{2 * int(middle.split()[0])} min" in logs
    suite, name = step_args(middle).split()[0], step_args(middle).split()[-1]
    assert f"-m benchmarks.status expected benchmarks/runs {suite} {name} {middle.split()[0]} 2" in calls
    for bad in (["--until", "100 minutes", "--pace", "0"], ["--until", "100 minutes", "--pace", "fast"],
                ["--pace", "2"]):
        res = subprocess.run(["bash", "benchmarks/cpu_queue.sh", "two", *bad], cwd=root, env=env,
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 2 and "--pace" in res.stderr, (bad, res.stderr)
