"""``benchmarks/lanet_memory_study.py``: the run's checkpoints, the per-epoch watcher and its curve, on hand-made
checkpoints (the statistics themselves are tested in ``tests/metrics/test_label_memory.py``)."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def study() -> dict:
    sys.path.insert(0, str(BENCH.parent))
    try:
        return runpy.run_path(str(BENCH / "lanet_memory_study.py"), run_name="ferkit_bench_lanet_memory_study")
    finally:
        sys.path.remove(str(BENCH.parent))


GIVEN = torch.tensor([0, 0, 1, 1, 2, 2])
CLEAN = torch.tensor([0, 1, 1, 1, 2, 0])  # samples 1 and 5 are flipped


def test_a_run_without_checkpoints_is_named(study, tmp_path) -> None:
    with pytest.raises(SystemExit, match="no checkpoints in .*noise30.*lanet_s9"):
        study["run_checkpoints"](tmp_path, "noise30", "lanet_s9")


def _fake_checkpoint(path: Path, epochs: int, memory: torch.Tensor) -> None:
    """What the study reads from a Lightning checkpoint: the memory buffer and the fit loop's epoch count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"lde_bank.values": memory}, "global_step": 10 * epochs, "epoch": epochs - 1,
                "loops": {"fit_loop": {"epoch_progress": {"total": {"processed": epochs}}}}}, path)


def test_watch_saves_each_epochs_memory_and_the_curve_reads_them(study, tmp_path) -> None:
    run = tmp_path / "suite" / "lanet_s0"
    start = torch.nn.functional.one_hot(GIVEN, 3).float()
    found = 0.8 * torch.nn.functional.one_hot(CLEAN, 3).float() + 0.2 / 3
    _fake_checkpoint(run / "ckpt" / "last.prev.ckpt", 1, start)
    _fake_checkpoint(run / "ckpt" / "last.ckpt", 2, found)
    result = tmp_path / "lanet_s0.json"
    result.write_text("{}")  # the run has its record: one look, then the watcher returns
    assert study["watch"](run, result, interval=0.0) == 2
    assert sorted(p.name for p in (run / "memory").iterdir()) == ["epoch_001.pt", "epoch_002.pt"]
    assert study["watch"](run, result, interval=0.0) == 0  # nothing new
    rows = study["per_epoch"](run, GIVEN, CLEAN, ["a", "b", "c"])
    assert [(r["epoch"], r["global_step"]) for r in rows] == [(1, 10), (2, 20)]
    assert [r["argmax_counts"] for r in rows] == [{"a": 2, "b": 2, "c": 2}, {"a": 2, "b": 3, "c": 1}]
    assert [r["flipped_ranks_clean_first"] for r in rows] == [0.0, 1.0]
    # true classes a, b, c hold samples {0, 5}, {1, 2, 3}, {4}; the one-hot start keeps given labels 0 and 2, 3, 4
    assert rows[0]["recall_by_true_class"] == {"a": 0.5, "b": pytest.approx(2 / 3), "c": 1.0}
    assert rows[1]["recall_by_true_class"] == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert [r["memory_label_accuracy"] for r in rows] == [pytest.approx(4 / 6), 1.0]
    png = study["plot_per_epoch"](rows, tmp_path / "memory.png", "test")
    three = study["plot_per_epoch"](rows, tmp_path / "memory3.png", "test", {"a": 2, "b": 3, "c": 1})
    assert png.is_file() and three.is_file()
    from PIL import Image

    assert Image.open(three).size[0] > Image.open(png).size[0]  # the third panel: class counts
    with pytest.raises(SystemExit, match="6 rows, the training set 12 samples"):
        study["per_epoch"](run, GIVEN[:6].repeat(2), CLEAN[:6].repeat(2))


def test_a_checkpoint_without_a_label_memory_is_named(study, tmp_path) -> None:
    path = tmp_path / "ce.ckpt"
    torch.save({"state_dict": {"model.fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(SystemExit, match="not an LA-Net checkpoint"):
        study["load_memory"](path)


def test_confusion_counts_true_class_by_memory_arg_max(study) -> None:
    top = torch.tensor([0, 0, 1, 1, 2, 2])
    cm = study["confusion"](top, torch.tensor([0, 1, 1, 1, 2, -1]), ["a", "b", "c"])  # the last has no known truth
    assert cm == {"a": {"a": 1, "b": 0, "c": 0}, "b": {"a": 1, "b": 2, "c": 0}, "c": {"a": 0, "b": 0, "c": 1}}
    assert study["recall_by_true_class"](top, torch.tensor([0, 1, 1, 1, 0, 0]), ["a", "b", "c"]) == \
        {"a": pytest.approx(1 / 3), "b": pytest.approx(2 / 3), "c": None}
