"""``ferkit demo``: train a method and its plain baseline from a packaged config and print both in one table.

The training is the CLI's own (``ferkit fit`` + ``ferkit test`` of the config's best checkpoint), once with the
config's model and once with :class:`ferkit.methods.FERClassifier` on the same network with average pooling
(same data, optimiser, schedule and epochs).
Any LightningCLI argument is passed through (``--trainer.max_epochs 2``, ``--data.img_size 48``, ...).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from ferkit.commands.lightning_cli import build_cli
from ferkit.methods import FERClassifier, FERModule, PASMClassifier

# the old demo's flags and the CLI arguments that replace them
_RENAMED = {"--img-size": "--data.img_size N (and --data.dataset.init_args.image_size N)", "--epochs": "--trainer.max_epochs N",
            "--small-input": "--model.init_args.net.small_input true", "--num-train": "--data.dataset.init_args.num_train N",
            "--backbone": "--model.init_args.net.backbone NAME", "--batch-size": "--data.batch_size N",
            "--seed": "--seed_everything N", "--no-progress": "--trainer.enable_progress_bar false"}


def baseline_of(model: FERModule) -> FERClassifier:
    """The plain baseline of ``model``: the same network with average pooling, CE, the same optimiser and schedule."""
    h = model.hparams
    return FERClassifier(net=dataclasses.replace(model.net, pool="avg", pool_kwargs=None), num_classes=h.num_classes,
                         class_names=list(model.class_names), in_chans=h.in_chans, img_size=h.img_size,
                         optimizer=model.optimizer_factory, scheduler=model.scheduler_factory,
                         label_smoothing=h.label_smoothing)


def _run(cli, baseline: bool = False) -> dict[str, Any]:
    """Fit the CLI's model (or its :func:`baseline_of`), test its best checkpoint, return the table row."""
    model = baseline_of(cli.model) if baseline else cli.model
    t0 = time.perf_counter()
    cli.trainer.fit(model, cli.datamodule)
    fit_s = time.perf_counter() - t0
    cli.trainer.test(model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)
    res = model.last_results["test"]
    return {"model": type(model).__name__, "pool": model.net.pool, "acc": round(100 * float(res["acc"]), 2),
            "mean_class_acc": round(100 * float(res["mean_class_acc"]), 2), "fit_seconds": round(fit_s, 1),
            "log_dir": cli.trainer.log_dir, "val_acc": val_history(cli.trainer.log_dir)}


def val_history(log_dir: str | Path | None) -> list[float]:
    """Validation accuracy (%) per epoch from a CSVLogger's ``metrics.csv`` (empty when there is none)."""
    path = Path(log_dir or ".") / "metrics.csv"
    if not path.is_file():
        return []
    by_epoch: dict[int, float] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("val/acc") and row.get("epoch"):
                by_epoch[int(float(row["epoch"]))] = round(100 * float(row["val/acc"]), 2)
    return [by_epoch[e] for e in sorted(by_epoch)]


def plot(results: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Validation accuracy per epoch of every model on one figure, test accuracy in the legend (needs matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: matplotlib is not installed; pip install matplotlib, or ferkit[notebooks])")
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for r in results:
        ep = list(range(1, len(r["val_acc"]) + 1))
        ax.plot(ep, r["val_acc"], marker="o", label=f"{r['label']}: test {r['acc']:.1f} %")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _next_folder(root: Path) -> Path:
    n = 0
    while (root / f"version_{n}").exists():
        n += 1
    return root / f"version_{n}"


def _run_pasm(config: str, rest: list[str], pool: str) -> tuple[list[dict[str, Any]], Path]:
    """PASM: generation 0 (CE: the baseline) and generation 1 (the student), via :func:`run_generations`."""
    from ferkit.commands.pasm import run_generations

    out = _next_folder(Path("runs") / "demo" / "pasm")
    summary = run_generations(config, 1, out, rest)
    rows = []
    for g, label in ((0, "CE (generation 0)"), (1, "PASM (generation 1)")):
        r = summary["generations"][str(g)]
        log_dir = str(out / f"gen_{g}" / "version_0")
        rows.append({"model": label, "pool": pool, "acc": round(100 * r["test"]["test/acc"], 2),
                     "mean_class_acc": round(100 * r["test"]["test/mean_class_acc"], 2),
                     "fit_seconds": round(r["fit_seconds"] + r.get("locate_seconds", 0.0), 1), "log_dir": log_dir,
                     "val_acc": val_history(log_dir)})
    return rows, out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(prog="ferkit demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="demo", help="a packaged config name or a path (default: demo)")
    p.add_argument("--no-baseline", action="store_true", help="train the config's model only (not with PASM, whose "
                   "baseline, generation 0, is also its teacher)")
    a, rest = p.parse_known_args(argv)
    for arg in rest:
        flag = arg.split("=", 1)[0]
        if flag in _RENAMED:
            p.error(f"unrecognized argument {flag}: use {_RENAMED[flag]}")
        if flag.startswith("-") and not flag.startswith(("--trainer.", "--model.", "--data.", "--seed_everything")):
            p.error(f"unrecognized argument {flag}: pass LightningCLI arguments (--trainer.*, --model.*, --data.*)")
    cli = build_cli(args=["--config", a.config, *rest], run=False)
    if isinstance(cli.model, PASMClassifier):  # its generations train through `ferkit pasm`, each with its own CLI
        results, out = _run_pasm(a.config, rest, pool=cli.model.net.pool)
    else:
        results = [_run(cli)]
        if not a.no_baseline:
            base = build_cli(args=["--config", a.config, *rest, "--trainer.logger.init_args.name=baseline"], run=False)
            results.append(_run(base, baseline=True))
        for r in results:
            r["model"] = f"{r['model']} ({r['pool']})"
        out = Path(results[0]["log_dir"] or ".")
    print("\n" + "=" * 78)
    print(f"ferkit demo ({a.config}): test accuracy on held-out synthetic faces")
    print(f"  {'model':<22} {'overall %':>10} {'mean-class %':>13} {'seconds':>8}  outputs")
    for r in results:
        print(f"  {r['model']:<22} {r['acc']:>10.2f} {r['mean_class_acc']:>13.2f} {r['fit_seconds']:>8.0f}  {r['log_dir']}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_summary.json").write_text(json.dumps(results, indent=2))
    for r in results:
        r["label"] = r["model"]
    fig = plot(results, out / "demo.png", f"ferkit demo ({a.config}): validation accuracy per epoch")
    print(f"  summary: {out / 'demo_summary.json'}" + (f"   plot: {fig}" if fig else ""))
    print("=" * 78)
    return results


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
