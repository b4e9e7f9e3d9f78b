"""The harness's bookkeeping against a scripted stand-in for the ``ferkit`` command line (fast, no training).

The stand-in trains a fake run whose validation accuracy peaks at epoch 1 while later epochs would score higher on the
test split, writes history lines and checkpoints the way ``BenchmarkCheckpoint`` does, and can be "killed" after any
epoch or while saving.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import harness  # noqa: E402
from benchmarks.checkpoint import HISTORY, LAST, PREVIOUS  # noqa: E402
from benchmarks.records import read_history, select_epoch  # noqa: E402
from benchmarks.suite import Run, Step, Suite  # noqa: E402

VAL = [0.50, 0.70, 0.60, 0.65]    # validation peaks at epoch 1 (0-based)
TEST = [0.40, 0.60, 0.80, 0.90]   # what the test split would say of each epoch's weights: later is better


def write_ckpt(path: Path, epoch: int) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("epoch", str(epoch))


def ckpt_epoch(path: Path) -> int:
    with zipfile.ZipFile(path) as z:
        return int(z.read("epoch"))


def predicted(acc: float) -> list[tuple[int, int]]:
    """(true, predicted) class of 10 test images, ``round(10 * acc)`` of them right; classes a, b and (never true) c."""
    right = round(10 * acc)
    return [(i % 2, i % 2 if i < right else 1 - i % 2) for i in range(10)]


def confusion(acc: float) -> list[list[int]]:
    """The test's confusion matrix of :func:`predicted` (rows: true class)."""
    cm = [[0] * 3 for _ in range(3)]
    for t, p in predicted(acc):
        cm[t][p] += 1
    return cm


