"""Run a suite through the ``ferkit`` command line, resumably, and write one JSON record per run.

Each run lives in ``<work>/<suite>/<run>/``::

    state.json            phase (fitting / fitted / tested / done), attempts, wall time; rewritten atomically
    ckpt/                 best-epoch=N.ckpt (chosen on validation), last.ckpt, last.prev.ckpt
    history.jsonl         one line per finished epoch with every logged metric (written before the checkpoints)
    fit/attempt_K/        the Lightning logs of the K-th fit attempt (config.yaml, metrics.csv)
    test/attempt_K/       the logs of the test of the chosen checkpoint (metrics_test.json, confusion matrix)
    fit.log, test.log     the command lines' output

Giving the same command again continues where the run stopped: a finished run (its record exists) is skipped, a run whose
fit finished is only tested, and a run killed while fitting continues from ``last.ckpt`` (or from ``last.prev.ckpt``,
or from scratch, when the newer file is unreadable, e.g. the process died while writing it).

The test split is evaluated once per run, on the checkpoint of the epoch with the best validation metric.
"""
from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import yaml

from benchmarks.run_files import HISTORY, LAST, PREVIOUS
from benchmarks.common import cpu_name
from benchmarks.records import RunFailed, read_state, run_is_driven, select_epoch, stats_history, read_history, \
    write_json  # noqa: F401  (RunFailed, run_is_driven: imported from here by other modules)
from benchmarks.suite import Run, Step, Suite

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORK = REPO / "benchmarks" / "runs"
DEFAULT_RESULTS = REPO / "benchmarks" / "results"
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data" / "fer2013"
RECORD_FORMAT = 1


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# -- environment -----------------------------------------------------------------------------------------
NOT_CODE = ("*.md", "benchmarks/results")  # what git_commit's "dirty" leaves out: prose, generated tables and plots


def git_commit() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD")
    if not commit and os.environ.get("FERKIT_GIT_COMMIT"):  # a copy of the tree without .git (a lent machine)
        return {"commit": os.environ["FERKIT_GIT_COMMIT"], "dirty": False, "from": "FERKIT_GIT_COMMIT"}
    # "dirty": tracked files that can change a run differ from the commit. Prose and the generated results (the
    # tables and plots the harness itself rewrites after each record) do not count.
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", *(f":(exclude){p}" for p in NOT_CODE))
    return {"commit": commit, "dirty": bool(changed)}


def count_timed_attempt(state: dict) -> None:
    """One more fit attempt whose time is in ``fit_seconds``; runs begun before attempts were counted stay at -1."""
    if state.get("timed_attempts", -1) >= 0:
        state["timed_attempts"] += 1


def machine(accelerator: str | None = None) -> dict:
    import torch

    from ferkit.backbones.small_map_conv import cpu_has_amx_bf16, small_map_gemm_policy

    cpu = cpu_name()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    device = gpu if gpu and accelerator not in ("cpu",) else "cpu"
    # which kernels tiny-map convolutions used (ferkit.backbones.SmallMapConv2d), for records made after it existed
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "gpu": gpu, "device": device,
            "small_map_gemm": {"policy": small_map_gemm_policy(), "amx_bf16": cpu_has_amx_bf16()}}


def cpu_lanes() -> int:
    """How many runs share this machine's CPU at once: ``FERKIT_BENCH_LANES``, set by ``benchmarks/cpu_queue.sh`` when
    it runs its lanes side by side (1 thread each). A run's wall time then measures throughput, not speed alone."""
    raw = os.environ.get("FERKIT_BENCH_LANES", "1")
    try:
        return max(1, int(raw))
    except ValueError:
        raise RunFailed(f"FERKIT_BENCH_LANES={raw!r} is not a whole number") from None


def resolve_config(config: str) -> str:
    """A config name (``avg_ferplus``) or path -> the file path given to ``ferkit``; a name is looked up in the
    package's configs first, then in the checkout's ``configs/``; anything else is passed on unchanged."""
    p = Path(config)
    if p.suffix in (".yaml", ".yml") and (p.is_file() or (REPO / p).is_file()):
        return str(p if p.is_file() else REPO / p)
    for folder in (REPO / "ferkit" / "configs", REPO / "configs"):
        if (folder / f"{config}.yaml").is_file():
            return str(folder / f"{config}.yaml")
    return config


