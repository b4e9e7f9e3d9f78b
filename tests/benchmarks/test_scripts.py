"""The stand-alone benchmark scripts (``benchmarks/*.py``) run on the current API: each one's ``--smoke`` mode runs in a
subprocess and writes a result file with the keys and the consistent contents of a real run.

The selected scripts run in two worker processes (one session fixture), each taking the next script not yet taken
and running it as ``__main__`` with its command line, as ``python benchmarks/<name>.py --smoke ...`` would, its output
going to its own log: most of a smoke run's time is importing torch, Lightning and timm, which each worker then pays
once instead of once per script. No test looks at a time. No smoke mode reads real data (the landmark script uses the
synthetic faces' own landmarks), so nothing skips.
"""
from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"
SCRIPTS = ("arm_speed", "synthetic_difficulty", "lanet_inference", "lanet_landmarks", "asm_rule_study",
           "asm_mining_overhead", "recipe_speed", "cpu_lanes", "arm_geometry", "lanet_memory_study", "small_map_gemm",
           "fused_optimizer", "channels_last_pool")

pytestmark = pytest.mark.slow


def _script(name: str) -> dict:
    """A script's module namespace, loaded in this process (for its constants and its argument checks)."""
    sys.path.insert(0, str(BENCH))
    try:
        return runpy.run_path(str(BENCH / f"{name}.py"), run_name=f"ferkit_bench_{name}")
    finally:
        sys.path.remove(str(BENCH))


# One worker: claims each script by creating ``<work>/.claimed`` (the other worker then passes it over), runs it as
# ``__main__`` in its own folder with its argv, stdout and stderr sent (at the file-descriptor level, so C extensions'
# and logging handlers' output too) to ``<work>/output.log``, and writes its exit status to ``<work>/exit_status``.
WORKER = r"""
import json, os, runpy, sys, traceback
bench, base, names = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path.insert(0, bench)  # as for `python benchmarks/<name>.py`: the script's folder comes first
for name in names:
    work = os.path.join(base, name)
    try:
        os.close(os.open(os.path.join(work, ".claimed"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        continue
    os.chdir(work)
    sys.argv = json.load(open(os.path.join(work, "argv.json")))
    sys.stdout.flush(); sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log = os.open(os.path.join(work, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1); os.dup2(log, 2)
    status = 0
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
        status = code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush(); sys.stderr.flush()
    os.dup2(saved[0], 1); os.dup2(saved[1], 2); os.close(log)
    with open(os.path.join(work, "exit_status"), "w") as f:
        f.write(str(status))
"""


@pytest.fixture(scope="session")
def smoke(request, tmp_path_factory) -> dict:
    """``name -> (returncode, output, result dict or None, work folder)`` of each selected script's ``--smoke`` run."""
    selected = {item.name for item in request.session.items}
    names = [n for n in SCRIPTS if f"test_{n}_smoke" in selected]
    base = tmp_path_factory.mktemp("bench_smoke")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TMPDIR": str(base)}  # TMPDIR: the smoke caches stay here
    for n in names:
        work = base / n
        work.mkdir()
        argv = [str(BENCH / f"{n}.py"), "--smoke", "--output", str(work / f"{n}.json")]
        if n == "lanet_landmarks":
            argv += ["--png", str(work / "landmarks.png")]
        (work / "argv.json").write_text(json.dumps(argv))
    from conftest import run_side_by_side

    worker = [sys.executable, "-c", WORKER, str(BENCH), str(base), *names]
    done = run_side_by_side({w: worker for w in range(min(2, len(names)))}, timeout=900, cwd=base, env=env)
    crashes = [f"a smoke worker exited with {rc}:\n{text[-3000:]}" for rc, text in done.values() if rc != 0]
    out = {}
    for n in names:
        work = base / n
        status = work / "exit_status"
        rc = int(status.read_text()) if status.is_file() else None
        text = (work / "output.log").read_text() if (work / "output.log").is_file() else "\n".join(crashes)
        path = work / f"{n}.json"
        out[n] = (rc, text, json.loads(path.read_text()) if path.is_file() else None, work)
    return out


def _result(smoke: dict, name: str) -> tuple[dict, Path]:
    rc, text, result, work = smoke[name]
    assert rc == 0, f"benchmarks/{name}.py --smoke failed (exit {rc}):\n{text[-4000:]}"
    assert result is not None and result["smoke"] is True
    return result, work


