"""benchmarks/demo_seeds.py: collecting finished demo folders into one record, and the README table built from it."""
from __future__ import annotations

import json
import runpy
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _fake_demo(folder: Path, seed: int, ce: float, omni: float) -> None:
    out = folder / "runs" / "demo" / "omni" / "version_1"
    out.mkdir(parents=True)
    (folder / "runs" / "demo" / "omni" / "version_0").mkdir()  # an older demo in the same folder: not read
    (out / "config.yaml").write_text(f"seed_everything: {seed}\n")
    rows = [{"model": "CE (labelled only)", "acc": ce, "mean_class_acc": ce, "fit_seconds": 1.0, "val_acc": [ce]},
            {"model": "Omni (+ mined, distilled)", "acc": omni, "mean_class_acc": omni, "fit_seconds": 2.0, "val_acc": [omni]}]
    (out / "demo_summary.json").write_text(json.dumps(rows))
    (out / "omni_demo.json").write_text(json.dumps({"mined": 100, "mined_right": 75}))


def test_collected_seeds_give_the_gap_table(tmp_path, monkeypatch) -> None:
    mod = runpy.run_path(str(REPO / "benchmarks" / "demo_seeds.py"), run_name="ferkit_bench_demo_seeds")
    _fake_demo(tmp_path / "a", 0, 50.0, 55.0)
    _fake_demo(tmp_path / "b", 1, 52.0, 59.0)
    runs = [mod["collect"](tmp_path / "a"), mod["collect"](tmp_path / "b")]
    assert [r["seed"] for r in runs] == [0, 1] and runs[0]["folder"].endswith("version_1")
    payload = {"runs": runs, "gap_points": {"per_seed": [5.0, 7.0], "mean": 6.0, "sd": 1.41}}
    table = mod["seed_table"](payload)
    assert "| 0 | 50.00 | **55.00** | +5.00 | 100 (75: 75.0 %) |" in table
    assert "| 1 | 52.00 | **59.00** | +7.00 |" in table and "Mean gap +6.00 points (standard deviation 1.41 over 2 seeds)." in table