# -- small file helpers ----------------------------------------------------------------------------------
def file_stamps(args: list[str]) -> dict[str, list]:
    """Size and modification time (ns) of every argument that names an existing file."""
    out = {}
    for a in args:
        if os.sep in a and os.path.isfile(a):
            st = os.stat(a)
            out[a] = [st.st_size, st.st_mtime_ns]
    return out


def checkpoint_ok(path: Path) -> bool:
    """True when ``path`` is a complete checkpoint (a readable zip archive, as ``torch.save`` writes)."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def resume_checkpoint(ckpt_dir: Path) -> tuple[Path | None, str]:
    """The checkpoint to continue from and a message; a damaged ``last.ckpt`` is replaced by ``last.prev.ckpt``."""
    last, prev = ckpt_dir / LAST, ckpt_dir / PREVIOUS
    if checkpoint_ok(last):
        return last, f"resuming from {last}"
    if checkpoint_ok(prev):
        msg = f"{last} is {'damaged' if last.exists() else 'missing'} (killed while saving?); resuming from {prev}"
        if last.exists():
            last.unlink()
        os.replace(prev, last)
        return last, msg
    if last.exists() or prev.exists():
        return None, f"no readable checkpoint in {ckpt_dir} ({LAST} and {PREVIOUS} damaged); starting the run again"
    return None, ""


def generic_args(run_dir: Path, stage: str, attempt: int, seed: int) -> list[str]:
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger",
              "init_args": {"save_dir": str(run_dir), "name": stage, "version": f"attempt_{attempt}"}}
    return ["--seed_everything", str(seed), "--trainer.default_root_dir", str(run_dir / stage),
            "--trainer.logger", json.dumps(logger)]


def call_ferkit(args: list[str], log_path: Path, env: dict | None, pass_fds: tuple[int, ...] = ()) -> tuple[int, float]:
    """Run ``ferkit <args>``, appending its output to ``log_path``; (exit status, seconds). ``pass_fds``: lock files the
    child inherits, so that a lock stays held while the child lives even if this process is killed outright."""
    cmd = [sys.executable, "-m", "ferkit.cli", *args]
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), full_env.get("PYTHONPATH", "")] if p)
    full_env.update(env or {})
    t0 = time.perf_counter()
    with open(log_path, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=full_env, pass_fds=pass_fds)
        try:
            rc = proc.wait()
        except BaseException:  # Ctrl-C, or SIGTERM from a time limit: stop the run too, it resumes next time
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    return rc, time.perf_counter() - t0


def tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# -- one run ---------------------------------------------------------------------------------------------
class RunDriver:
    """Drives one run through fit -> test -> record; every step can be interrupted and repeated."""

    def __init__(self, suite: Suite, run: Run, work_dir: Path, results_dir: Path, extra: list[str] | None = None,
                 env: dict | None = None, accelerator: str | None = None, tag: str = "", wait: float = 0.0,
                 predictions: bool = True) -> None:
        self.suite, self.run, self.extra, self.env, self.accelerator = suite, run, list(extra or []), env, accelerator
        self.wait = wait
        self.predictions = predictions  # False: no per-image test predictions (a throw-away timing run)
        self.lock_fds: tuple[int, ...] = ()
        self.smoke = tag == SMOKE_TAG
        folder = suite.name + tag
        self.suite_dir = Path(work_dir) / folder
        self.shared = self.suite_dir / "_shared"
        self.dir = self.suite_dir / run.name
        self.record_path = Path(results_dir) / folder / f"{run.name}.json"
        self.ckpt_dir = self.dir / "ckpt"
        self.config = resolve_config(run.config)

    # the ferkit arguments shared by fit and test: config, the suite's overrides, then the harness's own
    def common_args(self) -> list[str]:
        return ["--config", self.config, *self.fill(self.run.overrides), *self.extra]

    def checked_args(self, state: dict) -> list[str]:
        """``common_args()``, the same for every attempt of a run: the first attempt stores them in ``state.json``, and
        a later attempt (another session, an edited suite file, other ``--root`` or ``--`` options, a retrained
        teacher) that would train or test with other arguments stops instead of mixing settings in one record."""
        now = self.common_args()
        stored = state.setdefault("args", now)
        if stored != now:
            changed = [f"{a!r} -> {b!r}" for a, b in zip(stored, now) if a != b]
            if len(stored) != len(now):
                changed.append(f"{len(stored)} -> {len(now)} arguments")
            raise RunFailed(f"{self.suite.name}/{self.run.name}: started with other arguments than it would get now "
                            f"({'; '.join(changed[:6])}); revert the change, or delete {self.dir} to train the run "
                            "again with the new ones")
        return now

    def best_checkpoint(self, name: str) -> str:
        """The best-on-validation checkpoint of run ``name`` of this suite (it must have finished fitting). With
        ``wait`` set, a needed run that another harness process is training now (its run lock is held) is waited for,
        polling every ``wait`` seconds; a needed run that nobody is training fails at once, as without it."""
        state = read_state(self.suite_dir / name)
        announced = False
        while self.wait and state["phase"] not in ("fitted", "tested", "done") and run_is_driven(self.suite_dir / name):
            if not announced:
                log(f"{self.suite.name}/{self.run.name}: waiting for run {name}, which another process is training")
                announced = True
            time.sleep(self.wait)
            state = read_state(self.suite_dir / name)
        if state["phase"] not in ("fitted", "tested", "done") or not state.get("best_checkpoint"):
            raise RunFailed(f"{self.suite.name}/{self.run.name} needs the checkpoint of run {name}, which has not "
                            f"finished fitting (phase {state['phase']!r}); run it first (`--only {name}`)")
        return state["best_checkpoint"]

    def fill(self, args: list[str]) -> list[str]:
        """``args`` with the placeholders ``{shared}`` and ``{best:RUN}`` filled in."""
        import re

        return [re.sub(r"\{best:([^}]+)\}", lambda m: self.best_checkpoint(m.group(1)),
                       a.replace("{shared}", str(self.shared))) for a in args]

    def run_steps(self) -> None:
        """Run the steps this run needs that have not finished yet (each once per suite, under a lock)."""
        marks = self.shared / ".steps"
        marks.mkdir(parents=True, exist_ok=True)
        for step in self.run.steps:
            with open(marks / f"{step.name}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # another harness process running the same step: wait for it
                args = [*self.fill(step.args), *self.extra, *(self.fill(step.smoke) if self.smoke else [])]
                done = marks / f"{step.name}.done"
                if done.is_file():
                    self.check_step(step.name, done, args)
                    continue
                before = file_stamps(args)
                write_json(marks / f"{step.name}.started", {"time": round(time.time(), 1), "run": self.run.name})
                log(f"{self.suite.name}/{self.run.name}: step {step.name} (ferkit {step.args[0]}); "
                    f"log {self.dir / f'step_{step.name}.log'}")
                rc, seconds = call_ferkit(args, self.dir / f"step_{step.name}.log", self.env,
                                          pass_fds=(*self.lock_fds, lock.fileno()))
                if rc != 0:
                    raise RunFailed(f"{self.suite.name}/{self.run.name}: step {step.name} exited with {rc}; the same "
                                    f"command runs it again. Last lines of {self.dir / f'step_{step.name}.log'}:\n"
                                    f"{tail(self.dir / f'step_{step.name}.log')}")
                # the files the step read: those it did not change (a killed attempt's partial output, which the
                # step has now completed or rewritten, is an output, not an input)
                after = file_stamps(args)
                inputs = {path: stamp for path, stamp in before.items() if after.get(path) == stamp}
                write_json(done, {"seconds": round(seconds, 1), "args": args, "inputs": inputs})

    def check_step(self, name: str, done: Path, args: list[str]) -> None:
        """A finished step is reused only if it would be given the same arguments now and the files it read (a
        teacher checkpoint) are unchanged since; otherwise the run stops and says how to redo the step."""
        try:
            mark = json.loads(done.read_text())
        except json.JSONDecodeError as e:
            raise RunFailed(f"{done} is not valid JSON ({e}); delete it to run step {name} again") from e
        changed = []
        if "args" in mark and mark["args"] != args:
            changed += [f"{a!r} -> {b!r}" for a, b in zip(mark["args"], args) if a != b] or ["the number of arguments"]
        now = file_stamps(list(mark.get("inputs", {})))
        changed += [f"{path} changed since the step read it" for path, stamp in mark.get("inputs", {}).items()
                    if now.get(path) != stamp]
        if changed:
            raise RunFailed(f"{self.suite.name}/{self.run.name}: the finished step {name} was made from other inputs "
                            f"than it would get now ({'; '.join(changed[:4])}); delete {done} (and its output) to run "
                            "it again, or revert the change")

    def step_reports(self) -> dict:
        out = {}
        for step in self.run.steps:
            done = self.shared / ".steps" / f"{step.name}.done"
            entry = json.loads(done.read_text()) if done.is_file() else {}
            if step.report:
                path = Path(self.fill([step.report])[0])
                entry["report"] = json.loads(path.read_text()) if path.is_file() else None
            out[step.name] = entry
        return out

    def save_state(self, state: dict) -> None:
        write_json(self.dir / "state.json", state)

    def execute(self) -> dict | None:
        if self.record_path.is_file():
            log(f"{self.suite.name}/{self.run.name}: done ({self.record_path}), skipped")
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        # one driver per run folder: a second harness process (e.g. a queue started while a run is going) skips it
        lock = open(self.dir / ".lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            log(f"{self.suite.name}/{self.run.name}: another harness process is driving this run, skipped")
            return None
        # the ferkit child inherits the lock: were this process killed outright, the lock stays held until the child
        # ends too, so no second driver starts a fit on the same folder beside an orphaned one
        self.lock_fds = (lock.fileno(),)
        try:
            return self._execute()
        finally:
            self.lock_fds = ()
            lock.close()  # closing the file releases the lock (once a child holding it has ended)

    def _execute(self) -> dict:
        state = read_state(self.dir)
        if state["phase"] in ("new", "fitting"):
            self.run_steps()
            state = self.fit(state)
        if state["phase"] == "fitted":
            state = self.test(state)
        if "test_predictions" not in state and self.predictions:
            state = self.predict(state)
        record = self.build_record(state)
        path = self.record_path
        if path.is_file():
            # a record appeared while this run trained (e.g. the same run trained on a lent GPU and adopted): the
            # first finished record stays the run's; this one is kept beside it, out of the tables (*.json only)
            path = path.with_name(path.name + ".conflict")
            log(f"{self.suite.name}/{self.run.name}: WARNING: {self.record_path} appeared while this run trained "
                f"and is kept; this run's record is written to {path} instead (swap the two files to use it)")
        write_json(path, record)
        state["phase"] = "done"
        self.save_state(state)
        t = record["test"]
        log(f"{self.suite.name}/{self.run.name}: test acc {100 * t['acc']:.2f} % (epoch {record['selection']['epoch']} "
            f"chosen on {self.suite.monitor}) -> {path}")
        return record

    def call(self, args: list[str], stage: str, state: dict) -> tuple[int, float]:
        t0 = time.perf_counter()
        try:
            return call_ferkit(args, self.dir / f"{stage}.log", self.env, pass_fds=self.lock_fds)
        except BaseException:  # interrupted: keep the time spent, then stop
            state[f"{stage}_seconds"] = state.get(f"{stage}_seconds", 0.0) + time.perf_counter() - t0
            if stage == "fit" and state.pop("attempt_started", None) is not None:
                count_timed_attempt(state)
            self.save_state(state)
            raise

    def recover_killed_attempt(self, state: dict) -> None:
        """Count the fit time of an attempt killed outright (SIGKILL, the machine stopped), which never returned to
        the harness: from its start to the last epoch it wrote (the work after that epoch is redone, so not counted)."""
        started = state.pop("attempt_started", None)
        if started is None:
            return
        times = [h["time"] for h in read_history(self.dir / HISTORY) if (h.get("time") or 0) >= started]
        state["fit_seconds"] = state.get("fit_seconds", 0.0) + (max(times) - started if times else 0.0)
        count_timed_attempt(state)

    def fit(self, state: dict) -> dict:
        self.recover_killed_attempt(state)
        ckpt, msg = resume_checkpoint(self.ckpt_dir)
        if msg:
            log(f"{self.suite.name}/{self.run.name}: {msg}")
        if ckpt is None and state["attempts"] > 0:
            # nothing to continue from: start clean so no stale epochs or checkpoints leak into the record
            for stale in (self.ckpt_dir, self.dir / HISTORY):
                if stale.is_dir():
                    shutil.rmtree(stale)
                elif stale.exists():
                    stale.unlink()
            # every epoch is trained again, so the discarded attempts' time is not part of this run's fit time: they
            # count as timed attempts of zero seconds (the table's "complete" test compares the two counts)
            state.update(fit_seconds=0.0, timed_attempts=state["attempts"], resumed_from=[], lanes=1)
            state.pop("args", None)  # nothing is kept, so the new attempt may use other arguments
        fit_args = self.checked_args(state)
        attempt = state["attempts"]
        # the code each attempt trained with (the record's "git" is read when the record is written, after the test)
        commits = state.setdefault("fit_commits", [])
        now = git_commit()
        if not commits or commits[-1] != now:
            commits.append(now)
        if attempt == 0:
            state["timed_attempts"] = 0
        state.update(phase="fitting", attempts=attempt + 1, attempt_started=round(time.time(), 1),
                     lanes=max(state.get("lanes", 1), cpu_lanes()))
        state.setdefault("resumed_from", [])
        if ckpt is not None:
            state["resumed_from"].append(str(ckpt))
        self.save_state(state)
        args = ["fit", *fit_args, *generic_args(self.dir, "fit", attempt, self.run.seed),
                "--trainer.enable_checkpointing", "true",
                "--trainer.callbacks+=benchmarks.checkpoint.BenchmarkCheckpoint",
                "--trainer.callbacks.dirpath", str(self.ckpt_dir),
                "--trainer.callbacks.monitor", self.suite.monitor, "--trainer.callbacks.mode", self.suite.mode]
        if ckpt is not None:
            args += ["--ckpt_path", str(ckpt)]
        log(f"{self.suite.name}/{self.run.name}: fitting (attempt {attempt + 1}{', resumed' if ckpt else ''}); "
            f"log {self.dir / 'fit.log'}")
        rc, seconds = self.call(args, "fit", state)
        state["fit_seconds"] = state.get("fit_seconds", 0.0) + seconds
        state.pop("attempt_started", None)
        count_timed_attempt(state)
        if rc != 0:
            self.save_state(state)
            raise RunFailed(f"{self.suite.name}/{self.run.name}: ferkit fit exited with {rc}; once the cause is fixed, "
                            f"the same command continues the run from its last checkpoint. Last lines of {self.dir / 'fit.log'}:\n{tail(self.dir / 'fit.log')}")
        history = read_history(self.dir / HISTORY)
        missing = self.missing_epochs(history)
        if missing:
            self.save_state(state)
            raise RunFailed(f"{self.suite.name}/{self.run.name}: ferkit fit ended without error but epochs {missing} were "
                            "not trained (stopped by a signal?); the same command continues the run")
        try:
            epoch, value = select_epoch(history, self.suite.monitor, self.suite.mode)
        except ValueError as e:  # e.g. no epoch logged the monitored validation metric
            raise RunFailed(f"{self.suite.name}/{self.run.name}: cannot choose an epoch: {e}") from e
        best = self.ckpt_dir / f"best-epoch={epoch}.ckpt"
        if not checkpoint_ok(best):
            raise RunFailed(f"{self.suite.name}/{self.run.name}: the best-validation checkpoint {best} is missing or "
                            f"damaged; delete {self.dir} to train the run again")
        state.update(phase="fitted", selected_epoch=epoch, selected_value=value, best_checkpoint=str(best))
        self.save_state(state)
        return state

    def test(self, state: dict) -> dict:
        attempt = state.get("test_attempts", 0)
        state["test_attempts"] = attempt + 1
        self.save_state(state)
        args = ["test", *self.checked_args(state), *generic_args(self.dir, "test", attempt, self.run.seed),
                "--ckpt_path", state["best_checkpoint"]]
        log(f"{self.suite.name}/{self.run.name}: testing the epoch-{state['selected_epoch']} checkpoint "
            f"(best {self.suite.monitor})")
        rc, seconds = self.call(args, "test", state)
        state["test_seconds"] = state.get("test_seconds", 0.0) + seconds
        if rc != 0:
            self.save_state(state)
            raise RunFailed(f"{self.suite.name}/{self.run.name}: ferkit test exited with {rc}. Last lines of "
                            f"{self.dir / 'test.log'}:\n{tail(self.dir / 'test.log')}")
        folder = self.dir / "test" / f"attempt_{attempt}"
        # the pinned logger folder; if ferkit put its logs elsewhere under test/, the newest ones
        state["test"] = read_test_metrics(folder if any(folder.rglob("metrics*")) else self.dir / "test")
        state["phase"] = "tested"
        self.save_state(state)
        return state

    def predict(self, state: dict) -> dict:
        """Each test image's predicted class, from the tested checkpoint with the tested settings (``ferkit predict``
        over the test split, the run's own arguments), so that two runs can be compared image by image
        (:func:`benchmarks.paired.paired_gap`). They must reproduce the recorded test accuracy exactly, or they are
        refused (``None``, with the reason in ``test_predictions_refused``): the predictions are the test evaluation's,
        written down, never a second evaluation that could differ from it."""
        out = self.dir / "test_predictions.csv"
        args = ["predict", *state["args"], *generic_args(self.dir, "predict", state.get("predict_attempts", 0),
                                                         self.run.seed),
                "--ckpt_path", state["best_checkpoint"], "--data.predict_split", "test",
                "--prediction_writer.output", str(out)]
        state["predict_attempts"] = state.get("predict_attempts", 0) + 1
        self.save_state(state)
        log(f"{self.suite.name}/{self.run.name}: writing the test images' predictions")
        out.unlink(missing_ok=True)
        rc, _ = self.call(args, "predict", state)
        if rc != 0 or not out.is_file():
            raise RunFailed(f"{self.suite.name}/{self.run.name}: ferkit predict exited with {rc}. Last lines of "
                            f"{self.dir / 'predict.log'}:\n{tail(self.dir / 'predict.log')}")
        preds = read_predictions(out, state["test"].get("class_names") or None)
        n = len(preds["pred"])
        acc = sum(a == b for a, b in zip(preds["pred"], preds["label"])) / max(n, 1)
        expected_n = state["test"].get("num_samples")
        # accuracies are whole images over n: a quarter of one image tells a float rounding from a real difference
        expected_cm = state["test"].get("confusion_matrix")
        moved = confusion_difference(preds, expected_cm) if expected_cm else 0
        if abs(acc - state["test"]["acc"]) > 0.25 / max(n, 1) or (expected_n and expected_n != n) or moved:
            # refused, and the run still gets its record (without them). Seen once, by one image: predict's softmax
            # in bf16 made ties that the scored logits did not have (fixed in FERModule.predict_step)
            msg = (f"{self.suite.name}/{self.run.name}: the test predictions ({n} images, accuracy {100 * acc:.3f} %) "
                   f"do not reproduce the recorded test ({expected_n} images, {100 * state['test']['acc']:.3f} %"
                   f"{f'; {moved} image(s) in other cells of its confusion matrix' if moved else ''}); "
                   f"not kept (see {out})")
            log(msg)
            preds = None
            state["test_predictions_refused"] = msg
        state["test_predictions"] = preds
        self.save_state(state)
        return state

    def missing_epochs(self, history: list[dict]) -> list[int]:
        """Epochs below ``trainer.max_epochs`` of the latest saved config that have no history line (none when the
        config stops early on purpose, e.g. with an EarlyStopping callback, or has no saved config)."""
        configs = sorted((self.dir / "fit").rglob("config.yaml"), key=lambda p: p.stat().st_mtime)
        if not configs:
            return []
        trainer = (yaml.safe_load(configs[-1].read_text()) or {}).get("trainer") or {}
        callbacks = trainer.get("callbacks") or []
        if any("EarlyStopping" in str((c or {}).get("class_path", "")) for c in callbacks if isinstance(c, dict)):
            return []
        max_epochs = trainer.get("max_epochs")
        if not isinstance(max_epochs, int) or max_epochs < 0 or trainer.get("max_steps", -1) not in (-1, None):
            return []
        done = {h["epoch"] for h in history}
        return [e for e in range(max_epochs) if e not in done]

    def build_record(self, state: dict) -> dict:
        if "test" not in state:
            raise RunFailed(f"{self.dir}: state.json has no test result; delete the run folder to start again")
        history = read_history(self.dir / HISTORY)
        # the first attempt's saved config (with the logger folder pinned: fit/attempt_0/config.yaml)
        configs = sorted((self.dir / "fit").rglob("config.yaml"), key=lambda p: p.stat().st_mtime)
        resolved = yaml.safe_load(configs[0].read_text()) if configs else None
        plain, stats = stats_history(history)
        return {
            "format": RECORD_FORMAT, "suite": self.suite.name, "run": self.run.name, "method": self.run.method,
            "baseline": self.run.baseline, "config": self.run.config, "seed": self.run.seed,
            "overrides": self.fill(self.run.overrides) + self.extra, "resolved_config": resolved,
            "steps": self.step_reports(),
            "git": git_commit(), "fit_commits": state.get("fit_commits", []), "machine": machine(self.accelerator),
            # the most runs that shared the CPU during any fit attempt (1: this run had the machine to itself)
            "cpu_lanes": state.get("lanes", 1),
            "wall_seconds": {"fit": round(state.get("fit_seconds", 0.0), 1), "test": round(state.get("test_seconds", 0.0), 1)},
            "fit_attempts": state.get("attempts", 1), "resumed_from": state.get("resumed_from", []),
            # attempts whose fit time is in wall_seconds.fit (-1: unknown, a run begun before this was counted)
            "fit_timed_attempts": state.get("timed_attempts", -1),
            "selection": {"monitor": self.suite.monitor, "mode": self.suite.mode, "epoch": state["selected_epoch"],
                          "value": state["selected_value"], "checkpoint": Path(state["best_checkpoint"]).name},
            "epochs": len(history), "history": plain, "stats": stats,
            "test": state["test"],
            # each test image's true and predicted class, one character per image in dataset order
            "test_predictions": state.get("test_predictions"),
            **({"test_predictions_refused": state["test_predictions_refused"]}
               if state.get("test_predictions_refused") else {}),
        }


def read_predictions(path: Path, class_names: list[str] | None) -> dict:
    """``{"classes": names, "label": str, "pred": str}`` from a ``PredictionCSVWriter`` file over a labelled split:
    character ``i`` of ``label``/``pred`` is image ``i``'s class index (a digit, or a letter from the 11th class on)."""
    import csv

    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows or "label" not in rows[0]:
        raise RunFailed(f"{path}: no labelled predictions")
    names = list(class_names or [c[len("prob_"):] for c in rows[0] if c.startswith("prob_")])
    if len(names) > len(CLASS_CHARS):
        raise RunFailed(f"{path}: {len(names)} classes, more than the {len(CLASS_CHARS)} a record can write")
    index = {n: CLASS_CHARS[i] for i, n in enumerate(names)}
    rows.sort(key=lambda r: int(r["index"]))
    if [int(r["index"]) for r in rows] != list(range(len(rows))):
        raise RunFailed(f"{path}: the image indices are not 0..{len(rows) - 1} (several processes? run on one)")
    return {"classes": names, "label": "".join(index[r["label"]] for r in rows),
            "pred": "".join(index[r["pred"]] for r in rows)}


