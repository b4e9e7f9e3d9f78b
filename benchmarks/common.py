"""Shared helpers for benchmark scripts: environment record and result files."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def environment() -> dict:
    import lightning
    import numpy
    import timm
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    return {
        "python": sys.version.split()[0], "torch": torch.__version__, "lightning": lightning.__version__,
        "timm": timm.__version__, "numpy": numpy.__version__, "platform": platform.platform(), "cpu": cpu,
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": commit, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def write_results(path: str | Path, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path


def val_history(log_dir: str | Path) -> list[dict]:
    """Per-epoch validation accuracy (%) from a CSVLogger's ``metrics.csv`` (1-based epochs)."""
    import csv

    path = Path(log_dir) / "metrics.csv"
    out = []
    if path.exists():
        for row in csv.DictReader(path.open()):
            if row.get("val/acc"):
                rec = {"epoch": int(row["epoch"]) + 1, "val_acc": round(100 * float(row["val/acc"]), 2)}
                if row.get("val/mean_class_acc"):
                    rec["val_mean_class_acc"] = round(100 * float(row["val/mean_class_acc"]), 2)
                out.append(rec)
    return out


def checkpoint_paths(trainer) -> dict[str, str]:
    """``{"best": ..., "last": ...}`` over all of the trainer's ModelCheckpoint callbacks.

    The configs keep two: a monitored one (the best epoch) and an unmonitored one whose ``last.ckpt`` is rewritten every
    epoch (a monitored callback only rewrites it when the metric improves). Read them before testing: testing a checkpoint
    restores the callback state saved in it.
    """
    best = last = ""
    for cb in trainer.checkpoint_callbacks:
        if cb.monitor and cb.best_model_path and not best:
            best = cb.best_model_path
        if cb.last_model_path:
            last = cb.last_model_path
    return {"best": best or last, "last": last or best}


def test_record(model) -> dict:
    """The test accuracy (%) a ferkit classifier recorded in ``last_results`` after ``trainer.test``."""
    r = model.last_results["test"]
    return {"acc": round(100 * float(r["acc"]), 2), "mean_class_acc": round(100 * float(r["mean_class_acc"]), 2),
            "num_samples": int(r["num_samples"])}


def add_ferplus_args(parser, result: str, runs_dir: str) -> None:
    """The arguments every FER+ benchmark takes: data root, device and threads, seed, progress bar, and where the runs
    (``runs/<runs_dir>``) and the result file (``benchmarks/results/<result>.json``) go."""
    repo = Path(__file__).resolve().parents[1]
    parser.add_argument("--root", default=str(repo.parent / "shared/data/fer2013"),
                        help="the folder with fer2013.csv(.gz) and fer2013new.csv")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out-root", default=str(repo / "runs" / runs_dir))
    parser.add_argument("--output", default=str(repo / "benchmarks" / "results" / f"{result}.json"))


def start_ferplus(args) -> None:
    """Stop with a clear message when the FER+ files are missing; set the CPU thread count."""
    if not Path(args.root).exists():
        sys.exit(f"FER+ data not found at {args.root}: pass --root (the folder with fer2013.csv(.gz) and fer2013new.csv)")
    import torch

    if args.accelerator == "cpu":
        torch.set_num_threads(args.threads)
