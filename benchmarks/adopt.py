"""A run trained in another suite counts as a suite's own run when it is the same run: ``python -m benchmarks adopt``.

The ``gpu`` suite trains some runs of the CPU suites on a lent GPU (e.g. a second seed of ``ferplus_clean``'s ARM vs
average-pooling pair, which costs 2 x 150 CPU-lane minutes here and 5 minutes there). Such a record joins the CPU
suite's table, beside that suite's other seeds, only when it was trained the same way:

- the same ferkit config and the same seed as the destination run;
- the same overrides, except the options that only say where and on what it ran (:data:`DEVICE_OPTIONS`: accelerator,
  devices, data-loader workers, the data folder). Precision, batch size, epochs, schedule and geometry must match.

- one device on one node (``resolved_config``): more devices train with a larger global batch.

The adopted record is a copy of the source with the destination's suite, run, method and baseline, and
``adopted_from`` naming the source; its ``machine`` is kept, so the tables' device column shows where it ran. The
harness then treats the destination run as finished (its record exists), so the CPU queue skips it.

Records that come back from a lent machine trained with ``gpu.sh --suite NAME`` are that suite's own runs but lie in
another results folder: ``python -m benchmarks adopt --from <that folder> NAME/RUN`` brings each in with the same
checks (the destination defaults to the source's name). A destination run that is training here (its run folder is
locked, or has begun) is refused unless ``--force``: whichever record came first would otherwise be replaced silently
(the harness, for its part, never replaces a record that appeared while it trained; see ``RunDriver._execute``).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from benchmarks.records import read_state, run_is_driven, write_json
from benchmarks.suite import load_suite

#: options that change where a run trains, not what it trains
DEVICE_OPTIONS = ("--trainer.accelerator", "--trainer.devices", "--data.num_workers")


def override_map(overrides: list[str]) -> dict[str, str | None]:
    """``["--a", "1", "--b", "x", "--a", "2"]`` -> ``{"--a": "2", "--b": "x"}`` (the last value wins, as in ferkit's
    command line); an option followed by another option has the value ``None``."""
    out: dict[str, str | None] = {}
    i = 0
    while i < len(overrides):
        key = overrides[i]
        if not key.startswith("--"):
            raise ValueError(f"override {key!r} (position {i}) is not an option")
        if i + 1 < len(overrides) and not overrides[i + 1].startswith("--"):
            out[key] = overrides[i + 1]
            i += 2
        else:
            out[key] = None
            i += 1
    return out


def adopt(source: str, dest: str | None, results_dir: Path, force: bool = False, from_dir: Path | None = None,
          work_dir: Path | None = None) -> Path:
    """Copy the record ``<from_dir>/<source>.json`` (``SUITE/RUN``; ``from_dir`` defaults to ``results_dir``) to the
    destination run ``SUITE/RUN`` (default: the source's name) of ``results_dir`` after checking that it is the same
    run (see the module docstring), and that the destination is not training under ``work_dir``. Returns the written
    path; ``ValueError`` says what differs."""
    dest = dest or source
    src_suite, _, src_run = source.partition("/")
    dst_suite_name, _, dst_run_name = dest.partition("/")
    if not (src_suite and src_run and dst_suite_name and dst_run_name):
        raise ValueError(f"give SUITE/RUN for both, got {source!r} and {dest!r}")
    src_path = Path(from_dir or results_dir) / src_suite / f"{src_run}.json"
    if not src_path.is_file():
        raise ValueError(f"no record {src_path}: run `python -m benchmarks run {src_suite} --only {src_run}` first")
    record = json.loads(src_path.read_text())
    suite = load_suite(dst_suite_name)
    runs = {r.name: r for r in suite.runs}
    if dst_run_name not in runs:
        raise ValueError(f"suite {dst_suite_name} has no run {dst_run_name!r} (it has: {', '.join(runs)})")
    run = runs[dst_run_name]
    if run.steps:
        raise ValueError(f"{dest} needs steps ({', '.join(s.name for s in run.steps)}); records of runs with steps "
                         "are not adopted")
    problems = []
    if record.get("config") != run.config:
        problems.append(f"config {record.get('config')!r} != {run.config!r}")
    if record.get("seed") != run.seed:
        problems.append(f"seed {record.get('seed')} != {run.seed}")
    ignore = set(DEVICE_OPTIONS) | ({suite.data_root_override} if suite.data_root_override else set())
    got = {k: v for k, v in override_map(record.get("overrides") or []).items() if k not in ignore}
    want = {k: v for k, v in override_map(run.overrides).items() if k not in ignore}
    for k in sorted(set(got) | set(want)):
        if got.get(k, "<absent>") != want.get(k, "<absent>"):
            problems.append(f"{k}: {got.get(k, '<absent>')} (source) != {want.get(k, '<absent>')} ({dest})")
    trainer = (record.get("resolved_config") or {}).get("trainer") or {}
    for key in ("devices", "num_nodes"):
        if str(trainer.get(key, 1)) not in ("1", "[0]"):
            problems.append(f"trainer.{key} {trainer.get(key)!r}: trained on more than one device")
    if problems:
        raise ValueError(f"{source} is not the run {dest}: " + "; ".join(problems))
    out = Path(results_dir) / dst_suite_name / f"{dst_run_name}.json"
    if out.exists() and not force:
        raise ValueError(f"{out} exists already (that run has its own record); --force replaces it")
    if work_dir is not None and not force:
        run_dir = Path(work_dir) / dst_suite_name / dst_run_name
        phase, driven = read_state(run_dir)["phase"], run_is_driven(run_dir)
        if driven or phase != "new":
            raise ValueError(f"{dest} {'is training now' if driven else 'has begun'} here ({run_dir}, "
                             f"phase {phase}); stop it (`bash benchmarks/cpu_queue.sh stop`) and delete that folder, "
                             "or give --force to adopt anyway (the run here, if it finishes, then writes its record "
                             "beside this one as .conflict)")
    adopted = copy.deepcopy(record)
    adopted.update(suite=dst_suite_name, run=dst_run_name, method=run.method, baseline=run.baseline,
                   adopted_from={"suite": src_suite, "run": src_run, "method": record.get("method"),
                                 **({"results": str(from_dir)} if from_dir is not None else {})})
    return write_json(out, adopted)
