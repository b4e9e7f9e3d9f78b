"""The examples run, on tiny data (the tests execute the scripts and the notebooks)."""
import json
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


NOTEBOOK_SKIP = "the notebook tests need the notebooks extra: pip install -e .[notebooks] (the dev extra includes it)"


NOTEBOOKS = {"arm": "arm_quickstart.ipynb", "asm": "asm_noisy_labels.ipynb", "lanet": "lanet_landmarks.ipynb",
             "pasm": "pasm_generations.ipynb", "omni": "omni_distilled.ipynb"}


@pytest.fixture(scope="module")
def notebooks(request, tmp_path_factory) -> dict:
    """``key -> (the executed notebook or the error it raised, its outputs' text, the folder it ran in)`` for each
    selected notebook, executed with FERKIT_TINY=1.

    The notebooks are independent (each its own kernel process and folder) and run side by side in one event loop,
    one thread each: most of a tiny notebook's time is its kernel's single-threaded start-up, which the two cores
    overlap."""
    nbformat = pytest.importorskip("nbformat", reason=NOTEBOOK_SKIP)
    nbclient = pytest.importorskip("nbclient", reason=NOTEBOOK_SKIP)
    pytest.importorskip("ipykernel", reason=NOTEBOOK_SKIP)
    pytest.importorskip("matplotlib", reason=NOTEBOOK_SKIP)
    import asyncio

    selected = {item.name for item in request.session.items}
    keys = [k for k in NOTEBOOKS if f"test_{k}_notebook_tiny" in selected]
    books, clients = {}, {}
    for key in keys:
        nb = nbformat.read(REPO / "examples" / NOTEBOOKS[key], as_version=4)
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{NOTEBOOKS[key]} is committed with outputs"
        cwd = tmp_path_factory.mktemp(f"notebook_{key}")
        books[key] = (nb, cwd)
        # startup_timeout: five kernels start at once on two cores; nbclient's 60 s was once too short in a fresh
        # clone (the pasm kernel did not answer in time), so a kernel gets as long to start as a cell to run
        clients[key] = nbclient.NotebookClient(nb, timeout=300, startup_timeout=300, kernel_name="python3",
                                               resources={"metadata": {"path": str(cwd)}})

    async def run_all():
        return await asyncio.gather(*(c.async_execute() for c in clients.values()), return_exceptions=True)

    with pytest.MonkeyPatch.context() as mp:  # the kernels inherit this environment
        mp.setenv("FERKIT_TINY", "1")
        mp.setenv("MPLBACKEND", "Agg")
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.delenv("FERKIT_DATA", raising=False)
        outcomes = dict(zip(clients, asyncio.run(run_all())))
    out = {}
    for key, (nb, cwd) in books.items():
        text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        out[key] = (outcomes[key], text, cwd)
    return out


def run_notebook(key: str, notebooks: dict) -> tuple[str, Path]:
    """The outputs' text of notebook ``key`` and the folder it ran in; its failure, if it failed."""
    error, text, cwd = notebooks[key]
    if isinstance(error, BaseException):
        raise error
    assert "IProgress not found" not in text and "RecursionError" not in text
    return text, cwd


def test_arm_notebook_tiny(notebooks):
    text, tmp_path = run_notebook("arm", notebooks)
    assert "out_features: 121" in text and "on 32 test images" in text
    assert "overall" in text and "mean-class" in text
    assert (tmp_path / "runs/notebook/confusion_matrix_test.png").exists()
    assert (tmp_path / "runs/notebook/arm_weights.png").exists()
    s = json.loads((tmp_path / "runs/notebook/arm_summary.json").read_text())
    assert s["feat_size"] == 3 and s["out_size"] == 5 and s["test_samples"] == 32
    # 48 px -> a 3 x 3 map, arranged to 48 x 48, 16 x 16 windows every 8 px: a border cell is read by 24 of the
    # 32 kernel taps per axis that read an interior cell, so the corner gets (3/4)^2 of the centre's weight
    cov = torch.tensor(s["coverage"])
    assert torch.allclose(cov / cov[1, 1], torch.tensor([[0.5625, 0.75, 0.5625], [0.75, 1.0, 0.75], [0.5625, 0.75, 0.5625]]),
                          atol=1e-4)
    trained = torch.tensor(s["trained"])
    assert trained.shape == (3, 3) and abs(float(trained.mean()) - 1) < 1e-4 and bool((trained > 0).all())
    # the shared affinity's running mean saw the one training batch (64 faces, batch 64) and is not all zeros
    assert s["ema_batches"] == 1 and torch.tensor(s["affinity"]).shape == (5, 5) and torch.tensor(s["affinity"]).abs().sum() > 0


