"""benchmarks.paired: two runs compared image by image (exact McNemar test, paired interval) and its table."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.harness import RunFailed, read_predictions  # noqa: E402
from benchmarks.paired import mcnemar_exact_p, paired_gap  # noqa: E402
from benchmarks.tables import suite_table  # noqa: E402

CLASSES = ["a", "b"]


def rec(method: str, label: str, pred: str, baseline: str | None = None, seed: int = 0) -> dict:
    acc = sum(x == y for x, y in zip(label, pred)) / len(label)
    return {"suite": "s", "run": f"{method}_s{seed}", "method": method, "baseline": baseline, "seed": seed,
            "selection": {"monitor": "val/acc", "mode": "max", "epoch": 0, "value": acc},
            "test": {"acc": acc, "mean_class_acc": None, "per_class_recall": {}, "class_names": CLASSES},
            "test_predictions": {"classes": CLASSES, "label": label, "pred": pred},
            "wall_seconds": {"fit": 60.0, "test": 1.0}, "machine": {"device": "cpu"}, "history": [], "stats": []}


def test_exact_mcnemar_p_values() -> None:
    assert mcnemar_exact_p(0, 0) == 1.0 and mcnemar_exact_p(5, 5) == 1.0
    assert mcnemar_exact_p(10, 0) == pytest.approx(2 / 1024)
    assert mcnemar_exact_p(7, 3) == mcnemar_exact_p(3, 7) == pytest.approx(2 * (1 + 10 + 45 + 120) / 1024)


def test_paired_gap_counts_the_images_only_one_run_got_right() -> None:
    label = "0000011111"
    a = rec("m", label, "0000011100", "base")   # wrong on 2 images
    b = rec("base", label, "1100011111")        # wrong on 2 others
    pg = paired_gap(a, b)
    assert (pg["only_a"], pg["only_b"], pg["n"]) == (2, 2, 10) and pg["gap"] == 0.0 and pg["mcnemar_p"] == 1.0
    better = paired_gap(rec("m", label, label, "base"), b)
    assert better["gap"] == pytest.approx(0.2) and better["only_a"] == 2 and better["only_b"] == 0
    # per-image differences: two +1 and eight 0: mean 0.2, variance 0.2 - 0.04 = 0.16, se = 0.4 / sqrt(10)
    lo, hi = better["ci95"]
    assert lo == pytest.approx(0.2 - 1.96 * 0.4 / 10 ** 0.5) and hi == pytest.approx(0.2 + 1.96 * 0.4 / 10 ** 0.5)
    assert paired_gap({**a, "test_predictions": None}, b) is None
    with pytest.raises(ValueError, match="different images"):
        paired_gap(a, rec("base", "1111100000", "1111100000"))


def test_the_suite_table_adds_the_paired_gaps() -> None:
    label = "01" * 50
    base = rec("ce", label, "0" * 100)                                     # 50 right
    meth = rec("asm", label, "01" * 40 + "00" * 10, "ce")                  # 90 right: 40 only it, 0 only ce
    table = suite_table([base, meth])
    assert "on the 100 test images" in table
    assert "| asm | ce | 0 | +40.00 |" in table and "| 40 / 0 |" in table and "< 0.0001 |" in table
    assert "seed-to-seed spread" in table
    assert "image by image" not in suite_table([{**base, "test_predictions": None}, meth])


def write_csv(path: Path, rows: list[tuple[int, str, str]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "id", "label", "pred", "prob_a", "prob_b"])
        for i, label, pred in rows:
            w.writerow([i, f"img{i}", label, pred, 0.5, 0.5])


def test_read_predictions_orders_by_index_and_refuses_gaps(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    write_csv(path, [(1, "b", "a"), (0, "a", "a"), (2, "b", "b")])
    assert read_predictions(path, CLASSES) == {"classes": CLASSES, "label": "011", "pred": "001"}
    write_csv(path, [(0, "a", "a"), (2, "b", "b")])
    with pytest.raises(RunFailed, match="not 0..1"):
        read_predictions(path, CLASSES)
