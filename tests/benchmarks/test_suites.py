"""Every suite loads, names existing configs, and compares each method with a baseline of the same suite."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.harness import resolve_config  # noqa: E402
from benchmarks.suite import Run, Suite, available_suites, load_suite  # noqa: E402


@pytest.mark.parametrize("name", available_suites())
def test_suite_is_well_formed(name: str) -> None:
    suite = load_suite(name)
    assert suite.runs and suite.monitor.startswith("val/")
    methods = {r.method for r in suite.runs}
    for run in suite.runs:
        assert Path(resolve_config(run.config)).is_file(), f"{name}/{run.name}: no config {run.config!r}"
        baselines = [run.baseline] if isinstance(run.baseline, str) else list(run.baseline or [])
        assert set(baselines) <= methods - {run.method}, f"{name}/{run.name}: baseline {baselines} not in the suite"
        # one method's runs differ only in seed
        same = [r for r in suite.runs if r.method == run.method]
        assert len({r.seed for r in same}) == len(same)


def test_the_expected_suites_exist() -> None:
    assert {"smoke", "ferplus_recipe", "ferplus_clean", "ferplus_noise30", "ferplus_noise10", "fer2013_realnoise",
            "gpu"} <= set(available_suites())


def test_selecting_runs_by_name_or_method() -> None:
    s = Suite(name="x", runs=[Run("a_s0", "c", 0, method="a"), Run("a_s1", "c", 1, method="a"), Run("b_s0", "c", 0)])
    assert [r.name for r in s.select(["a"])] == ["a_s0", "a_s1"]
    assert [r.name for r in s.select(["b_s0"])] == ["b_s0"]
    with pytest.raises(SystemExit, match="has no run or method"):
        s.select(["zzz"])
    with pytest.raises(ValueError, match="unique"):
        Suite(name="y", runs=[Run("a", "c"), Run("a", "c")])


def test_a_pending_suite_says_why() -> None:
    from benchmarks.harness import run_suite

    with pytest.raises(SystemExit, match="cannot run yet"):
        run_suite(Suite(name="later", runs=[Run("a", "avg_synthetic")], pending="waits for a feature"))


@pytest.mark.slow
@pytest.mark.shared_data
def test_gpu_script_smoke_on_cpu(shared_data_dir: Path, tmp_path: Path) -> None:
    root = shared_data_dir / "fer2013"
    if not (root / "fer2013new.csv").is_file():
        pytest.skip(f"FER+ files not found in {root}")
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--smoke", "--results", str(tmp_path / "results"),
                          "--work-dir", str(tmp_path / "runs"), "--root", str(root), "--only", "recipe112_s0"],
                         capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    import json

    rec = json.loads((tmp_path / "results" / "gpu.smoke" / "recipe112_s0.json").read_text())
    assert rec["machine"]["device"] == "cpu" and rec["resolved_config"]["data"]["img_size"] == 112
    assert rec["epochs"] == 2 and rec["test"]["num_samples"] == 48
    assert (tmp_path / "results" / "TABLES.md").is_file()


def test_the_packaged_recipe_config_is_the_chosen_run() -> None:
    """``ferkit fit --config ferplus_recipe`` trains exactly what the README's recipe figure measured: the suite run
    ``RECIPE_RUN`` (its config plus its overrides) and the packaged config resolve to the same settings, apart from
    the logger's name and the quiet flags that the harness adds."""
    from benchmarks.harness import resolve_config
    from benchmarks.suites.ferplus_recipe import RECIPE_RUN, SUITE
    from ferkit.commands.lightning_cli import build_cli

    run = next(r for r in SUITE.runs if r.name == RECIPE_RUN)
    # a Namespace's items() are its leaves, under dotted keys
    measured = dict(build_cli(["--config", resolve_config(run.config), *run.overrides], run=False).config.items())
    packaged = dict(build_cli(["--config", "ferplus_recipe"], run=False).config.items())
    ignored = {"config", "trainer.logger.init_args.name", "trainer.enable_progress_bar", "trainer.enable_model_summary"}
    differ = {k: (measured.get(k), packaged.get(k)) for k in set(measured) | set(packaged)
              if k not in ignored and measured.get(k) != packaged.get(k)}
    assert not differ
    assert packaged["model.init_args.eval_flip"] is True and packaged["trainer.max_epochs"] == 60


def _probe_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel (package ``ferkit_probe``), installable with no index."""
    import zipfile

    folder.mkdir()
    whl = folder / "ferkit_probe-0.1-py3-none-any.whl"
    files = {"ferkit_probe/__init__.py": "VALUE = 1\n",
             "ferkit_probe-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: ferkit-probe\nVersion: 0.1\n",
             "ferkit_probe-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files["ferkit_probe-0.1.dist-info/RECORD"] = "".join(f"{n},,\n" for n in files) + "ferkit_probe-0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(whl, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return folder


def test_gpu_script_on_a_bare_machine_smoke(fake_ferplus, tmp_path: Path) -> None:
    """What a lent machine without a package index or the data gets: wheels installed from a folder, the packed FER+
    rows unpacked and used as the data, and the named runs side by side, each recorded as sharing the machine."""
    from benchmarks import device_data

    rng = np.random.default_rng(0)
    usages = ["Training"] * 120 + ["PublicTest"] * 24 + ["PrivateTest"] * 24
    votes = []
    for i in range(len(usages)):
        v = [0] * 10
        v[i % 8] = 8  # a clear majority of each of the 8 classes in turn
        v[int(rng.integers(0, 8))] += 2
        votes.append(v)
    root = fake_ferplus(usages, votes)
    packed = tmp_path / "packed"
    device_data.pack(root, packed, ("majority",), (8,))
    wheels = _probe_wheel(tmp_path / "wheels")
    work, results = tmp_path / "work", tmp_path / "results"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--smoke", "--wheels", str(wheels),
                          "--packed", str(packed), "--parallel", "--results", str(results), "--work-dir", str(work),
                          "--only", "avg_clean_s1", "arm_clean_s1"], capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (work / "site" / "ferkit_probe" / "__init__.py").is_file()
    assert (work / "fer2013" / "fer2013.csv").is_file()
    import json

    for name, method in (("avg_clean_s1", "avg_clean"), ("arm_clean_s1", "arm_clean")):
        rec = json.loads((results / "gpu.smoke" / f"{name}.json").read_text())
        assert rec["method"] == method and rec["cpu_lanes"] == 2 and rec["seed"] == 1
        assert rec["resolved_config"]["model"]["init_args"]["net"]["output_stride"] == 8
        assert str(work / "fer2013") in json.dumps(rec["resolved_config"]["data"])
