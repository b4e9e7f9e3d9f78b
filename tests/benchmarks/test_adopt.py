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


def test_a_record_trained_on_several_devices_is_refused(tmp_path: Path) -> None:
    """`--trainer.devices` is a device option and not compared, but a run on two devices trains with twice the
    global batch: the resolved config must say one device on one node."""
    runs = {r.name: r for r in load_suite("ferplus_clean").runs}
    path = gpu_record(tmp_path, "arm_clean_s1", runs["arm_s1"])
    rec = json.loads(path.read_text())
    rec["resolved_config"] = {"trainer": {"devices": 2, "num_nodes": 1}}
    path.write_text(json.dumps(rec))
    with pytest.raises(ValueError, match="trainer.devices 2: trained on more than one device"):
        adopt("gpu/arm_clean_s1", "ferplus_clean/arm_s1", tmp_path)
    rec["resolved_config"] = {"trainer": {"devices": 1, "num_nodes": 1}}
    path.write_text(json.dumps(rec))
    adopt("gpu/arm_clean_s1", "ferplus_clean/arm_s1", tmp_path)


def test_a_suites_own_record_from_another_folder_and_a_destination_training_here(tmp_path: Path) -> None:
    """`gpu.sh --suite ferplus_clean` writes ferplus_clean's own records into a folder copied back from the lent
    machine: `adopt --from` brings one in under its own name. A destination that has begun training here is refused
    (its record would replace the adopted one, or the other way round) unless forced."""
    import fcntl

    runs = {r.name: r for r in load_suite("ferplus_clean").runs}
    came_back, results, work = tmp_path / "back", tmp_path / "results", tmp_path / "runs"
    src = gpu_record(came_back, "arm_s1", runs["arm_s1"])
    rec = json.loads(src.read_text())
    rec.update(suite="ferplus_clean", method="arm", baseline="avg")
    (came_back / "ferplus_clean").mkdir()
    src.rename(came_back / "ferplus_clean" / "arm_s1.json")
    (came_back / "ferplus_clean" / "arm_s1.json").write_text(json.dumps(rec))

    run_dir = work / "ferplus_clean" / "arm_s1"
    run_dir.mkdir(parents=True)
    (run_dir / "state.json").write_text(json.dumps({"phase": "fitting"}))
    with pytest.raises(ValueError, match="has begun here .*phase fitting"):
        adopt("ferplus_clean/arm_s1", None, results, from_dir=came_back, work_dir=work)
    (run_dir / "state.json").unlink()
    with open(run_dir / ".lock", "w") as lock:  # a harness process drives the run
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(ValueError, match="is training now here"):
            adopt("ferplus_clean/arm_s1", None, results, from_dir=came_back, work_dir=work)
    assert not (results / "ferplus_clean").exists()
    assert main(["adopt", "--from", str(came_back), "ferplus_clean/arm_s1", "--results", str(results),
                 "--work-dir", str(work)]) == 0
    out = json.loads((results / "ferplus_clean" / "arm_s1.json").read_text())
    assert out["adopted_from"] == {"suite": "ferplus_clean", "run": "arm_s1", "method": "arm",
                                   "results": str(came_back)}
    assert {k: v for k, v in out.items() if k != "adopted_from"} == rec


@pytest.mark.parametrize("gpu_run, dest", [("arm_clean_s1", "arm_s1"), ("avg_clean_s1", "avg_s1")])
def test_the_gpu_suites_clean_pair_is_still_ferplus_cleans_runs(tmp_path: Path, gpu_run: str, dest: str) -> None:
    """The gpu suite's definition of ferplus_clean's seed-1 pair (whose records were adopted) has not drifted from
    ferplus_clean's: a record with its overrides, as the harness writes them, is adopted."""
    gpu = load_suite("gpu")
    run = next(r for r in gpu.runs if r.name == gpu_run)
    rec = {"suite": "gpu", "run": gpu_run, "method": run.method, "seed": run.seed, "config": run.config,
           "overrides": [*run.overrides, gpu.data_root_override, "/tmp/runs/fer2013", "--trainer.accelerator", "gpu"],
           "resolved_config": {"trainer": {"devices": 1, "num_nodes": 1}}}
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / f"{gpu_run}.json").write_text(json.dumps(rec))
    assert adopt(f"gpu/{gpu_run}", f"ferplus_clean/{dest}", tmp_path).is_file()
