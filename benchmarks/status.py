"""``python -m benchmarks status``: where every started run stands, without touching it.

For each run folder under the work directory: its phase (new, fitting, fitted, tested, done), whether a process is
driving it now (its run lock is held), the epochs finished of the epochs it will train, its best validation score so
far and that epoch, the median minutes per epoch over its last epochs, and a rough time left at that pace; before the
first epoch, the step it is in (a centre pass, embedding, mining). It reads ``state.json``, ``history.jsonl``, the
latest attempt's ``config.yaml`` and the step marks; it never writes anything.
"""
from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import yaml

from benchmarks.records import read_history, read_state, run_is_driven, select_epoch


def max_epochs(run_dir: Path) -> int | None:
    """``trainer.max_epochs`` of the run's latest fit attempt (Lightning writes the full config next to its logs)."""
    configs = sorted((run_dir / "fit").glob("attempt_*/config.yaml"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not configs:
        return None
    try:
        value = ((yaml.safe_load(configs[-1].read_text()) or {}).get("trainer") or {}).get("max_epochs")
    except yaml.YAMLError:
        return None
    return value if isinstance(value, int) and value > 0 else None  # -1: bounded by max_steps instead


def attempt_starts(run_dir: Path) -> list[float]:
    """When each fit attempt of the run began: the time Lightning wrote the attempt's ``config.yaml`` (at the start
    of its fit)."""
    starts = []
    for cfg in (run_dir / "fit").glob("attempt_*/config.yaml"):
        try:
            starts.append(cfg.stat().st_mtime)
        except OSError:
            pass
    return sorted(starts)


#: an epoch whose wall time is more than this many times the CPU seconds its process used in it spent more than half
#: of it waiting: the process was stopped or paused, or the machine carried more than twice the work of its cores (the
#: queue's one-thread lanes, one per core, run at about 1.0-1.3 wall seconds per CPU second)
PAUSED_WALL_PER_CPU = 2.0


def minutes_per_epoch(history: list[dict], last: int = 5, restarts: list[float] = ()) -> float | None:
    """The median wall minutes between consecutive epochs among the last ``last``.

    Left out: a gap during which a fit attempt began (``restarts``: the epoch before ended in an earlier process, so
    the gap holds the time the run was not running), a gap more than ``PAUSED_WALL_PER_CPU`` times the CPU seconds
    the process used in that epoch (the history's ``cpu_s``; it was stopped or paused), and, of the rest, a gap longer
    than three times their median. With no gap left, the median CPU minutes of the epochs (what a one-thread process
    takes unhindered), or None when the history has no CPU times either."""
    rows = [h for h in history if h.get("time") is not None]
    gaps = []
    for a, b in zip(rows, rows[1:]):
        gap = b["time"] - a["time"]
        if gap <= 0 or any(a["time"] < r < b["time"] for r in restarts):
            continue
        cpu = b.get("cpu_s")
        if cpu and gap > PAUSED_WALL_PER_CPU * cpu:
            continue
        gaps.append(gap)
    gaps = gaps[-last:]
    if not gaps:
        cpu = [h["cpu_s"] for h in history if h.get("cpu_s")]
        return statistics.median(cpu) / 60 if cpu else None
    med = statistics.median(gaps)
    gaps = [g for g in gaps if g <= 3 * med]
    return statistics.median(gaps) / 60


def steps_in_progress(run_dir: Path) -> list[tuple[str, float | None]]:
    """The steps of this run (a centre pass, embedding, mining) begun and not finished: ``(name, start time or
    None)``. A step writes ``step_<name>.log`` in the run folder and, when it ends, ``<name>.done`` in the suite's
    ``_shared/.steps``; the harness notes its start in ``<name>.started`` there."""
    marks = run_dir.parent / "_shared" / ".steps"
    out = []
    for log_path in sorted(run_dir.glob("step_*.log")):
        name = log_path.stem[len("step_"):]
        if (marks / f"{name}.done").is_file():
            continue
        started = None
        try:
            started = float(json.loads((marks / f"{name}.started").read_text())["time"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        out.append((name, started))
    return out


def run_status(run_dir: Path, monitor: str = "val/acc") -> dict:
    state = read_state(run_dir)
    history = read_history(run_dir / "history.jsonl")
    try:
        best = select_epoch(history, monitor)  # the harness's own choice: first epoch on ties
    except ValueError:  # no epoch logged yet
        best = None
    total = max_epochs(run_dir)
    pace = minutes_per_epoch(history, restarts=attempt_starts(run_dir))
    done = len(history)
    left = (total - done) * pace if (total and pace is not None and state["phase"] in ("new", "fitting")) else None
    return {"run": run_dir.name, "phase": state["phase"], "running": run_is_driven(run_dir), "epochs": done,
            "max_epochs": total, "best": best, "min_per_epoch": pace, "minutes_left": left,
            "last_epoch_at": history[-1].get("time") if history else None,
            "steps": steps_in_progress(run_dir) if state["phase"] == "new" else []}


def status_lines(work_dir: Path, suites: list[str] | None = None) -> list[str]:
    lines = []
    for suite_dir in sorted(p for p in Path(work_dir).iterdir() if p.is_dir()):
        if suites and suite_dir.name not in suites:
            continue
        runs = sorted(p for p in suite_dir.iterdir() if p.is_dir() and not p.name.startswith("_"))
        if not runs:
            continue
        lines.append(f"{suite_dir.name}:")
        for run_dir in runs:
            s = run_status(run_dir)
            total = s["max_epochs"] if s["max_epochs"] is not None else "?"
            best = f"best val {100 * s['best'][1]:.2f} (epoch {s['best'][0] + 1})" if s["best"] else "no epoch yet"
            if not s["best"] and s["steps"]:  # before its fit: a step (a centre pass, embedding) in progress or killed
                name, started = s["steps"][0]
                since = f", begun {(time.time() - started) / 60:.0f} min ago" if started is not None else ""
                best = f"step {name} {'running' if s['running'] else 'unfinished'}{since}"
            pace = f"{s['min_per_epoch']:.1f} min/epoch" if s["min_per_epoch"] is not None else ""
            left = f"~{s['minutes_left']:.0f} min left" if s["minutes_left"] is not None else ""
            ago = ""
            if s["last_epoch_at"] is not None and s["phase"] in ("new", "fitting"):
                ago = f"last epoch {(time.time() - s['last_epoch_at']) / 60:.0f} min ago"
            flag = "RUNNING" if s["running"] else ""
            parts = [p for p in (f"{s['phase']:<8}", f"{flag:<7}", f"{s['epochs']:>3}/{total:<3}", best, pace, left, ago)
                     if p]
            lines.append(f"  {s['run']:<28} " + "  ".join(parts))
    return lines


def expected_minutes(run_dir: Path, full: int, pace: float = 1.0) -> int:
    """The minutes a queue step still needs, from its full estimate ``full`` (a run from scratch): the epochs left at
    that rate plus 5 minutes for the resume and the test when the run has finished epochs; 10 for a fitted run
    awaiting its test; ``full`` for a run not begun (or whose progress cannot be read).

    The queue's estimates were measured on one machine (an AMD EPYC); the next may be slower (an Intel Xeon 2-core
    machine took 2.5-2.7x as long per step). ``pace`` is how many times slower this machine is, given by whoever
    starts the queue: it scales every estimate that this machine has not measured itself. A run folder lives on the
    machine that trained it, so where the run has its own pace (median minutes per epoch over all its epochs), that
    pace replaces ``pace`` for its epochs left, and is used where it says they take longer than the step's own rate,
    even past ``full``."""
    scaled = math.ceil(full * pace - 1e-9)
    if not (run_dir / "state.json").is_file():
        return scaled
    try:
        state = read_state(run_dir)
        history = read_history(run_dir / "history.jsonl")
    except (OSError, ValueError, KeyError):
        return scaled
    done = len(history)
    if state.get("phase") in ("fitted", "tested"):
        return math.ceil(10 * pace - 1e-9)
    total = max_epochs(run_dir)
    if state.get("phase") != "fitting" or not total or done <= 0:
        return scaled
    left = max(total - done, 0)
    own = minutes_per_epoch(history, last=len(history), restarts=attempt_starts(run_dir))  # all its epochs
    if own is None or left == 0:  # one epoch, no pace measured yet: the step's rate on this machine
        return min(scaled, -(-scaled * left // total) + 5)
    return max(min(full, -(-full * left // total) + 5), math.ceil(own * left) + 5)


if __name__ == "__main__":  # `python -m benchmarks.status expected WORK_DIR SUITE RUN MINUTES [PACE]` (cpu_queue.sh)
    import sys

    if len(sys.argv) not in (6, 7) or sys.argv[1] != "expected":
        sys.exit("usage: python -m benchmarks.status expected WORK_DIR SUITE RUN MINUTES [PACE]")
    pace = float(sys.argv[6]) if len(sys.argv) == 7 else 1.0
    if not pace > 0:
        sys.exit(f"PACE must be a positive number, not {sys.argv[6]!r}")
    print(expected_minutes(Path(sys.argv[2]) / sys.argv[3] / sys.argv[4], int(sys.argv[5]), pace))