CLASS_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"


def confusion_difference(preds: dict, confusion: list[list[int]]) -> int:
    """How many images the predictions (:func:`read_predictions`, classes in the test's order) put in another cell of
    the recorded test confusion matrix (rows: true class, columns: predicted) than the test did; 0 when they agree
    cell by cell. Equal accuracies can hide a wrong prediction moved from one wrong class to another."""
    k = len(confusion)
    counts = [[0] * k for _ in range(k)]
    for t, p in zip(preds["label"], preds["pred"]):
        i, j = CLASS_CHARS.index(t), CLASS_CHARS.index(p)
        if i >= k or j >= k:
            return len(preds["pred"])  # a class the test did not have: nothing agrees
        counts[i][j] += 1
    return sum(abs(a - b) for row, exp in zip(counts, confusion) for a, b in zip(row, exp)) // 2


def add_predictions(suite: Suite, only: list[str] | None = None, work_dir: Path = DEFAULT_WORK,
                    results_dir: Path = DEFAULT_RESULTS) -> list[str]:
    """Add ``test_predictions`` to finished records made before the harness wrote them, from each run's tested
    checkpoint and stored arguments (the record's other fields are left as they are); names of the records changed.
    Runs whose folder or checkpoint is gone are reported and skipped."""
    changed = []
    for run in suite.select(only):
        driver = RunDriver(suite, run, work_dir, results_dir)
        if not driver.record_path.is_file():
            continue
        record = json.loads(driver.record_path.read_text())
        if record.get("test_predictions"):
            continue
        state = read_state(driver.dir)
        if not state.get("args") or not state.get("best_checkpoint") or not Path(state["best_checkpoint"]).is_file():
            log(f"{suite.name}/{run.name}: its run folder or tested checkpoint is gone; no predictions")
            continue
        state.setdefault("test", record["test"])
        try:
            state = driver.predict(state)
        except RunFailed as e:
            log(str(e))
            continue
        if state["test_predictions"] is None:  # refused (logged)
            continue
        record["test_predictions"] = state["test_predictions"]
        record.pop("test_predictions_refused", None)  # an earlier refusal, now answered
        write_json(driver.record_path, record)
        changed.append(run.name)
    return changed