class FakeFerkit:
    """Stands in for ``python -m ferkit.cli``; records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.pass_fds: list[tuple[int, ...]] = []  # the lock files each call's child would inherit
        self.kill_after: int | None = None       # exit with 137 after this epoch's checkpoints
        self.kill_while_saving: bool = False     # ... leaving a truncated last.ckpt behind
        self.test_fails = False
        self.quiet_stop_after: int | None = None  # exit 0 after this epoch, as a gracefully stopped trainer does
        self.resumed_from_epoch: list[int] = []  # the epoch held by --ckpt_path at each resumed fit
        self.epoch_seconds: float | None = None  # write a wall-clock "time" this long after the fit's start per epoch
        self.predict_swaps_a_wrong_one = False   # predict: one wrong image in another (wrong) class than the test had

    @staticmethod
    def arg(args: list[str], name: str) -> str | None:
        return args[args.index(name) + 1] if name in args else None

    def __call__(self, args: list[str], log_path: Path, env, pass_fds=()) -> tuple[int, float]:
        self.pass_fds.append(tuple(pass_fds))
        self.calls.append(list(args))
        if args[0] == "predict":  # the tested checkpoint's predictions: as many right of 10 as its test accuracy says
            pairs = predicted(TEST[ckpt_epoch(Path(self.arg(args, "--ckpt_path")))])
            if self.predict_swaps_a_wrong_one:
                wrong = next(i for i, (t, p) in enumerate(pairs) if t != p)
                pairs[wrong] = (pairs[wrong][0], 3 - pairs[wrong][0] - pairs[wrong][1])  # the third class, still wrong
            rows = [f"{i},img{i},{'abc'[t]},{'abc'[p]},0.3,0.3,0.4\n" for i, (t, p) in enumerate(pairs)]
            Path(self.arg(args, "--prediction_writer.output")).write_text("index,id,label,pred,prob_a,prob_b,prob_c\n"
                                                                         + "".join(rows))
            return 0, 0.5
        if args[0] not in ("fit", "test"):  # a step: writes its output and a report beside it
            out = Path(self.arg(args, "--out"))
            out.write_text("centres")
            Path(f"{out}.json").write_text(json.dumps({"teacher": self.arg(args, "--teacher"), "images": 3}))
            return 0, 0.25
        logger = json.loads(self.arg(args, "--trainer.logger"))["init_args"]
        log_dir = Path(logger["save_dir"]) / logger["name"] / logger["version"]
        log_dir.mkdir(parents=True, exist_ok=True)
        if args[0] == "fit":
            return self.fit(args, log_dir), 1.0
        if self.test_fails:
            return 1, 0.5
        epoch = ckpt_epoch(Path(self.arg(args, "--ckpt_path")))
        (log_dir / "metrics_test.json").write_text(json.dumps({
            "acc": TEST[epoch], "mean_class_acc": TEST[epoch] - 0.1, "num_samples": 10, "class_names": ["a", "b", "c"],
            "per_class_recall": [TEST[epoch], TEST[epoch] - 0.2, 0.0], "confusion_matrix": confusion(TEST[epoch])}))
        return 0, 0.5

    def fit(self, args: list[str], log_dir: Path) -> int:
        ckpt_dir = Path(self.arg(args, "--trainer.callbacks.dirpath"))
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "config.yaml").write_text(f"model: {{lr: 0.1}}\ntrainer: {{max_epochs: {len(VAL)}}}\n")
        resume = self.arg(args, "--ckpt_path")
        start = ckpt_epoch(Path(resume)) + 1 if resume else 0
        if resume:
            self.resumed_from_epoch.append(start - 1)
        best = max(VAL[:start]) if start else None
        # the epochs' wall-clock times count from the attempt's start as the harness saved it (no real time passes)
        state = json.loads((ckpt_dir.parent / "state.json").read_text())
        t0 = state.get("attempt_started", time.time())
        for epoch in range(start, len(VAL)):
            line = {"epoch": epoch, "step": 10 * (epoch + 1), "metrics": {
                "val/acc": VAL[epoch], "train/acc": 0.1 * epoch, "asm/frac_noisy": 0.05 * epoch}}
            if self.epoch_seconds is not None:
                line["time"] = round(t0 + self.epoch_seconds * (epoch + 1 - start), 1)
            with open(ckpt_dir.parent / HISTORY, "a") as f:
                f.write(json.dumps(line) + "\n")
            if best is None or VAL[epoch] > best:
                best = VAL[epoch]
                for old in ckpt_dir.glob("best-epoch=*.ckpt"):
                    old.unlink()
                write_ckpt(ckpt_dir / f"best-epoch={epoch}.ckpt", epoch)
            if (ckpt_dir / LAST).exists():
                (ckpt_dir / LAST).replace(ckpt_dir / PREVIOUS)
            if self.kill_after == epoch and self.kill_while_saving:
                (ckpt_dir / LAST).write_bytes(b"PK\x03\x04 truncated")
                return 137
            write_ckpt(ckpt_dir / LAST, epoch)
            if self.kill_after == epoch:
                return 137
            if self.quiet_stop_after == epoch:
                return 0
        return 0


@pytest.fixture
def fake(monkeypatch) -> FakeFerkit:
    f = FakeFerkit()
    monkeypatch.setattr(harness, "call_ferkit", f)
    return f


def suite() -> Suite:
    return Suite(name="fake", runs=[Run("a_s0", "avg_synthetic", seed=0, overrides=["--data.x", "1"], method="a")])


def run(tmp_path: Path) -> list[dict]:
    return harness.run_suite(suite(), work_dir=tmp_path / "runs", results_dir=tmp_path / "results")


def test_the_test_split_sees_only_the_checkpoint_chosen_on_validation(tmp_path, fake) -> None:
    (rec,) = run(tmp_path)
    assert rec["selection"] == {"monitor": "val/acc", "mode": "max", "epoch": 1, "value": 0.70,
                                "checkpoint": "best-epoch=1.ckpt"}
    # the last epoch (and epoch 2) would have scored higher on test; the record holds the epoch-1 weights' score
    assert rec["test"]["acc"] == TEST[1] and TEST[1] < max(TEST)
    tests = [c for c in fake.calls if c[0] == "test"]
    assert len(tests) == 1 and FakeFerkit.arg(tests[0], "--ckpt_path").endswith("best-epoch=1.ckpt")
    # the predictions written down are that checkpoint's, over the test split, with the tested arguments
    (predict,) = [c for c in fake.calls if c[0] == "predict"]
    assert FakeFerkit.arg(predict, "--ckpt_path") == FakeFerkit.arg(tests[0], "--ckpt_path")
    assert FakeFerkit.arg(predict, "--data.predict_split") == "test" and "--data.x" in predict
    assert rec["test_predictions"] == {"classes": ["a", "b", "c"], "label": "0101010101", "pred": "0101011010"}


def test_predictions_with_the_tested_accuracy_but_another_confusion_matrix_are_refused(tmp_path, fake) -> None:
    """One wrong image predicted as another wrong class: the accuracy agrees, the test evaluation's cells do not."""
    fake.predict_swaps_a_wrong_one = True
    (rec,) = run(tmp_path)
    assert rec["test"]["acc"] == TEST[1] and rec["test_predictions"] is None
    assert "1 image(s) in other cells of its confusion matrix" in rec["test_predictions_refused"]


