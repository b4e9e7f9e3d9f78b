"""The harness end to end on the ``smoke`` suite (64 synthetic faces, 3 epochs) through the real ``ferkit`` command line."""
from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.checkpoint import EXIT_AFTER_EPOCH_ENV, LAST  # noqa: E402
from benchmarks.harness import run_suite  # noqa: E402
from benchmarks.records import select_epoch  # noqa: E402
from benchmarks.suite import load_suite  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """The same run (seed 0) twice: once uninterrupted, once killed after its second epoch and resumed. The two are
    independent (own folders, own ``ferkit`` processes) and run side by side: most of their time is each process's
    single-threaded start-up, which two cores overlap."""
    suite = load_suite("smoke")

    kinds = ("straight", "resumed")
    bases = {kind: tmp_path_factory.mktemp(kind) for kind in kinds}

    def one(kind: str):
        base = bases[kind]
        kw = dict(only=["avg_s0"], work_dir=base / "runs", results_dir=base / "results")
        if kind == "resumed":
            with pytest.raises(SystemExit, match="give the same command again"):
                run_suite(suite, env={EXIT_AFTER_EPOCH_ENV: "1"}, **kw)
            state = json.loads((base / "runs" / "smoke" / "avg_s0" / "state.json").read_text())
            assert state["phase"] == "fitting" and (base / "runs" / "smoke" / "avg_s0" / "ckpt" / LAST).is_file()
        (rec,) = run_suite(suite, **kw)
        return rec, base

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {kind: pool.submit(one, kind) for kind in kinds}
        return {kind: futures[kind].result() for kind in kinds}  # re-raises a failure of either


def test_record_has_every_field(runs) -> None:
    rec, base = runs["straight"]
    assert json.loads((base / "results" / "smoke" / "avg_s0.json").read_text()) == rec
    for key in ("suite", "run", "method", "config", "seed", "overrides", "resolved_config", "git", "machine",
                "wall_seconds", "selection", "history", "stats", "test", "epochs"):
        assert key in rec, key
    assert rec["resolved_config"]["seed_everything"] == 0 and rec["resolved_config"]["trainer"]["max_epochs"] == 3
    assert rec["git"]["commit"] and rec["machine"]["device"] == "cpu" and rec["wall_seconds"]["fit"] > 0
    assert [h["epoch"] for h in rec["history"]] == [0, 1, 2]
    assert all("val/acc" in h and "train/loss" in h for h in rec["history"])
    t = rec["test"]
    assert t["num_samples"] == 32 and len(t["per_class_recall"]) == len(t["class_names"]) == 7
    assert sum(map(sum, t["confusion_matrix"])) == 32
    assert t["acc"] == pytest.approx(sum(t["confusion_matrix"][i][i] for i in range(7)) / 32)


def test_the_record_holds_each_test_image_prediction_of_the_tested_checkpoint(runs) -> None:
    """``test_predictions``: one character per test image, and together they give the recorded test accuracy and
    confusion matrix (the harness refuses predictions that do not)."""
    rec, _ = runs["straight"]
    p, t = rec["test_predictions"], rec["test"]
    assert p["classes"] == t["class_names"] and len(p["label"]) == len(p["pred"]) == 32
    confusion = [[0] * 7 for _ in range(7)]
    for true, pred in zip(p["label"], p["pred"]):
        confusion[int(true)][int(pred)] += 1
    assert confusion == t["confusion_matrix"]
    # the resumed run reproduces the uninterrupted one image by image
    assert runs["resumed"][0]["test_predictions"] == p


def test_predictions_that_miss_the_recorded_accuracy_are_refused(runs, tmp_path) -> None:
    from benchmarks.harness import RunDriver, add_predictions

    _, base = runs["straight"]
    suite = load_suite("smoke")
    driver = RunDriver(suite, suite.select(["avg_s0"])[0], base / "runs", base / "results")
    saved = (driver.dir / "state.json").read_text()
    state = json.loads(saved)
    state.pop("test_predictions")
    state["test"] = {**state["test"], "acc": state["test"]["acc"] + 0.1}
    refused = driver.predict(state)
    assert refused["test_predictions"] is None and "do not reproduce" in refused["test_predictions_refused"]
    (driver.dir / "state.json").write_text(saved)  # predict saved the altered state; the run's own comes back
    # backfilling: a record without predictions gets them, the rest of it unchanged
    record = json.loads(driver.record_path.read_text())
    expected = record.pop("test_predictions")
    driver.record_path.write_text(json.dumps(record))
    assert add_predictions(suite, ["avg_s0"], base / "runs", base / "results") == ["avg_s0"]
    assert json.loads(driver.record_path.read_text()) == {**record, "test_predictions": expected}
    assert add_predictions(suite, ["avg_s0"], base / "runs", base / "results") == []  # nothing left to add


def test_a_record_that_appears_while_the_run_trains_is_kept(runs) -> None:
    """The same run trained elsewhere (a lent GPU) and adopted while this one trained: the first finished record stays
    the run's, and this run's record goes beside it as ``<run>.json.conflict``, out of the tables."""
    from benchmarks.harness import RunDriver

    _, base = runs["straight"]
    suite = load_suite("smoke")
    driver = RunDriver(suite, suite.select(["avg_s0"])[0], base / "runs", base / "results")
    own = driver.record_path.read_text()
    adopted = {**json.loads(own), "adopted_from": {"suite": "gpu", "run": "avg_s0"}}
    driver.record_path.write_text(json.dumps(adopted))
    conflict = driver.record_path.with_name(driver.record_path.name + ".conflict")
    try:
        rec = driver._execute()  # the finished run's last stage: build and write its record
        assert json.loads(driver.record_path.read_text()) == adopted
        assert json.loads(conflict.read_text()) == rec == json.loads(own)
    finally:
        driver.record_path.write_text(own)
        conflict.unlink(missing_ok=True)