def read_csv_metrics(folder: Path, prefix: str) -> dict[str, float]:
    """The last logged value of every ``<prefix>*`` column in the ``metrics.csv`` files under ``folder`` (a CSV
    logger's output)."""
    import csv

    values: dict[str, float] = {}
    for path in sorted(folder.rglob("metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                values.update({k: float(v) for k, v in row.items() if k.startswith(prefix) and v not in ("", None)})
    return values


def read_test_metrics(test_dir: Path) -> dict:
    """The test metrics a ferkit test run wrote: ``metrics_test.json`` if present (with the confusion matrix), else the
    ``test/*`` columns of its ``metrics.csv``."""
    found = sorted(test_dir.rglob("metrics_test.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    if found:
        m = json.loads(found[0].read_text())
        names = m.get("class_names") or [str(i) for i in range(len(m.get("per_class_recall", [])))]
        return {"acc": m["acc"], "mean_class_acc": m.get("mean_class_acc"), "num_samples": m.get("num_samples"),
                "class_names": names, "per_class_recall": dict(zip(names, m.get("per_class_recall", []))),
                "confusion_matrix": m.get("confusion_matrix")}
    values = read_csv_metrics(test_dir, "test/")
    if "test/acc" not in values:
        raise RunFailed(f"no test metrics found under {test_dir} (neither metrics_test.json nor test/acc in metrics.csv)")
    recall = {k[len("test/recall_"):]: v for k, v in values.items() if k.startswith("test/recall_")}
    return {"acc": values["test/acc"], "mean_class_acc": values.get("test/mean_class_acc"), "num_samples": None,
            "class_names": list(recall), "per_class_recall": recall, "confusion_matrix": None}


# -- a suite ---------------------------------------------------------------------------------------------
SMOKE_TAG = ".smoke"


def run_suite(suite: Suite, only: list[str] | None = None, work_dir: Path = DEFAULT_WORK,
              results_dir: Path = DEFAULT_RESULTS, data_root: str | None = None, smoke: bool = False,
              accelerator: str | None = None, extra: list[str] | None = None, env: dict | None = None,
              keep_going: bool = True, wait: float = 0.0, predictions: bool = True) -> list[dict]:
    """Run (or continue) the selected runs of ``suite`` in order; return the records written now. ``wait`` > 0: a run
    whose teacher (``{best:RUN}``) another process is still training waits for it, polling every ``wait`` seconds.
    ``predictions=False`` leaves out the per-image test predictions (one ``ferkit predict`` process per run), for a
    run whose record is thrown away (``benchmarks/epoch_time.py``)."""
    if suite.pending:
        raise SystemExit(f"suite {suite.name} cannot run yet: {suite.pending}")
    common: list[str] = []
    if suite.data_root_override:
        root = Path(data_root or DEFAULT_DATA_ROOT).expanduser()
        missing = [f for f in suite.data_files if not (root / f).exists()]
        if not root.is_dir() or missing:
            raise SystemExit(f"suite {suite.name} needs its data in {root} (missing: {missing or [str(root)]}); "
                             "pass --root <folder with the dataset files>")
        common += [suite.data_root_override, str(root)]
    if accelerator:
        common += ["--trainer.accelerator", accelerator]
    if smoke:
        common += suite.smoke
    common += list(extra or [])
    written, failed = [], []
    for run in suite.select(only):
        driver = RunDriver(suite, run, work_dir, results_dir, extra=common + (run.smoke if smoke else []), env=env,
                           accelerator=accelerator, tag=SMOKE_TAG if smoke else "", wait=wait, predictions=predictions)
        try:
            rec = driver.execute()
        except (RunFailed, OSError, ValueError) as e:  # one run's failure (a bad file, an unreadable report) is
            # reported and the suite goes on with its other runs; anything else is a harness bug and stops it
            log(str(e) if isinstance(e, RunFailed) else f"{suite.name}/{run.name}: {type(e).__name__}: {e}")
            failed.append(run.name)
            if not keep_going:
                break
            continue
        if rec is not None:
            written.append(rec)
    if failed:
        raise SystemExit(f"suite {suite.name}: {len(failed)} run(s) failed: {', '.join(failed)}; "
                         "give the same command again to continue them")
    return written
