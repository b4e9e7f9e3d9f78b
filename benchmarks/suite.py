"""What a suite is: named runs of the ``ferkit`` command line, each a (config, seed, overrides) triple.

A suite file in ``benchmarks/suites/<name>.py`` defines ``SUITE = Suite(...)``. Every config-specific override
(``--model...``, ``--data...``) lives in the suite files, so a change in the shape of ferkit's configs is fixed there
and nowhere else; the harness itself adds only generic trainer options (seed, folders, logger, its checkpoint callback).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field


#: placeholders a run's overrides and its steps' arguments may hold, filled in when the run starts:
#: ``{best:RUN}`` the best-on-validation checkpoint of run RUN of the same suite (RUN must be fitted first: list it
#: earlier in the suite); ``{shared}`` the suite's folder for files several runs use (``<work>/<suite>/_shared``)
PLACEHOLDERS = ("{best:RUN}", "{shared}")


@dataclass
class Step:
    """A ``ferkit`` command a run needs before its fit, e.g. PASM's centre pass with an earlier run's checkpoint, or
    Omni's embed / mine / distill with the primitive model.

    Args:
        name: unique within the suite. The step runs once; a marker ``<work>/<suite>/_shared/.steps/<name>.done``
            records that it finished, so runs that share a step (same name) run it once. A step killed part-way runs
            again, and ferkit's own commands continue their work (``omni embed`` fills missing rows, ``omni distill``
            resumes from its state file).
        args: the ``ferkit`` arguments (``["pasm", "locate", "--config", ...]``); placeholders allowed. The harness
            appends the suite's generic options (data folder, accelerator, ``--smoke`` settings), so the step sees the
            same data as the fit.
        report: a JSON file the step writes (placeholders allowed); the records of the runs that need the step keep
            its content under ``steps.<name>``.
        smoke: arguments the step adds under ``--smoke`` (e.g. fewer distillation iterations).
    """

    name: str
    args: list[str]
    report: str | None = None
    smoke: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"step name {self.name!r} must be a plain file name")


@dataclass
class Run:
    """One training run.

    Args:
        name: unique within the suite; names the run folder and the result file (``<name>.json``).
        config: a config name (``avg_ferplus``) or a path to a YAML file.
        seed: passed as ``--seed_everything``.
        overrides: command-line overrides for ``ferkit fit`` and ``ferkit test``, e.g. ``["--trainer.max_epochs", "30"]``.
        method: the table row; runs that differ only in seed share a method label.
        baseline: the method label(s) this one is compared with (``None``: no gap for this row).
        smoke: overrides this run adds under ``--smoke``, after the suite's (e.g. one warm-up epoch for ASM).
        steps: commands run (once) before the fit, in order (see :class:`Step`).

    ``overrides`` may hold the placeholders listed in :data:`PLACEHOLDERS`.
    """

    name: str
    config: str
    seed: int = 0
    overrides: list[str] = field(default_factory=list)
    method: str = ""
    baseline: str | list[str] | None = None
    smoke: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.method = self.method or self.name
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"run name {self.name!r} must be a plain file name")


@dataclass
class Suite:
    """A named list of runs and how to choose and show their results.

    Args:
        name: the suite's name (``python -m benchmarks run <name>``); results go to ``benchmarks/results/<name>/``.
        runs: the runs, in the order they are trained.
        description: one line for the tables.
        monitor / mode: the validation metric that chooses each run's checkpoint (never a test metric).
        smoke: overrides appended by ``--smoke`` (a tiny setting, seconds per run).
        data_root_override: the option that sets the data folder (``--root`` of the harness), or ``None`` when the
            suite needs no files.
        data_files: files that must exist under the data folder; the harness stops with a clear message otherwise.
        pending: why the suite cannot run yet (a missing ferkit feature); ``None`` when it can.
    """

    name: str
    runs: list[Run]
    description: str = ""
    monitor: str = "val/acc"
    mode: str = "max"
    smoke: list[str] = field(default_factory=list)
    data_root_override: str | None = None
    data_files: list[str] = field(default_factory=list)
    pending: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError(f"suite {self.name}: mode must be 'max' or 'min', got {self.mode!r}")
        if not self.monitor.startswith("val/"):
            raise ValueError(f"suite {self.name}: monitor must be a validation metric (val/...), got {self.monitor!r}; "
                             "the test split is never used to choose anything")
        names = [r.name for r in self.runs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"suite {self.name}: run names must be unique, repeated: {dup}")
        steps: dict[str, Step] = {}
        for i, run in enumerate(self.runs):
            for step in run.steps:
                if steps.setdefault(step.name, step) != step:
                    raise ValueError(f"suite {self.name}: two different steps are named {step.name!r}")
            for needed in needed_runs([*run.overrides, *(a for st in run.steps for a in [*st.args, st.report or ""])]):
                if needed not in names[:i]:
                    raise ValueError(f"suite {self.name}: run {run.name} needs {{best:{needed}}}, which is not a run "
                                     f"listed before it")

    def select(self, only: list[str] | None) -> list[Run]:
        if not only:
            return list(self.runs)
        known = {r.name for r in self.runs} | {r.method for r in self.runs}
        unknown = [o for o in only if o not in known]
        if unknown:
            raise SystemExit(f"suite {self.name} has no run or method {unknown}; runs: {', '.join(r.name for r in self.runs)}")
        return [r for r in self.runs if r.name in only or r.method in only]


def needed_runs(args: list[str]) -> list[str]:
    """The run names that ``{best:RUN}`` placeholders in ``args`` refer to, in order of first appearance."""
    import re

    found: list[str] = []
    for a in args:
        for name in re.findall(r"\{best:([^}]+)\}", a):
            if name not in found:
                found.append(name)
    return found


def available_suites() -> list[str]:
    from benchmarks import suites

    return sorted(m.name for m in pkgutil.iter_modules(suites.__path__) if not m.name.startswith("_"))


def load_suite(name: str) -> Suite:
    if name not in available_suites():
        raise SystemExit(f"unknown suite {name!r}; available: {', '.join(available_suites())}")
    suite = importlib.import_module(f"benchmarks.suites.{name}").SUITE
    if suite.name != name:
        raise SystemExit(f"benchmarks/suites/{name}.py defines a suite named {suite.name!r}; the names must match")
    return suite