def test_arm_speed_smoke(smoke) -> None:
    r, _ = _result(smoke, "arm_speed")
    s = r["settings"]
    assert (s["batch_size"], s["repeats"], s["img_size"]) == (2, 2, 112)
    # ResNet-18 at 112 px: a 512 x 4 x 4 map; shuffle 16 -> 2 x 64 x 64; kernel 32, stride 8 -> 5 x 5 = 25 features
    assert s["feature_map"] == "512x4x4"
    assert (s["arm"]["arranged"], s["arm"]["out_features"]) == ("2x64x64", 25)
    assert r["params"]["arm"] != r["params"]["avg"]
    for model in ("avg", "arm"):
        for phase in ("train", "infer"):
            raw = r["raw_s"][model][phase]
            assert len(raw) == 2 and min(raw) > 0
            assert r["min_s"][model][phase] == round(min(raw), 5)
    for key in ("ratio_arm_over_avg", "ratio_arm_over_avg_min", "ratio_arm_over_avg_paired_median"):
        assert set(r[key]) == {"train", "infer"}


def test_synthetic_difficulty_smoke(smoke) -> None:
    r, work = _result(smoke, "synthetic_difficulty")
    assert [h["epoch"] for h in r["history"]] == [1]
    cm = np.asarray(r["confusion_matrix"])
    assert cm.shape == (7, 7) and cm.sum() == r["settings"]["test"] == 48
    assert r["final_test_acc"] == pytest.approx(np.trace(cm) / cm.sum())
    assert r["final_test_acc"] == r["history"][-1]["test_acc"]
    recall = cm.diagonal() / np.maximum(cm.sum(1), 1)
    assert list(r["per_class_recall"].values()) == pytest.approx(recall.round(4).tolist())
    assert len(r["per_class_recall"]) == 7 and r["generation_images_per_second"] > 0
    assert not list(work.glob("*.png"))  # no contact sheet unless asked for


def test_lanet_inference_smoke(smoke) -> None:
    r, _ = _result(smoke, "lanet_inference")
    (case,) = r["cases"]
    assert (case["img_size"], case["channels"], case["batch"]) == (32, 1, 2)
    # the export is the plain FERNet of the same depth; the training network carries the landmark branch as well
    assert case["same_architecture"] is True
    assert case["params_exported"] == case["params_plain"] < case["params_lanet_training_network"]
    assert r["environment"]["torch"]


def test_lanet_landmarks_smoke(smoke) -> None:
    r, work = _result(smoke, "lanet_landmarks")
    # the synthetic faces carry exact landmarks: every one of the 24 + 8 + 8 faces has them
    assert r["images"] == 40 and r["detector_found_face"] == 40
    assert r["failed_no_landmarks"] == r["fallback_box"] == 0 and r["failure_rate"] == 0.0
    assert {s: v["num_samples"] for s, v in r["splits"].items()} == {"train": 24, "val": 8, "test": 8}
    for split in r["splits"].values():
        assert split["synthetic"]["images"] == split["num_samples"] and split["synthetic"]["without_landmarks"] == 0
    png = Path(r["png"])
    assert png == work / "landmarks.png" and png.is_file()
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > 48 * 4  # 8 faces at 4x scale, plus borders


def test_asm_rule_study_smoke(smoke) -> None:
    r, _ = _result(smoke, "asm_rule_study")
    rules = _script("asm_rule_study")["RULES"]
    assert list(r["rules"]) == list(rules)
    n = r["train_samples"]
    assert n == 48 and r["checkpoint_global_step"] == 3  # one epoch of 48 faces in batches of 16
    assert 0 < r["flip_rate"] < 1  # asm_synthetic flips 30 % of the labels
    for name, rule in r["rules"].items():
        counts = rule["counts"]
        assert sum(counts.values()) == n, name
        for sub, total in counts.items():
            assert sum(rule["counts_per_class"][sub].values()) == total
        det = rule["detection"]
        assert det["flip_rate"] == pytest.approx(r["flip_rate"])
        # precision and recall count the same hits: precision x |noisy| = recall x |flipped|
        if counts["noisy"]:
            hits = det["noisy_recall"] * det["flip_rate"] * n
            assert det["noisy_precision"] * counts["noisy"] == pytest.approx(hits, abs=1e-6), name
        else:  # an empty noisy subset has no precision
            assert det["noisy_precision"] != det["noisy_precision"], name
        # per given class: the flip rates of the classes average (weighted by size) to the overall one
        per_class = rule["detection_per_class"]
        sizes = {c: sum(rule["counts_per_class"][sub][c] for sub in counts) for c in per_class}
        weighted = sum(per_class[c]["flip_rate"] * sizes[c] for c in per_class if sizes[c]) / n
        assert weighted == pytest.approx(r["flip_rate"], abs=1e-6)
    assert r["judged"] == "again, with the checkpoint's networks"
    assert all(0.0 <= v <= 1.0 for v in r["confidence_auroc_per_class"].values())
    # the fixed rule uses the base thresholds themselves
    assert list(r["rules"]["fixed (T_c=0.8, T_n=0.2)"]["t_clean"].values()) == pytest.approx([0.8] * 7)
    assert r["rules"]["man (argmax agreement)"]["miner"] == "man"


