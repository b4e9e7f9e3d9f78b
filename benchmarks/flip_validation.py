"""Validation accuracy of a finished suite run's chosen checkpoint with and without flip averaging at evaluation.

Flip averaging (``--model.init_args.eval_flip true``: the softmax of each face and of its mirror image, averaged) costs
nothing in training and twice the evaluation. Whether to use it is a choice, so it is measured on the validation split
only: this script validates the run's best-on-validation checkpoint twice through ``ferkit validate`` (with the run's
own arguments, from its ``state.json``), once plain and once with flip averaging, and writes both scores. It never
touches the test split. The pass evaluated as the run evaluated itself (plain, or flip-averaged for a run trained with
``eval_flip``) must reproduce the record's selection score; the script says so if it does not (a changed checkpoint
or data). Each pass checks, in the configuration ``ferkit validate`` saved, that it really ran with the ``eval_flip``
it asked for.

    python benchmarks/flip_validation.py ferplus_recipe soft_votes_s0
    # -> benchmarks/results/flip_validation/ferplus_recipe__soft_votes_s0.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import RESULTS, environment, write_results  # noqa: E402
from benchmarks.harness import DEFAULT_RESULTS, DEFAULT_WORK, call_ferkit, read_csv_metrics, read_state, \
    resolve_config  # noqa: E402

OUT_DIR = RESULTS / "flip_validation"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("suite")
    p.add_argument("run", help="a finished (fitted) run of the suite, e.g. soft_votes_s0")
    p.add_argument("--work-dir", default=str(DEFAULT_WORK), help="the harness's run folders (default: %(default)s)")
    p.add_argument("--results", default=str(DEFAULT_RESULTS), help="the records (default: %(default)s)")
    p.add_argument("--output", default=None, help="default: benchmarks/results/flip_validation/<suite>__<run>.json")
    return p.parse_args(argv)


def read_val_metrics(folder: Path) -> dict[str, float]:
    """The ``val/*`` values that ``ferkit validate`` logged under ``folder`` (its CSV logger)."""
    values = read_csv_metrics(folder, "val/")
    if "val/acc" not in values:
        raise SystemExit(f"ferkit validate logged no val/acc under {folder}")
    return values


def validate(args: list[str], ckpt: str, flip: bool, scratch: Path) -> tuple[dict[str, float], float]:
    folder = scratch / ("flip" if flip else "plain")
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(folder), "name": "v"}}
    cmd = ["validate", *args, "--trainer.logger", json.dumps(logger), "--trainer.default_root_dir", str(folder),
           "--ckpt_path", ckpt, "--model.init_args.eval_flip", "true" if flip else "false"]
    folder.mkdir(parents=True, exist_ok=True)
    rc, seconds = call_ferkit(cmd, folder / "validate.log", env=None)
    if rc != 0:
        log = (folder / "validate.log").read_text(errors="replace").splitlines()[-20:]
        raise SystemExit(f"ferkit validate exited with {rc}:\n" + "\n".join(log))
    used = used_eval_flip(folder)
    if used is not flip:
        raise SystemExit(f"ferkit validate evaluated with eval_flip={used} although {flip} was asked: the checkpoint's "
                         "hyper-parameters won over the command line (see ferkit.commands.lightning_cli)")
    return read_val_metrics(folder), seconds


def used_eval_flip(folder: Path) -> bool | None:
    """The ``eval_flip`` that ``ferkit validate`` really used: its saved ``config.yaml`` (after the checkpoint's
    hyper-parameters were applied); None when no config was saved."""
    import yaml

    for path in sorted(folder.rglob("config.yaml")):
        model = (yaml.safe_load(path.read_text()) or {}).get("model") or {}
        return bool((model.get("init_args") or model).get("eval_flip", False))
    return None


def trained_with_flip(ckpt: str | Path) -> bool:
    """Whether the run evaluated itself (and so chose this checkpoint) with flip averaging: the checkpoint's own
    ``eval_flip`` hyper-parameter, whether a config file or the command line set it (absent in checkpoints written
    before the option existed: False)."""
    import torch

    hparams = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True).get("hyper_parameters") or {}
    return bool(hparams.get("eval_flip", False))


def run_args(state: dict, record_path: Path) -> list[str]:
    """The arguments the run was fitted and tested with: ``state.json`` keeps them for runs begun since it did; for
    older runs, the record's config and overrides (the same arguments, as the harness gave them)."""
    if state.get("args"):
        return list(state["args"])
    if not record_path.is_file():
        raise SystemExit(f"neither the run's state.json nor its record {record_path} holds its arguments")
    record = json.loads(record_path.read_text())
    return ["--config", resolve_config(record["config"]), *record["overrides"]]


def measure(suite: str, run: str, work_dir: Path, results_dir: Path = DEFAULT_RESULTS) -> dict:
    run_dir = work_dir / suite / run
    state = read_state(run_dir)
    if state["phase"] not in ("fitted", "tested", "done") or not state.get("best_checkpoint"):
        raise SystemExit(f"{suite}/{run} has not finished fitting (phase {state['phase']!r} in {run_dir / 'state.json'})")
    ckpt, args = state["best_checkpoint"], run_args(state, results_dir / suite / f"{run}.json")
    if not Path(ckpt).is_file():
        raise SystemExit(f"{suite}/{run}: its chosen checkpoint {ckpt} is missing")
    # the two passes are independent processes: side by side, one's start-up overlaps the other's work
    with tempfile.TemporaryDirectory(prefix="ferkit_flip_") as tmp, ThreadPoolExecutor(max_workers=2) as pool:
        (plain, t_plain), (flip, t_flip) = pool.map(lambda f: validate(args, ckpt, f, Path(tmp)), (False, True))
    recorded, chose_with_flip = state.get("selected_value"), trained_with_flip(ckpt)
    result = {
        "suite": suite, "run": run, "checkpoint": Path(ckpt).name, "epoch": state.get("selected_epoch"),
        "split": "validation", "recorded_val_acc": recorded, "selected_with_flip": chose_with_flip,
        "plain": plain, "flip": flip, "gain_acc_points": round(100 * (flip["val/acc"] - plain["val/acc"]), 2),
        "seconds": {"plain": round(t_plain, 1), "flip": round(t_flip, 1), "side_by_side": True},
        "environment": environment(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    same = flip if chose_with_flip else plain  # the pass evaluated as the run evaluated itself
    if recorded is not None and abs(same["val/acc"] - recorded) > 1e-4:
        print(f"warning: the {'flip-averaged' if chose_with_flip else 'plain'} validation accuracy {same['val/acc']:.4f} "
              f"differs from the recorded selection score {recorded:.4f}: the checkpoint or the data changed since the "
              "run chose it", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    result = measure(a.suite, a.run, Path(a.work_dir), Path(a.results))
    print(f"{a.suite}/{a.run}, epoch {result['epoch']} checkpoint, validation accuracy: "
          f"{100 * result['plain']['val/acc']:.2f} % plain, {100 * result['flip']['val/acc']:.2f} % with flip averaging")
    write_results(a.output or OUT_DIR / f"{a.suite}__{a.run}.json", result)


if __name__ == "__main__":
    main()