def test_predictions_that_miss_the_tested_accuracy_are_refused_and_the_record_written(tmp_path, fake,
                                                                                     monkeypatch) -> None:
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "TEST", [0.40, 0.65, 0.80, 0.90])  # 6.5 of 10 right: no prediction file gives that
    (rec,) = run(tmp_path)
    assert rec["test"]["acc"] == 0.65 and rec["test_predictions"] is None
    assert "do not reproduce the recorded test" in rec["test_predictions_refused"]
    assert [c[0] for c in fake.calls] == ["fit", "test", "predict"]
    assert run(tmp_path) == [] and len(fake.calls) == 3  # finished: not predicted again


def test_a_run_without_predictions_skips_ferkit_predict(tmp_path, fake) -> None:
    """``predictions=False`` (benchmarks/epoch_time.py's throw-away timing run): fit and test only, no ``ferkit
    predict`` process, and a record whose predictions are absent rather than refused."""
    (rec,) = harness.run_suite(suite(), work_dir=tmp_path / "runs", results_dir=tmp_path / "results", predictions=False)
    assert [c[0] for c in fake.calls] == ["fit", "test"]
    assert rec["test"]["acc"] == TEST[1] and rec["test_predictions"] is None and "test_predictions_refused" not in rec


def test_record_fields(tmp_path, fake) -> None:
    (rec,) = run(tmp_path)
    path = tmp_path / "results" / "fake" / "a_s0.json"
    assert json.loads(path.read_text()) == rec
    assert rec["suite"] == "fake" and rec["run"] == "a_s0" and rec["method"] == "a" and rec["seed"] == 0
    assert rec["config"] == "avg_synthetic" and rec["overrides"] == ["--data.x", "1"]
    assert rec["resolved_config"] == {"model": {"lr": 0.1}, "trainer": {"max_epochs": 4}}
    assert set(rec["machine"]) >= {"cpu", "cores", "torch", "device"} and rec["git"]["commit"]
    assert rec["fit_commits"] == [rec["git"]]  # one attempt, trained with the code the record was written with
    assert [h["val/acc"] for h in rec["history"]] == VAL and rec["epochs"] == 4
    assert "asm/frac_noisy" not in rec["history"][0]
    assert [s["asm/frac_noisy"] for s in rec["stats"]] == pytest.approx([0.0, 0.05, 0.10, 0.15])
    assert rec["test"]["per_class_recall"] == {"a": TEST[1], "b": pytest.approx(TEST[1] - 0.2), "c": 0.0}
    assert rec["test"]["confusion_matrix"] == [[3, 2, 0], [2, 3, 0], [0, 0, 0]]
    assert rec["wall_seconds"] == {"fit": 1.0, "test": 0.5} and rec["fit_attempts"] == 1
    # the config and seed reach ferkit, with the harness's own options after the suite's
    fit = fake.calls[0]
    assert fit[:5] == ["fit", "--config", harness.resolve_config("avg_synthetic"), "--data.x", "1"]
    assert fit[2].endswith("configs/avg_synthetic.yaml")
    assert FakeFerkit.arg(fit, "--seed_everything") == "0" and "--ckpt_path" not in fit


def test_a_finished_run_is_skipped(tmp_path, fake) -> None:
    run(tmp_path)
    n = len(fake.calls)
    assert run(tmp_path) == [] and len(fake.calls) == n


def test_a_run_driven_by_another_process_is_skipped(tmp_path, fake, capsys) -> None:
    import fcntl
    run_dir = tmp_path / "runs" / "fake" / "a_s0"
    run_dir.mkdir(parents=True)
    with open(run_dir / ".lock", "w") as held:  # another harness process holds the run
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run(tmp_path) == [] and fake.calls == []
    assert "another harness process" in capsys.readouterr().out
    (rec,) = run(tmp_path)  # released: this process drives it
    assert rec["test"]["acc"] == TEST[1]