def test_asm_rule_study_stored_needs_a_mined_checkpoint(tmp_path, monkeypatch) -> None:
    """``--stored`` reads the probabilities of the last mining from the checkpoint; a warm-up checkpoint has none."""
    import tempfile

    # the smoke checkpoint goes to tempfile.gettempdir(), which caches its answer for the process: TMPDIR alone
    # would be ignored once anything has asked, and the 260 MB checkpoint would be left in the real /tmp
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    main = _script("asm_rule_study")["main"]
    with pytest.raises(SystemExit, match="stores no judged probabilities"):
        main(["--smoke", "--stored", "--output", str(tmp_path / "r.json")])


def test_asm_mining_overhead_smoke(smoke) -> None:
    r, _ = _result(smoke, "asm_mining_overhead")
    assert set(r["runs"]) == {"extra_pass", "train_forward"}
    for stats, run in r["runs"].items():
        assert run["train_samples"] == 32
        (epoch,) = run["per_epoch"]
        assert epoch["mined"] is True  # warm-up 0: epoch 1 is mined, so the asm_mining section was profiled
        assert 0 <= epoch["mining_seconds"] <= epoch["train_seconds"]
        assert run["mean_warmup_epoch_seconds"] is None
    # the extra pass judges all 32 faces; train_forward has no earlier epoch to take statistics from
    assert sum(r["runs"]["extra_pass"]["asm_split_last_epoch"].values()) == 32
    assert sum(r["runs"]["train_forward"]["asm_split_last_epoch"].values()) == 0


@pytest.mark.parametrize("name", SCRIPTS)
def test_smoke_never_writes_over_the_committed_results(name: str, capsys) -> None:
    main = _script(name)["main"]
    target = BENCH / "results" / f"{name}.json"
    before = target.read_bytes() if target.is_file() else None
    with pytest.raises(SystemExit) as err:
        main(["--smoke", "--output", str(target)])
    assert "committed" in str(err.value.code) and "--output" in str(err.value.code)
    assert (target.read_bytes() if target.is_file() else None) == before
    assert capsys.readouterr().out == ""  # refused at once, before any measurement printed a line


