"""Reading what a run logged and choosing its checkpoint, and a run folder's state: plain data and files (no torch, no
ferkit, no Lightning), so that ``benchmarks.status`` starts in well under a second."""
from __future__ import annotations

import fcntl
import json
import math
import os
from pathlib import Path

#: logged keys kept as a method's statistics (mining splits and thresholds, label memories, memorisation of flipped
#: labels); every other key stays in the plain history
STAT_PREFIXES = ("mining/", "asm/", "lde/", "lanet/", "memory/", "noise/", "memorisation/")


class RunFailed(RuntimeError):
    pass


def read_state(run_dir: Path) -> dict:
    path = run_dir / "state.json"
    if not path.is_file():
        return {"phase": "new", "attempts": 0, "fit_seconds": 0.0, "test_seconds": 0.0}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunFailed(f"{path} is not valid JSON ({e}); delete the run folder {run_dir} to start the run again") from e


def run_is_driven(run_dir: Path) -> bool:
    """True while some harness process (or the ferkit child it passed the lock to) holds the run's lock."""
    path = run_dir / ".lock"
    if not path.is_file():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def write_json(path: str | Path, payload) -> Path:
    """Write JSON atomically: a reader (or a kill) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_history(path: str | Path) -> list[dict]:
    """Per-epoch metrics from ``history.jsonl``, one entry per epoch in epoch order.

    An epoch repeated after a resume keeps its latest line; a line cut short by a kill is ignored; epochs after the
    last complete line's epoch that a later resume re-ran are replaced by the re-run.
    """
    path = Path(path)
    if not path.is_file():
        return []
    by_epoch: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
            epoch = int(entry["epoch"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        # a resumed run re-runs from some epoch on: drop what the killed attempt logged after it
        for e in [e for e in by_epoch if e > epoch]:
            del by_epoch[e]
        by_epoch[epoch] = {"epoch": epoch, "step": entry.get("step"), **entry.get("metrics", {})}
        for key in ("time", "cpu_s"):  # wall clock at the epoch's end; CPU seconds of the epoch
            if entry.get(key) is not None:
                by_epoch[epoch][key] = entry[key]
    return [by_epoch[e] for e in sorted(by_epoch)]


def select_epoch(history: list[dict], monitor: str = "val/acc", mode: str = "max") -> tuple[int, float]:
    """The epoch whose validation metric is best (the first one on ties, as a checkpoint callback that saves only on
    strict improvement keeps it). Only ``val/`` metrics may choose."""
    if not monitor.startswith("val/"):
        raise ValueError(f"checkpoints are chosen on a validation metric (val/...), not {monitor!r}")
    scored = [(h["epoch"], h[monitor]) for h in history if h.get(monitor) is not None and math.isfinite(h[monitor])]
    if not scored:
        raise ValueError(f"no epoch logged {monitor!r}; logged keys: {sorted({k for h in history for k in h})}")
    best = scored[0]
    for epoch, value in scored[1:]:
        if (value > best[1]) if mode == "max" else (value < best[1]):
            best = (epoch, value)
    return best


def stats_history(history: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split the history into the plain metrics and the method's statistics (keys under ``STAT_PREFIXES``)."""
    plain, stats = [], []
    for h in history:
        plain.append({k: v for k, v in h.items() if not k.startswith(STAT_PREFIXES)})
        s = {k: v for k, v in h.items() if k.startswith(STAT_PREFIXES)}
        if s:
            stats.append({"epoch": h["epoch"], **s})
    return plain, stats