def test_the_tested_checkpoint_is_the_best_validation_epoch(runs) -> None:
    import torch

    rec, base = runs["straight"]
    sel = rec["selection"]
    assert (sel["epoch"], sel["value"]) == select_epoch(rec["history"])
    ckpt = base / "runs" / "smoke" / "avg_s0" / "ckpt" / sel["checkpoint"]
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"] == sel["epoch"]
    test_log = (base / "runs" / "smoke" / "avg_s0" / "test.log").read_text()
    assert f"--ckpt_path {ckpt}" in test_log and test_log.count("$ ") == 1  # tested once


def test_a_finished_run_is_skipped(runs) -> None:
    rec, base = runs["straight"]
    assert run_suite(load_suite("smoke"), only=["avg_s0"], work_dir=base / "runs", results_dir=base / "results") == []


def test_a_killed_run_resumes_from_its_last_checkpoint(runs) -> None:
    rec, base = runs["resumed"]
    assert rec["fit_attempts"] == 2 and rec["resumed_from"][0].endswith(LAST)
    assert [h["epoch"] for h in rec["history"]] == [0, 1, 2]
    fit_log = (base / "runs" / "smoke" / "avg_s0" / "fit.log").read_text()
    assert fit_log.count("--ckpt_path") == 1


# Two uninterrupted runs of one seed are identical (issue 11 item 1), and so is a run killed after an epoch and
# resumed: the training order and every item's augmentation are functions of (seed, epoch, index) (ferkit.data).
def test_a_resumed_run_reaches_the_same_metrics_as_an_uninterrupted_one(runs) -> None:
    straight, _ = runs["straight"]
    resumed, _ = runs["resumed"]
    keys = ("val/acc", "val/loss", "val/mean_class_acc")
    assert [[h[k] for k in keys] for h in resumed["history"]] == [[h[k] for k in keys] for h in straight["history"]]
    assert resumed["selection"] == straight["selection"]
    assert resumed["test"] == straight["test"]


def test_table_and_plots_from_the_records(runs, tmp_path) -> None:
    rec, base = runs["straight"]
    from benchmarks.tables import update_tables

    readme = tmp_path / "README.md"
    readme.write_text("<!-- bench:smoke -->\n<!-- /bench:smoke -->\n")
    assert update_tables(base / "results", out=tmp_path / "T.md") == {}  # the smoke suite stays out of real tables
    update_tables(base / "results", markdown=[readme], include_smoke=True)
    assert f"| avg | 1 (0) | {100 * rec['test']['acc']:.2f} |" in readme.read_text()
    pytest.importorskip("matplotlib")
    from benchmarks.plots import plot_all

    paths = plot_all(base / "results", include_smoke=True)
    assert sorted(p.name for p in paths) == ["smoke_recall.png", "smoke_val_acc.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_flip_validation_reproduces_the_selection_score_on_validation_only(runs) -> None:
    """``benchmarks/flip_validation.py`` re-validates the chosen checkpoint: its plain score is the record's selection
    score (the same checkpoint, data and arguments), the flip-averaged one is another validation score, and it never
    runs the test split."""
    from benchmarks.flip_validation import measure

    rec, base = runs["straight"]
    out = measure("smoke", "avg_s0", base / "runs", base / "results")
    assert out["split"] == "validation" and out["epoch"] == rec["selection"]["epoch"] and not out["selected_with_flip"]
    assert out["plain"]["val/acc"] == pytest.approx(rec["selection"]["value"], abs=1e-6)
    assert 0.0 <= out["flip"]["val/acc"] <= 1.0 and not any(k.startswith("test/") for k in out["flip"])
    assert out["gain_acc_points"] == pytest.approx(100 * (out["flip"]["val/acc"] - out["plain"]["val/acc"]), abs=0.01)


def test_flip_validation_reads_how_each_pass_and_the_run_evaluated(tmp_path) -> None:
    """Which pass must reproduce the selection score follows the run's own ``eval_flip``; each pass's setting is read
    back from the configuration ``ferkit validate`` saved (the checkpoint may not override it unnoticed)."""
    from benchmarks.flip_validation import trained_with_flip, used_eval_flip

    import torch

    for hparams, expected in (({"eval_flip": True}, True), ({"eval_flip": False}, False), ({"num_classes": 8}, False)):
        torch.save({"hyper_parameters": hparams, "state_dict": {}}, tmp_path / "c.ckpt")
        assert trained_with_flip(tmp_path / "c.ckpt") is expected
    assert used_eval_flip(tmp_path) is None
    (tmp_path / "v" / "version_0").mkdir(parents=True)
    cfg = tmp_path / "v" / "version_0" / "config.yaml"
    cfg.write_text("model:\n  class_path: ferkit.methods.FERClassifier\n  init_args:\n    eval_flip: true\n")
    assert used_eval_flip(tmp_path) is True
    cfg.write_text("model:\n  class_path: ferkit.methods.FERClassifier\n  init_args:\n    label_smoothing: 0.1\n")
    assert used_eval_flip(tmp_path) is False