def test_missing_real_data_is_named(tmp_path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as err:
        _script("asm_mining_overhead")["main"](["--root", str(missing), "--output", str(tmp_path / "r.json")])
    assert str(missing) in str(err.value.code) and "FERKIT_SHARED_DATA" in str(err.value.code)
    with pytest.raises(SystemExit) as err:
        _script("lanet_landmarks")["main"](["--root", str(tmp_path), "--cache", str(missing),
                                           "--output", str(tmp_path / "r.json")])
    assert "ferkit landmarks extract" in str(err.value.code) and str(missing) in str(err.value.code)


def test_recipe_speed_smoke(smoke) -> None:
    r, _ = _result(smoke, "recipe_speed")
    rows = r["results"]
    assert {(x["precision"], x["memory_format"]) for x in rows} == {
        ("32-true", "contiguous"), ("32-true", "channels_last"), ("bf16-mixed", "contiguous"), ("bf16-mixed", "channels_last")}
    for x in rows:
        assert x["images_per_second"] > 0 and len(x["step_seconds"]) == r["repeats"]
        assert x["images_per_second"] == pytest.approx(x["batch_size"] / x["median_step_seconds"])
        if x["memory_format"] == "channels_last":  # paired with the contiguous run of the same setting
            twin = next(t for t in rows if t["memory_format"] == "contiguous" and t["precision"] == x["precision"])
            assert x["channels_last_speedup_paired_median"] == pytest.approx(
                twin["step_seconds"][0] / x["step_seconds"][0])


def test_small_map_gemm_smoke(smoke) -> None:
    r, _ = _result(smoke, "small_map_gemm")
    rows = {(x["precision"], x["small_map_gemm"]): x for x in r["results"]}
    assert set(rows) == {(p, g) for p in ("32-true", "bf16-mixed") for g in ("off", "on")} | {
        ("bf16-mixed", g) for g in ("on_unfold_order", "on_2x2_only", "on_6x6", "on_autograd_patches")}
    for (precision, policy), x in rows.items():  # each setting against the same precision without the path
        assert x["images_per_second"] == pytest.approx(2 / x["median_step_seconds"])
        off, on = rows[(precision, "off")], rows[(precision, "on")]
        assert x["speedup_vs_off_paired_median"] == pytest.approx(off["step_seconds"][0] / x["step_seconds"][0])
        assert x["speedup_vs_on_paired_median"] == pytest.approx(on["step_seconds"][0] / x["step_seconds"][0])
    # at 48 px with the standard stem, layers 3 (3 x 3 map) and 4 (2 x 2) take the matrix-product path in training:
    # their convolutions, and each first block's 1 x 1 downsample; without gradients layer 4 alone
    on_path, on_path_eval = r["convolutions_on_the_gemm_path"], r["convolutions_on_the_gemm_path_without_gradients"]
    assert (r["max_pixels"], r["max_pixels_with_grad"], r["memory_format"]) == (4, 9, "channels_last")
    assert sorted({n.split(".")[2] for n in on_path}) == ["layer3", "layer4"] and len(on_path) == 10
    assert on_path_eval == [n for n in on_path if ".layer4." in n] and len(on_path_eval) == 5
    # auto, as the layer decides it: never in fp32; in bf16 exactly where the CPU has AMX bf16
    assert r["auto"]["takes_the_gemm_path_in_fp32"] is False
    assert r["auto"]["takes_the_gemm_path_in_bf16"] is r["auto"]["amx_bf16"]
    ev = {x["small_map_gemm"]: x for x in r["evaluation"]}
    assert set(ev) == {"off", "on", "on_3x3"} and all(len(x["batch_seconds"]) == r["repeats"] for x in ev.values())
    assert ev["on"]["speedup_vs_off_paired_median"] == pytest.approx(
        ev["off"]["batch_seconds"][0] / ev["on"]["batch_seconds"][0])
    a = r["agreement"]
    assert a["fp32_logits_max_abs_diff"] <= 1e-4 * max(1.0, a["fp32_logits_max_abs"])
    assert a["fp32_grads_max_abs_diff"] <= 1e-4 * max(1.0, a["fp32_grads_max_abs"])


def test_fused_optimizer_smoke(smoke) -> None:
    r, _ = _result(smoke, "fused_optimizer")
    rows = {(x["setting"], x["fused"]): x for x in r["results"]}
    assert set(rows) == {(s, f) for s in ("noisy", "recipe") for f in (False, True)}
    for (setting, fused), x in rows.items():  # each kernel against the loop in the same setting
        assert x["images_per_second"] == pytest.approx(2 / x["median_step_seconds"])
        loop = rows[(setting, False)]
        assert x["speedup_vs_loop_paired_median"] == pytest.approx(loop["step_seconds"][0] / x["step_seconds"][0])
    assert rows[("noisy", True)]["optimizer"] == "Adam" and rows[("recipe", True)]["channels_last"] is True
    a = r["agreement"]  # the same update to float rounding: far below what the steps moved the weights
    for name in ("noisy", "recipe"):
        assert 0 < a[f"{name}_max_abs_change"] and a[f"{name}_max_abs_diff"] <= 1e-3 * a[f"{name}_max_abs_change"]


def test_channels_last_pool_smoke(smoke) -> None:
    r, _ = _result(smoke, "channels_last_pool")
    rows = {(x["setting"], x["channels_last_pool"]): x for x in r["results"]}
    assert set(rows) == {(s, e) for s in ("pool", "ce", "lanet") for e in (False, True)}
    for (setting, enabled), x in rows.items():  # each route against the plain pool in the same setting
        assert x["images_per_second"] == pytest.approx(2 / x["median_step_seconds"])
        plain = rows[(setting, False)]
        assert x["speedup_vs_plain_paired_median"] == pytest.approx(plain["step_seconds"][0] / x["step_seconds"][0])
    a = r["agreement"]  # the same maxima, and (random inputs, no ties) the same gradients, in the input's format
    for dtype in ("fp32", "bf16"):
        assert a[f"{dtype}_output_max_abs_diff"] == 0 and a[f"{dtype}_grad_max_abs_diff"] == 0
        assert a[f"{dtype}_output_is_contiguous"] is True


def test_cpu_lanes_smoke(smoke) -> None:
    r, _ = _result(smoke, "cpu_lanes")
    assert r["lanes"] >= 1 and set(r["images_per_second"]) == set(r["median_images_per_second"])
    assert all(len(v) == r["repeats"] and min(v) > 0 for v in r["images_per_second"].values())
    single, lanes = r["median_images_per_second"].values()
    assert r["lanes_over_single"] == pytest.approx(lanes / single)


def test_arm_geometry_smoke(smoke) -> None:
    r, _ = _result(smoke, "arm_geometry")
    rows = {(x["geometry"], x["pool"]): x for x in r["results"]}
    recipe = next(x for x in r["results"] if x["geometry"].startswith("recipe"))
    assert recipe["map"] == "2x2" and recipe["cost_vs_recipe"] == pytest.approx(1.0)
    # every other geometry reaches the 6x6 map ARM needs, with both pools, and ARM keeps 81 features there
    others = [x for x in r["results"] if not x["geometry"].startswith("recipe")]
    assert others and all(x["map"] == "6x6" for x in others)
    assert {x["pool"] for x in others} == {"avg", "arm"}
    assert all(x["features"] == (81 if x["pool"] == "arm" else 512) for x in others)
    assert all(len(x["step_seconds"]) == r["repeats"] for x in rows.values())


def test_lanet_memory_study_smoke(smoke) -> None:
    r, _ = _result(smoke, "lanet_memory_study")
    (study,) = r["checkpoints"]
    assert study["epoch"] == 1 and study["global_step"] == 3  # one epoch of 48 faces in batches of 16
    a = study["all"]
    assert a["samples"] == 48 and 0 < a["flipped"] < 48  # lanet_synthetic flips 30 % of the labels
    # after one visit at momentum 0.9 the memory keeps 0.9 of its one-hot start: every sample still ranks its given
    # label first, so the memory's arg-max is exactly as right as the given labels
    assert a["flipped_ranks_given_first"] == a["correct_ranks_given_first"] == 1.0
    assert a["memory_label_accuracy"] == a["given_label_accuracy"] == pytest.approx(1 - a["flipped"] / 48)
    assert a["flipped_mass_on_given"] >= 0.9 and a["correct_mass_on_given"] >= 0.9
    per_class = study["per_given_class"]
    assert sum(c["samples"] for c in per_class.values()) == 48
    assert sum(c["flipped"] for c in per_class.values()) == a["flipped"]
    counts = study["class_counts"]
    assert set(counts) == {"given", "clean", "memory_argmax"}
    assert all(sum(c.values()) == 48 for c in counts.values())
    assert counts["memory_argmax"] == counts["given"]  # the memory still ranks every given label first
    mass = study["class_mass"]
    assert sum(mass["memory_mean"].values()) == pytest.approx(1.0)  # every memory row is a distribution
    # one visit keeps 0.9 of the one-hot start: the class given to any sample holds at least 0.9 of its memory
    assert all(mass["memory_max"][c] >= 0.9 for c, n in counts["given"].items() if n > 0)
    assert study["alignment"] is None  # lanet_synthetic runs without class-prior alignment


def test_lanet_memory_study_reads_the_alignment_buffers() -> None:
    import torch

    sys.path.insert(0, str(REPO))
    try:
        study = runpy.run_path(str(REPO / "benchmarks" / "lanet_memory_study.py"), run_name="ferkit_bench_memory")
    finally:
        sys.path.remove(str(REPO))
    sd = {"lde.align_prior": torch.tensor([0.75, 0.25]), "lde.align_running": torch.tensor([0.8, 0.2])}
    assert study["alignment_state"](sd, ["a", "b"]) == {"prior": {"a": 0.75, "b": 0.25},
                                                        "running_estimate": {"a": pytest.approx(0.8),
                                                                             "b": pytest.approx(0.2)}}
    assert study["alignment_state"]({}, ["a", "b"]) is None