def test_asm_notebook_tiny(notebooks):
    text, tmp_path = run_notebook("asm", notebooks)
    out = tmp_path / "runs/asm_notebook"
    s = json.loads((out / "summary.json").read_text())
    assert s["num_train"] == 96 and s["test_samples"] == 32
    assert 0 < s["num_flipped"] < s["num_train"]            # 30 % symmetric noise on 96 faces
    # one row per mined epoch: epochs 2 and 3 after one warm-up epoch
    assert [r["epoch"] for r in s["history"]] == list(range(s["warmup"] + 1, s["epochs"] + 1))
    for r in s["history"]:
        assert sum(r["counts"].values()) == s["num_train"]   # every training sample judged, in exactly one subset
        assert abs(sum(r["fractions"].values()) - 1) < 1e-6
        assert all(n <= c for n, c in zip(r["t_noisy"], r["t_clean"])) and len(r["t_clean"]) == 7
        assert abs(r["flip_rate"] - s["num_flipped"] / s["num_train"]) < 1e-6
        # precision and recall count the same hits: precision x |noisy| = recall x |flipped|
        if r["counts"]["noisy"]:
            assert abs(r["noisy_precision"] * r["counts"]["noisy"] - r["noisy_recall"] * s["num_flipped"]) < 1e-6
        else:  # an empty noisy subset has no precision (NaN)
            assert r["noisy_precision"] != r["noisy_precision"]
    assert s["final_counts"] == list(s["history"][-1]["counts"].values())
    assert 0 < s["suspects_shown"] <= 7 * 4 and s["suspects_flipped"] <= s["suspects_shown"]
    assert s["sheet_shape"][0] > 7 * 32 and s["sheet_shape"][2] == 3   # seven class rows of 3x upscaled 32 px faces
    assert f"{s['suspects_shown']} suspects shown, {s['suspects_flipped']} of them really flipped" in text
    for png in ("split_per_epoch.png", "detection_per_epoch.png", "top_suspects.png"):
        assert (out / png).stat().st_size > 1000


def test_lanet_notebook_tiny(notebooks):
    _, tmp_path = run_notebook("lanet", notebooks)
    out = tmp_path / "runs/lanet_notebook"
    s = json.loads((out / "summary.json").read_text())
    assert s["num_train"] == 64 and s["test_samples"] == 16 and 0 < s["num_flipped"] < 64
    mem = s["memory"]
    assert [r["epoch"] for r in mem] == list(range(s["epochs"] + 1))   # the initial memory, then one per epoch
    # the memory starts as the one-hot given labels ...
    assert mem[0]["flipped_on_given"] == 1.0 and mem[0]["flipped_on_true"] == 0.0 and mem[0]["clean_on_given"] == 1.0
    assert mem[0]["flipped_argmax_given"] == 1.0 and mem[0]["clean_argmax_given"] == 1.0
    assert mem[0]["flip_auroc"] == 0.5   # every memory equal on its given label: the detector is at chance
    assert all(0.0 <= r["flip_auroc"] <= 1.0 for r in mem)
    # ... stays a distribution, and training moves the flipped samples' memory off their given label
    assert all(r["row_sum_max_err"] < 1e-4 for r in mem)
    assert mem[-1]["flipped_on_given"] < 1.0 and mem[-1]["flipped_on_true"] > 0.0
    # 19 LA-Net points, predicted and target heatmaps of the same size
    assert s["heatmap_shape"] == s["target_shape"] and s["heatmap_shape"][:2] == [4, 19]
    for png in ("memory_per_epoch.png", "heatmaps.png"):
        assert (out / png).stat().st_size > 1000


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


def test_the_guides_command_line_parses(monkeypatch, capsys):
    """The command docs/extending.md gives for the new class resolves it and its argument (parsed, not trained) when
    run from the repository root, with nothing added to the path by hand: the ``ferkit`` command looks in the folder
    it runs in (its console script's own path starts at the venv's ``bin``)."""
    import shlex

    from ferkit.cli import main

    guide = (REPO / "docs/extending.md").read_text()
    block = guide[guide.index("```bash\n") + len("```bash\n"):guide.index("```", guide.index("```bash\n") + 8)]
    line = next(ln for ln in block.splitlines() if "examples.extend_method" in ln)
    words = shlex.split(line)
    assert words[:2] == ["ferkit", "fit"]
    # the path a console script starts with: no entry for the repository root or the working folder
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p and Path(p).resolve() != REPO.resolve()])
    monkeypatch.delitem(sys.modules, "examples", raising=False)
    monkeypatch.delitem(sys.modules, "examples.extend_method", raising=False)
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as stop:
        main(words[1:] + ["--print_config"])
    assert stop.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "class_path: examples.extend_method.ConfidentARM" in printed and "entropy_weight: 0.1" in printed