def test_a_killed_run_continues_from_last_ckpt(tmp_path, fake) -> None:
    fake.kill_after = 1
    with pytest.raises(SystemExit, match="give the same command again"):
        run(tmp_path)
    state = json.loads((tmp_path / "runs" / "fake" / "a_s0" / "state.json").read_text())
    assert state["phase"] == "fitting" and state["attempts"] == 1
    fake.kill_after = None
    (rec,) = run(tmp_path)
    fits = [c for c in fake.calls if c[0] == "fit"]
    assert len(fits) == 2 and FakeFerkit.arg(fits[1], "--ckpt_path").endswith(LAST) and fake.resumed_from_epoch == [1]
    assert rec["fit_attempts"] == 2 and len(rec["resumed_from"]) == 1
    assert [h["val/acc"] for h in rec["history"]] == VAL and rec["test"]["acc"] == TEST[1]


def test_an_attempt_killed_outright_still_counts_its_fit_time(tmp_path, fake) -> None:
    """The session ends with SIGKILL: the harness dies with the fit and never counts its time. The next attempt counts
    it from the attempt's start to the last epoch it wrote, and the table says when a record's time is incomplete."""
    from benchmarks.tables import fit_time_complete

    run_dir = tmp_path / "runs" / "fake" / "a_s0"
    fake.kill_after, fake.epoch_seconds = 1, 600.0  # epochs 0 and 1 written 600 and 1200 s after the start
    inner = fake.fit

    def killed_outright(args, log_dir):
        rc = inner(args, log_dir)
        shutil.copy(run_dir / "state.json", tmp_path / "state_at_death.json")  # as saved before the call
        return rc

    fake.fit = killed_outright
    with pytest.raises(SystemExit):
        run(tmp_path)
    shutil.copy(tmp_path / "state_at_death.json", run_dir / "state.json")  # nothing after the call was saved
    fake.fit, fake.kill_after, fake.epoch_seconds = inner, None, None
    (rec,) = run(tmp_path)
    # 1200 s (to the last epoch the killed attempt wrote) + 1 s (the fake's second, finished attempt)
    assert rec["wall_seconds"]["fit"] == pytest.approx(1201.0, abs=0.15)
    assert rec["fit_attempts"] == 2 and rec["fit_timed_attempts"] == 2 and len(rec["resumed_from"]) == 1
    assert fit_time_complete(rec)
    assert not fit_time_complete({**rec, "fit_timed_attempts": -1})  # a run begun before attempts were counted
    assert fit_time_complete({**rec, "fit_timed_attempts": -1, "fit_attempts": 1})


def test_a_fit_that_ends_early_without_error_is_continued_not_tested(tmp_path, fake) -> None:
    fake.quiet_stop_after = 1
    with pytest.raises(SystemExit):
        run(tmp_path)
    assert [c[0] for c in fake.calls] == ["fit"]
    fake.quiet_stop_after = None
    (rec,) = run(tmp_path)
    assert [c[0] for c in fake.calls] == ["fit", "fit", "test", "predict"] and fake.resumed_from_epoch == [1]
    assert [h["epoch"] for h in rec["history"]] == [0, 1, 2, 3]


def test_a_run_killed_while_saving_falls_back_to_the_previous_checkpoint(tmp_path, fake, capsys) -> None:
    fake.kill_after, fake.kill_while_saving = 2, True
    with pytest.raises(SystemExit):
        run(tmp_path)
    fake.kill_after = None
    (rec,) = run(tmp_path)
    assert "damaged" in capsys.readouterr().out
    fits = [c for c in fake.calls if c[0] == "fit"]
    # resumed from epoch 1's weights (the previous last.ckpt): epoch 2 is trained again
    assert FakeFerkit.arg(fits[1], "--ckpt_path").endswith(LAST) and fake.resumed_from_epoch == [1]
    assert [h["epoch"] for h in rec["history"]] == [0, 1, 2, 3] and rec["test"]["acc"] == TEST[1]


