"""``ferkit demo``: train a method and its plain baseline from a packaged config and print both in one table.

The training is the CLI's own (``ferkit fit`` + ``ferkit test`` of the config's best checkpoint), once with the
config's model and once with :class:`ferkit.methods.FERClassifier` on the same network with average pooling
(same data, optimiser, schedule and epochs).
Any LightningCLI argument is passed through (``--trainer.max_epochs 2``, ``--data.img_size 48``, ...).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from ferkit.commands.lightning_cli import build_cli
from ferkit.methods import FERClassifier, FERModule

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


def _run(args: list[str], baseline: bool = False) -> dict[str, Any]:
    cli = build_cli(args=args, run=False)
    model = baseline_of(cli.model) if baseline else cli.model
    t0 = time.perf_counter()
    cli.trainer.fit(model, cli.datamodule)
    fit_s = time.perf_counter() - t0
    cli.trainer.test(model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)
    res = model.last_results["test"]
    return {"model": type(model).__name__, "pool": model.net.pool, "acc": round(100 * float(res["acc"]), 2),
            "mean_class_acc": round(100 * float(res["mean_class_acc"]), 2), "fit_seconds": round(fit_s, 1),
            "log_dir": cli.trainer.log_dir}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(prog="ferkit demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="demo", help="a packaged config name or a path (default: demo)")
    p.add_argument("--no-baseline", action="store_true", help="train the config's model only")
    a, rest = p.parse_known_args(argv)
    for arg in rest:
        flag = arg.split("=", 1)[0]
        if flag in _RENAMED:
            p.error(f"unrecognized argument {flag}: use {_RENAMED[flag]}")
        if flag.startswith("-") and not flag.startswith(("--trainer.", "--model.", "--data.", "--seed_everything")):
            p.error(f"unrecognized argument {flag}: pass LightningCLI arguments (--trainer.*, --model.*, --data.*)")
    results = [_run(["--config", a.config, *rest])]
    if not a.no_baseline:
        results.append(_run(["--config", a.config, *rest, "--trainer.logger.init_args.name=baseline"], baseline=True))
    print("\n" + "=" * 78)
    print(f"ferkit demo ({a.config}): test accuracy on held-out synthetic faces")
    print(f"  {'model':<16} {'pool':<6} {'overall %':>10} {'mean-class %':>13} {'fit s':>7}  outputs")
    for r in results:
        print(f"  {r['model']:<16} {r['pool']:<6} {r['acc']:>10.2f} {r['mean_class_acc']:>13.2f} {r['fit_seconds']:>7.0f}  {r['log_dir']}")
    print("=" * 78)
    out = Path(results[0]["log_dir"] or ".")
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_summary.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
