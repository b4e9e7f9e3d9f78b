"""The examples run, on tiny data (the tests execute the script and the notebook)."""
import os
import runpy
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def test_arm_train_script_tiny(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sys.path.insert(0, str(REPO / "examples"))
    try:
        mod = runpy.run_path(str(REPO / "examples/arm_train.py"))
        out = mod["main"](["--tiny", "--out", str(tmp_path)])
    finally:
        sys.path.remove(str(REPO / "examples"))
    assert out["test_samples"] == 32 and out["arm_features"] == 25  # the whole test split; 48 px -> 5 x 5 ARM map
    assert (Path(out["log_dir"]) / "metrics.csv").exists()


def test_arm_train_script_ferplus_tiny(tmp_path, monkeypatch, shared_data_dir):
    monkeypatch.chdir(tmp_path)
    mod = runpy.run_path(str(REPO / "examples/arm_train.py"))
    out = mod["main"](["--tiny", "--data", "ferplus", "--root", str(shared_data_dir / "fer2013"), "--out", str(tmp_path)])
    assert out["test_samples"] == 64 and out["arm_features"] == 25


def test_arm_notebook_tiny(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the notebook test needs the dev extra: pip install -e .[dev]")
    nbclient = pytest.importorskip("nbclient", reason="the notebook test needs the dev extra: pip install -e .[dev]")
    nb = nbformat.read(REPO / "examples/arm_quickstart.ipynb", as_version=4)
    monkeypatch.setenv("FERKIT_TINY", "1")
    monkeypatch.delenv("FERKIT_DATA", raising=False)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "IProgress not found" not in text and "RecursionError" not in text
    assert "out_features: 121" in text and "on 32 test images" in text
    assert "overall" in text and "mean-class" in text
    assert (tmp_path / "runs/notebook/confusion_matrix_test.png").exists()


def test_extend_method_example_runs_and_matches_the_guide():
    """docs/extending.md shows the class of examples/extend_method.py verbatim, and that class trains."""
    source = (REPO / "examples/extend_method.py").read_text()
    guide = (REPO / "docs/extending.md").read_text()
    cls = source[source.index("class ConfidentARM"):source.index("\n\n\ndef main")]
    shown = "\n".join(line for line in cls.splitlines() if not line.startswith(('    """', "    Args", "        hidden:", "        entropy_weight:", "    ARM with")))
    code = guide[guide.index("```python\n") + len("```python\n"):guide.index("```", guide.index("```python\n") + 10)]
    assert "\n".join(line for line in shown.splitlines() if line.strip()) == "\n".join(line for line in code.splitlines() if line.strip())
    out = runpy.run_path(str(REPO / "examples/extend_method.py"))["main"]()
    assert isinstance(out["head"], torch.nn.Sequential) and out["head"][0].out_features == 16
    assert out["hparams"]["entropy_weight"] == 0.2 and out["hparams"]["hidden"] == 16
    assert float(out["metrics"]["train/entropy"]) > 0 and "val/mean_class_acc" in out["metrics"]