def test_no_readable_checkpoint_restarts_the_run_cleanly(tmp_path, fake, capsys) -> None:
    fake.kill_after = 0
    with pytest.raises(SystemExit):
        run(tmp_path)
    ckpt = tmp_path / "runs" / "fake" / "a_s0" / "ckpt"
    (ckpt / LAST).write_bytes(b"garbage")
    state_file = ckpt.parent / "state.json"
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "fit_seconds": 500.0}))  # as if the lost attempt had run 500 s
    fake.kill_after = None
    (rec,) = run(tmp_path)
    assert "starting the run again" in capsys.readouterr().out
    # the lost attempt's work is redone: only the second attempt's time counts (the fake's fit takes 1 s)
    assert rec["wall_seconds"]["fit"] == 1.0 and rec["resumed_from"] == []
    # the discarded attempt counts as timed (at zero seconds): the table does not call this fit time incomplete
    from benchmarks.tables import fit_time_complete

    assert rec["fit_attempts"] == rec["fit_timed_attempts"] == 2 and fit_time_complete(rec)
    fits = [c for c in fake.calls if c[0] == "fit"]
    assert "--ckpt_path" not in fits[1]
    assert [h["epoch"] for h in rec["history"]] == [0, 1, 2, 3]


def test_a_fitted_run_is_only_tested(tmp_path, fake) -> None:
    fake.test_fails = True
    with pytest.raises(SystemExit):
        run(tmp_path)
    state = json.loads((tmp_path / "runs" / "fake" / "a_s0" / "state.json").read_text())
    assert state["phase"] == "fitted" and state["selected_epoch"] == 1
    fake.test_fails = False
    (rec,) = run(tmp_path)
    assert [c[0] for c in fake.calls] == ["fit", "test", "test", "predict"] and rec["fit_attempts"] == 1


def test_history_keeps_the_rerun_of_an_epoch_and_skips_a_cut_line(tmp_path) -> None:
    lines = [{"epoch": 0, "metrics": {"val/acc": 0.1}}, {"epoch": 1, "metrics": {"val/acc": 0.2}},
             {"epoch": 2, "metrics": {"val/acc": 0.3}},
             {"epoch": 1, "metrics": {"val/acc": 0.25}}]  # resumed from epoch 0: epochs 1.. are re-run
    path = tmp_path / HISTORY
    path.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"epoch": 2, "metr')
    assert [(h["epoch"], h["val/acc"]) for h in read_history(path)] == [(0, 0.1), (1, 0.25)]
    # the resumed attempt's next line does not join the cut fragment: it stays readable
    from benchmarks.checkpoint import append_line

    append_line(str(path), json.dumps({"epoch": 2, "metrics": {"val/acc": 0.35}}))
    assert [(h["epoch"], h["val/acc"]) for h in read_history(path)] == [(0, 0.1), (1, 0.25), (2, 0.35)]


def test_selection_uses_validation_only() -> None:
    history = [{"epoch": 0, "val/acc": 0.5, "test/acc": 0.9}, {"epoch": 1, "val/acc": 0.7, "test/acc": 0.1},
               {"epoch": 2, "val/acc": 0.7, "test/acc": 0.95}]
    assert select_epoch(history) == (1, 0.7)  # first of equal scores, as a checkpoint callback keeps it
    assert select_epoch([{"epoch": 0, "val/loss": 2.0}, {"epoch": 1, "val/loss": 1.0}], "val/loss", "min") == (1, 1.0)
    with pytest.raises(ValueError, match="validation"):
        select_epoch(history, "test/acc")
    with pytest.raises(ValueError, match="never used to choose"):
        Suite(name="x", runs=[], monitor="test/acc")


def chained_suite() -> Suite:
    locate = Step("centres_b", ["pasm", "locate", "--config", "pasm_synthetic", "--teacher", "{best:a_s0}",
                                "--out", "{shared}/centres_b.pt"], report="{shared}/centres_b.pt.json")
    teacher = ["--model.init_args.teacher_ckpt", "{best:a_s0}", "--model.init_args.centres_path", "{shared}/centres_b.pt"]
    return Suite(name="chain", runs=[
        Run("a_s0", "pasm_synthetic", method="gen0"),
        Run("b_s0", "pasm_synthetic", overrides=teacher, method="gen1", baseline="gen0", steps=[locate]),
        Run("c_s0", "pasm_synthetic", overrides=teacher + ["--x", "1"], method="gen1x", baseline="gen0", steps=[locate]),
    ])


