"""The shipped configs keep a fresh last.ckpt, and the benchmark helpers find the best and last checkpoints."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_rewrites_last_ckpt_every_epoch(path: Path) -> None:
    cfg = yaml.safe_load(path.read_text())
    ckpts = [cb.get("init_args") or {} for cb in (cfg.get("trainer") or {}).get("callbacks") or []
             if str(cb.get("class_path", "")).endswith("ModelCheckpoint")]
    assert ckpts, f"{path.name} keeps no checkpoint"
    # Lightning >= 2.x: a monitored ModelCheckpoint rewrites last.ckpt only when its metric improves, so save_last
    # must sit on an unmonitored callback or the resumable last.ckpt can be epochs old
    assert any(a.get("save_last") and not a.get("monitor") for a in ckpts), path.name
    assert not any(a.get("save_last") and a.get("monitor") for a in ckpts), path.name


def _common():
    spec = importlib.util.spec_from_file_location("ferkit_bench_common", REPO / "benchmarks" / "common.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("ferkit_bench_common", mod)
    spec.loader.exec_module(mod)
    return mod


def test_checkpoint_paths_reads_best_and_last_from_separate_callbacks(tmp_path: Path) -> None:
    common = _common()
    best = SimpleNamespace(monitor="val/acc", best_model_path="b.ckpt", last_model_path="")
    last = SimpleNamespace(monitor=None, best_model_path="epoch=4.ckpt", last_model_path="last.ckpt")
    assert common.checkpoint_paths(SimpleNamespace(checkpoint_callbacks=[best, last])) == {"best": "b.ckpt", "last": "last.ckpt"}
    # only an unmonitored callback: "best" falls back to the last checkpoint
    assert common.checkpoint_paths(SimpleNamespace(checkpoint_callbacks=[last])) == {"best": "last.ckpt", "last": "last.ckpt"}


def test_val_history_reads_a_csv_logger_file(tmp_path: Path) -> None:
    common = _common()
    (tmp_path / "metrics.csv").write_text("epoch,step,train/loss,val/acc,val/mean_class_acc\n0,9,1.2,,\n0,9,,0.5,0.25\n1,19,,0.625,0.5\n")
    assert common.val_history(tmp_path) == [{"epoch": 1, "val_acc": 50.0, "val_mean_class_acc": 25.0},
                                            {"epoch": 2, "val_acc": 62.5, "val_mean_class_acc": 50.0}]