def test_pasm_notebook_tiny(notebooks):
    text, tmp_path = run_notebook("pasm", notebooks)
    out = tmp_path / "runs/pasm_notebook"
    s = json.loads((out / "summary.json").read_text())
    # generation 0 is the CE baseline (no teacher); generation 1 is taught by generation 0's last checkpoint
    assert [r["generation"] for r in s["table"]] == [0, 1]
    assert s["table"][0]["teacher"] is None and s["table"][1]["teacher"].endswith("gen_0/version_0/checkpoints/last.ckpt")
    assert s["table"][0]["locate_seconds"] is None and s["table"][1]["locate_seconds"] > 0
    for r in s["table"]:
        assert all(0 <= r[k] <= 1 for k in ("val_acc", "val_mean_class_acc", "test_acc", "test_mean_class_acc"))
    assert "generation 0 (CE baseline)" in text and "generation 1 (PASM student)" in text
    assert "generation 1 - generation 0 on the test split" in text
    # one centre per training face; a fresh attack on the same teacher finds the stored centres again (in a batch of 4
    # instead of the centre pass's 64, so one near-tie of the density rule may go the other way)
    assert s["centres_shape"] == [s["num_train"], 2]
    assert s["relocated_total"] == 4 and s["relocated_equal"] >= 3
    # one validation point per epoch and generation, read from each generation's metrics.csv
    assert {g: [e for e, _ in c] for g, c in s["curves"].items()} == {"0": [1, 2], "1": [1, 2]}
    assert (out / "generations_tiny/centres_gen_1.pt").exists()
    assert s["sheet_shape"][0] > 7 * 32 and s["sheet_shape"][2] == 3   # seven class rows of 3x upscaled 32 px faces
    for png in ("attack_and_erasing.png", "informative_regions.png", "val_acc_per_epoch.png"):
        assert (out / png).stat().st_size > 1000


def test_omni_notebook_tiny(notebooks):
    text, tmp_path = run_notebook("omni", notebooks)
    out = tmp_path / "runs/omni_notebook"
    s = json.loads((out / "summary.json").read_text())
    # a quarter of the 128 training faces keep their labels (stratified, at least one per class); the rest is the pool
    assert s["num_labelled"] + s["num_pool"] == 128 and 7 <= s["num_labelled"] < 64
    # mining: every kept face counted once, in its pseudo-label's class; right ones are a part of them
    assert 0 < s["mined"] <= s["num_pool"] and sum(s["mined_per_class"]) == s["mined"]
    assert s["mined_right"] == sum(s["right_per_class"]) and all(r <= m for r, m in zip(s["right_per_class"], s["mined_per_class"]))
    assert len(s["tau_sim"]) == 7 and all(-1 <= t <= 1 for t in s["tau_sim"])
    # stricter similarity thresholds never keep more faces
    assert [c["quantile"] for c in s["curve"]] == [0.0, 0.25, 0.5, 0.75, 0.9]
    assert all(a["mined"] >= b["mined"] for a, b in zip(s["curve"], s["curve"][1:]))
    assert s["curve"][2]["mined"] == s["mined"]
    assert len((out / "mined.csv").read_text().splitlines()) == s["mined"] + 1   # header + one row per mined face
    # two distilled images per class, class-major; the Omni model carries them as buffers
    assert s["distilled_shape"] == [14, 3, 32, 32] and s["distilled_labels"] == [k for k in range(7) for _ in range(2)]
    assert s["omni_buffer_shape"] == s["distilled_shape"]
    assert s["omni_train_size"] == s["num_labelled"] + s["mined"]
    assert set(s["results"]) == {"CE", "Omni"} and all(r["num_samples"] == 32 for r in s["results"].values())
    assert "FERClassifier    " in text and "OmniClassifier   " in text and "Omni - CE:" in text
    assert f"mined {s['mined']} of {s['num_pool']} pool faces" in text
    assert s["grid_shape"][0] > 7 * 32 and s["grid_shape"][2] == 3
    for png in ("mining.png", "distilled.png", "ce/confusion_matrix_test.png", "omni/confusion_matrix_test.png"):
        assert (out / png).stat().st_size > 1000
    assert (out / "distilled.pt").exists()