def test_a_run_reads_an_earlier_runs_best_checkpoint_and_a_shared_step_runs_once(tmp_path, fake) -> None:
    records = harness.run_suite(chained_suite(), work_dir=tmp_path / "runs", results_dir=tmp_path / "results")
    best_a = str(tmp_path / "runs" / "chain" / "a_s0" / "ckpt" / "best-epoch=1.ckpt")  # validation peaked at epoch 1
    shared = tmp_path / "runs" / "chain" / "_shared"
    steps = [c for c in fake.calls if c[0] == "pasm"]
    assert len(steps) == 1 and steps[0][steps[0].index("--teacher") + 1] == best_a
    assert steps[0][steps[0].index("--out") + 1] == str(shared / "centres_b.pt")
    fits = [c for c in fake.calls if c[0] == "fit"]
    for fit in fits[1:]:
        assert fit[fit.index("--model.init_args.teacher_ckpt") + 1] == best_a
        assert fit[fit.index("--model.init_args.centres_path") + 1] == str(shared / "centres_b.pt")
    b, c = records[1], records[2]
    assert b["steps"]["centres_b"]["report"] == {"teacher": best_a, "images": 3}
    assert c["steps"]["centres_b"]["report"] == b["steps"]["centres_b"]["report"]
    assert best_a in b["overrides"] and "{best:" not in " ".join(b["overrides"])
    assert records[0]["steps"] == {}


def test_a_run_whose_teacher_has_not_been_fitted_fails_with_the_fix(tmp_path, fake, capsys) -> None:
    with pytest.raises(SystemExit, match="1 run\\(s\\) failed: b_s0"):
        harness.run_suite(chained_suite(), only=["b_s0"], work_dir=tmp_path / "runs", results_dir=tmp_path / "results")
    out = capsys.readouterr().out
    assert "needs the checkpoint of run a_s0" in out and "--only a_s0" in out
    assert not [c for c in fake.calls if c[0] in ("fit", "pasm")]


def test_a_suite_must_list_the_runs_it_reads_first() -> None:
    with pytest.raises(ValueError, match="needs {best:z_s0}, which is not a run listed before it"):
        Suite(name="bad", runs=[Run("a_s0", "x", overrides=["--t", "{best:z_s0}"])])
    with pytest.raises(ValueError, match="two different steps are named"):
        Suite(name="bad", runs=[Run("a_s0", "x", steps=[Step("s", ["a"])]), Run("b_s0", "x", steps=[Step("s", ["b"])])])


def test_a_run_that_shared_the_cpu_says_so_in_its_record_and_table(tmp_path, fake, monkeypatch) -> None:
    """cpu_queue.sh runs two lanes side by side: a run resumed in a shared attempt keeps the most lanes it saw, and
    the suite table marks its minutes as shared."""
    from benchmarks.tables import short_cpu, suite_table

    fake.kill_after = 1
    with pytest.raises(SystemExit):
        run(tmp_path)  # first attempt alone
    fake.kill_after = None
    monkeypatch.setenv("FERKIT_BENCH_LANES", "2")
    (rec,) = run(tmp_path)
    assert rec["cpu_lanes"] == 2 and isinstance(rec["machine"]["threads"], int)
    assert f"cpu, {short_cpu(rec['machine']['cpu'])} (2 runs at once)" in suite_table([rec])
    assert "runs at once" not in suite_table([{**rec, "cpu_lanes": 1}])
    monkeypatch.setenv("FERKIT_BENCH_LANES", "two")
    shutil.rmtree(tmp_path / "results")
    shutil.rmtree(tmp_path / "runs")
    with pytest.raises((harness.RunFailed, SystemExit)):
        run(tmp_path)


def test_the_child_inherits_the_runs_lock(tmp_path, fake) -> None:
    """Every ferkit call gets the run's lock file (and a step its step lock) as an inherited descriptor: a harness
    killed outright leaves the lock held by its child, so no second driver trains beside an orphaned fit."""
    run(tmp_path)
    assert fake.pass_fds and all(len(fds) == 1 for fds in fake.pass_fds)


def test_call_ferkit_passes_the_descriptors_to_the_child(tmp_path, monkeypatch) -> None:
    seen = {}

    class Proc:
        def wait(self, timeout=None):
            return 0

    def popen(cmd, **kw):
        seen.update(kw)
        return Proc()

    monkeypatch.setattr(harness.subprocess, "Popen", popen)
    with open(tmp_path / ".lock", "w") as lock:
        fd = lock.fileno()
        rc, _ = harness.call_ferkit(["fit"], tmp_path / "fit.log", None, pass_fds=(fd,))
    assert rc == 0 and seen["pass_fds"] == (fd,)


