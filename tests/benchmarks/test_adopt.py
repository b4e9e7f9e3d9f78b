"""`python -m benchmarks adopt`: a record trained in another suite joins a suite only when it is the same run."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.__main__ import main  # noqa: E402
from benchmarks.adopt import adopt, override_map  # noqa: E402
from benchmarks.suite import load_suite  # noqa: E402


def gpu_record(results: Path, src_run: str, dest_run) -> Path:
    """A record as the gpu suite writes it for ``dest_run``'s training: its overrides plus where it ran."""
    suite = load_suite("ferplus_clean")
    overrides = [*dest_run.overrides, suite.data_root_override, "/tmp/runs/fer2013", "--trainer.accelerator", "gpu",
                 "--data.num_workers", "7"]
    rec = {"suite": "gpu", "run": src_run, "method": "x_clean", "baseline": None, "seed": dest_run.seed,
           "config": dest_run.config, "overrides": overrides, "machine": {"device": "NVIDIA H200"},
           "test": {"acc": 0.8351}}
    path = results / "gpu" / f"{src_run}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return path


def test_override_map_last_value_wins() -> None:
    assert override_map(["--a", "1", "--b", "--a", "2"]) == {"--a": "2", "--b": None}
    with pytest.raises(ValueError, match="not an option"):
        override_map(["a", "1"])


def test_same_run_on_another_device_is_adopted(tmp_path: Path) -> None:
    runs = {r.name: r for r in load_suite("ferplus_clean").runs}
    gpu_record(tmp_path, "arm_clean_s1", runs["arm_s1"])
    out = adopt("gpu/arm_clean_s1", "ferplus_clean/arm_s1", tmp_path)
    rec = json.loads(out.read_text())
    assert out == tmp_path / "ferplus_clean" / "arm_s1.json"
    assert (rec["suite"], rec["run"], rec["method"], rec["baseline"]) == ("ferplus_clean", "arm_s1", "arm", "avg")
    assert rec["adopted_from"] == {"suite": "gpu", "run": "arm_clean_s1", "method": "x_clean"}
    assert rec["machine"]["device"] == "NVIDIA H200" and rec["test"]["acc"] == 0.8351
    # the destination has its record now: adopting again is refused unless forced
    with pytest.raises(ValueError, match="exists already"):
        adopt("gpu/arm_clean_s1", "ferplus_clean/arm_s1", tmp_path)
    adopt("gpu/arm_clean_s1", "ferplus_clean/arm_s1", tmp_path, force=True)


def test_a_different_run_is_refused_with_what_differs(tmp_path: Path) -> None:
    runs = {r.name: r for r in load_suite("ferplus_clean").runs}
    gpu_record(tmp_path, "arm_clean_s1", runs["arm_s1"])
    with pytest.raises(ValueError) as e:  # ARM's record is not average pooling's run
        adopt("gpu/arm_clean_s1", "ferplus_clean/avg_s1", tmp_path)
    assert "config 'arm_ferplus' != 'avg_ferplus'" in str(e.value) and "pool_kwargs" in str(e.value)
    with pytest.raises(ValueError, match="seed 1 != 0"):
        adopt("gpu/arm_clean_s1", "ferplus_clean/arm_s0", tmp_path)
    # a training option that differs (another precision) is refused; device options are not compared
    path = tmp_path / "gpu" / "arm_clean_s1.json"
    rec = json.loads(path.read_text())
    rec["overrides"] += ["--trainer.precision", "32"]
    path.write_text(json.dumps(rec))
    with pytest.raises(ValueError, match="--trainer.precision: 32 \\(source\\) != bf16-mixed"):
        adopt("gpu/arm_clean_s1", "ferplus_clean/arm_s1", tmp_path)
    assert not (tmp_path / "ferplus_clean").exists()


def test_cli_reports_a_refusal(tmp_path: Path, capsys) -> None:
    assert main(["adopt", "gpu/none_s1", "ferplus_clean/arm_s1", "--results", str(tmp_path)]) == 2
    assert "no record" in capsys.readouterr().err