def test_a_resumed_run_refuses_other_arguments(tmp_path, fake, capsys) -> None:
    """A run killed part-way and continued after its suite file changed would mix two settings in one record: the
    harness stops and says how to proceed; with the original arguments it continues."""
    fake.kill_after = 1
    with pytest.raises(SystemExit):
        run(tmp_path)
    fake.kill_after = None
    changed = Suite(name="fake", runs=[Run("a_s0", "avg_synthetic", seed=0, overrides=["--data.x", "2"], method="a")])
    with pytest.raises(SystemExit):
        harness.run_suite(changed, work_dir=tmp_path / "runs", results_dir=tmp_path / "results")
    out = capsys.readouterr().out
    assert "started with other arguments" in out and "'1' -> '2'" in out
    assert len([c for c in fake.calls if c[0] == "fit"]) == 1  # nothing was trained with the new arguments
    (rec,) = run(tmp_path)
    assert rec["fit_attempts"] == 2 and [h["epoch"] for h in rec["history"]] == [0, 1, 2, 3]


def test_a_run_waits_for_a_teacher_that_another_process_is_training(tmp_path, fake, capsys, monkeypatch) -> None:
    """With ``wait``, a student whose teacher is being trained by another process (its run lock held) waits for it and
    then reads its best checkpoint; without ``wait``, or when nobody trains the teacher, it fails at once."""
    import fcntl

    runs, results = tmp_path / "runs", tmp_path / "results"
    teacher_dir = runs / "chain" / "a_s0"
    teacher_dir.mkdir(parents=True)
    lock = open(teacher_dir / ".lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # "another process" is training a_s0
    (teacher_dir / "state.json").write_text(json.dumps({"phase": "fitting", "attempts": 1}))
    with pytest.raises(SystemExit, match="failed: b_s0"):  # no wait: fails as before
        harness.run_suite(chained_suite(), only=["b_s0"], work_dir=runs, results_dir=results)
    assert not [c for c in fake.calls if c[0] in ("fit", "pasm")]

    best = teacher_dir / "ckpt" / "best-epoch=1.ckpt"
    sleeps: list[float] = []

    def teacher_finishes_while_we_sleep(seconds: float) -> None:  # the other process ends its fit during the wait
        if seconds != 30:  # another pause (the stand-in's own), not the harness's wait
            return
        sleeps.append(seconds)
        best.parent.mkdir(parents=True, exist_ok=True)
        write_ckpt(best, 1)
        (teacher_dir / "state.json").write_text(json.dumps({"phase": "fitted", "best_checkpoint": str(best)}))
        fcntl.flock(lock, fcntl.LOCK_UN)

    monkeypatch.setattr(harness.time, "sleep", teacher_finishes_while_we_sleep)
    capsys.readouterr()
    records = harness.run_suite(chained_suite(), only=["b_s0"], work_dir=runs, results_dir=results, wait=30)
    assert sleeps == [30]
    assert "waiting for run a_s0" in capsys.readouterr().out
    step = next(c for c in fake.calls if c[0] == "pasm")
    assert step[step.index("--teacher") + 1] == str(best)
    assert [r["run"] for r in records] == ["b_s0"]
    lock.close()


def test_waiting_does_not_wait_for_a_teacher_nobody_trains(tmp_path, fake, capsys, monkeypatch) -> None:
    runs = tmp_path / "runs"
    (runs / "chain" / "a_s0").mkdir(parents=True)
    (runs / "chain" / "a_s0" / ".lock").touch()  # a lock file left by a finished or killed process: not held
    (runs / "chain" / "a_s0" / "state.json").write_text(json.dumps({"phase": "fitting", "attempts": 1}))
    monkeypatch.setattr(harness.time, "sleep", lambda s: pytest.fail("waited for a run nobody trains"))
    with pytest.raises(SystemExit, match="failed: b_s0"):
        harness.run_suite(chained_suite(), only=["b_s0"], work_dir=runs, results_dir=tmp_path / "results", wait=30)
    assert "needs the checkpoint of run a_s0" in capsys.readouterr().out


def test_a_finished_step_is_not_reused_when_its_teacher_changed(tmp_path, fake, capsys) -> None:
    """The centre pass of b and c is made once; if the teacher checkpoint it read is rewritten afterwards (a retrained
    teacher at the same path), a run that would reuse the step stops and names the file instead of training on
    centres located by another network."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    before = time.time()
    harness.run_suite(chained_suite(), only=["a_s0", "b_s0"], work_dir=runs, results_dir=results)
    mark = json.loads((runs / "chain" / "_shared" / ".steps" / "centres_b.done").read_text())
    best = str(runs / "chain" / "a_s0" / "ckpt" / "best-epoch=1.ckpt")
    assert list(mark["inputs"]) == [best]  # the teacher it read; its own output is not an input
    started = json.loads((runs / "chain" / "_shared" / ".steps" / "centres_b.started").read_text())
    # what `benchmarks status` shows while it runs; the harness rounds the time to 0.1 s, up or down
    assert started["run"] == "b_s0" and before - 0.05 <= started["time"] <= time.time() + 0.05
    # unchanged: c reuses the step (one centre pass in all)
    harness.run_suite(chained_suite(), only=["c_s0"], work_dir=runs, results_dir=results)
    assert len([c for c in fake.calls if c[0] == "pasm"]) == 1
    # the teacher file rewritten: a run that needs the step refuses it
    shutil.rmtree(runs / "chain" / "c_s0")
    (results / "chain" / "c_s0.json").unlink()
    write_ckpt(Path(best), 7)
    capsys.readouterr()
    with pytest.raises(SystemExit, match="failed: c_s0"):
        harness.run_suite(chained_suite(), only=["c_s0"], work_dir=runs, results_dir=results)
    out = capsys.readouterr().out
    assert f"{best} changed since the step read it" in out and "centres_b.done" in out
    assert len([c for c in fake.calls if c[0] == "pasm"]) == 1


def test_a_steps_partial_output_from_a_killed_attempt_is_not_an_input(tmp_path, fake) -> None:
    """A step killed part-way leaves its output file behind; the rerun completes it. That file is the step's output,
    so a later run that reuses the step must not call it "changed since the step read it"."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    harness.run_suite(chained_suite(), only=["a_s0"], work_dir=runs, results_dir=results)
    out = runs / "chain" / "_shared" / "centres_b.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"half")  # left by a killed centre pass
    harness.run_suite(chained_suite(), only=["b_s0"], work_dir=runs, results_dir=results)
    mark = json.loads((runs / "chain" / "_shared" / ".steps" / "centres_b.done").read_text())
    assert str(out) not in mark["inputs"] and list(mark["inputs"]) == [str(runs / "chain" / "a_s0" / "ckpt" / "best-epoch=1.ckpt")]
    (rec,) = harness.run_suite(chained_suite(), only=["c_s0"], work_dir=runs, results_dir=results)  # reuses the step
    assert rec["run"] == "c_s0" and len([c for c in fake.calls if c[0] == "pasm"]) == 1


def test_git_commit_dirty_counts_code_not_prose_or_results(tmp_path, monkeypatch):
    """A record's commit is "dirty" when code differs from it, not when the harness has rewritten the tables."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    import subprocess

    def run(*args):
        subprocess.run([git, *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "ferkit").mkdir()
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "ferkit" / "model.py").write_text("x = 1\n")
    (tmp_path / "README.md").write_text("table\n")
    (tmp_path / "benchmarks" / "results" / "TABLES.md").write_text("t\n")
    (tmp_path / "benchmarks" / "results" / "run.json").write_text("{}\n")
    run("init", "-q")
    run("add", "-A")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(harness, "REPO", tmp_path)
    monkeypatch.delenv("FERKIT_GIT_COMMIT", raising=False)

    clean = harness.git_commit()
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    (tmp_path / "README.md").write_text("new table\n")
    (tmp_path / "benchmarks" / "results" / "TABLES.md").write_text("t2\n")
    (tmp_path / "benchmarks" / "results" / "run.json").write_text('{"a": 1}\n')
    (tmp_path / "untracked.py").write_text("y = 2\n")
    assert harness.git_commit()["dirty"] is False
    (tmp_path / "ferkit" / "model.py").write_text("x = 2\n")
    assert harness.git_commit()["dirty"] is True


def test_the_harness_command_starts_without_lightning_or_torch() -> None:
    """``python -m benchmarks`` (the queue starts one per step; `status`, `table`) only reads and writes run folders
    and launches ``ferkit``: importing it must not import Lightning or torch (about 10 s per process on a 2-core
    CPU). The checkpoint callback, which needs Lightning, is imported by the ``ferkit fit`` process alone."""
    import subprocess

    code = ("import sys, benchmarks.__main__, benchmarks.harness, benchmarks.status; "
            "print(sorted(m for m in ('lightning', 'torch', 'timm', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=REPO, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
