"""``ferkit demo``: train a method and its plain baseline from a packaged config and print both in one table.

The default config (``demo``) is Omni on the embedded synthetic faces with a quarter of the labels: the baseline
(CE on the labelled quarter) mines the unlabelled rest, the labelled + mined faces are distilled into a few images per
class, and Omni trains on all of it for the same number of optimiser steps. ``--config demo_pasm`` trains PASM's
generation 1 against generation 0. Any other config trains its model and :class:`ferkit.methods.FERClassifier` on
the same network with average pooling (same data, optimiser, schedule and epochs). The training is the CLI's own
(``ferkit fit`` + ``ferkit test``). Any LightningCLI argument is passed through (``--trainer.max_epochs 2``, ...).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from ferkit.commands.lightning_cli import build_cli
from ferkit.methods import FERClassifier, FERModule, OmniClassifier, PASMClassifier

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


def _run(cli, baseline: bool = False, model: FERModule | None = None) -> dict[str, Any]:
    """Fit the CLI's model (or its :func:`baseline_of`, or ``model``), test its best checkpoint, return the row."""
    model = model if model is not None else baseline_of(cli.model) if baseline else cli.model
    t0 = time.perf_counter()
    cli.trainer.fit(model, cli.datamodule)
    fit_s = time.perf_counter() - t0
    cli.trainer.test(model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)
    res = model.last_results["test"]
    return {"model": type(model).__name__, "pool": model.net.pool, "acc": round(100 * float(res["acc"]), 2),
            "mean_class_acc": round(100 * float(res["mean_class_acc"]), 2), "fit_seconds": round(fit_s, 1),
            "log_dir": cli.trainer.log_dir, "val_acc": val_history(cli.trainer.log_dir),
            "val_step": val_history(cli.trainer.log_dir, key="step")}


def val_history(log_dir: str | Path | None, key: str = "val/acc") -> list[float]:
    """Validation accuracy (%) per epoch from a CSVLogger's ``metrics.csv`` (empty when there is none); with
    ``key="step"``, the optimiser step of each of those validations instead."""
    path = Path(log_dir or ".") / "metrics.csv"
    if not path.is_file():
        return []
    by_epoch: dict[int, float] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("val/acc") and row.get("epoch"):
                value = float(row[key]) if key == "step" else round(100 * float(row[key]), 2)
                by_epoch[int(float(row["epoch"]))] = value
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
    # runs whose epochs differ in length (Omni's training set is larger than its baseline's) share the step axis
    by_step = all(len(r.get("val_step") or []) == len(r["val_acc"]) > 0 for r in results)
    for r in results:
        x = r["val_step"] if by_step else list(range(1, len(r["val_acc"]) + 1))
        ax.plot(x, r["val_acc"], marker="o", label=f"{r['label']}: test {r['acc']:.1f} %")
    ax.set_xlabel("optimiser step" if by_step else "epoch")
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


#: Omni's demo mining: tau_sim of class k is the median cosine of the labelled class-k faces to their own prototype
#: (a briefly trained baseline is far less confident than the paper's, so ferkit's defaults 0.8 / 0.9 / 0.1 keep
#: almost nothing); the confidence and margin rules are loosened to match
OMNI_DEMO_MINING = {"quantile": 0.5, "tau_conf": 0.5, "margin": 0.01}
#: Omni's demo distillation: distribution matching, 4 images per class, 50 iterations
OMNI_DEMO_DISTILL = {"method": "distribution_matching", "ipc": 4, "iterations": 50, "batch_real": 32, "lr_img": 1.0}


def _run_omni(config: str, rest: list[str], cli) -> tuple[list[dict[str, Any]], Path]:
    """Omni: the CE baseline on the labelled part, mining of the pool with it, distillation, then Omni."""
    import torch
    from torch.utils.data import DataLoader

    from ferkit.data.manifest import ManifestRow, write_manifest
    from ferkit.methods.omni import DatasetCondensation, PoolEmbedder, labelled_features
    from ferkit.miners import PrototypeMiner

    source = cli.datamodule.source
    if not (hasattr(source, "has_split") and source.has_split("pool")):
        raise SystemExit(f"ferkit demo: {config} trains Omni without an unlabelled pool; give data.dataset an "
                         "OmniSource with labelled_fraction < 1")
    base = build_cli(args=["--config", config, *rest, "--trainer.logger.init_args.name=omni_baseline"], run=False)
    dm = base.datamodule  # the baseline's data: the labelled part, and the pool it mines
    primitive = baseline_of(cli.model)
    rows = [_run(base, model=primitive)]
    rows[0]["model"] = "CE (labelled only)"
    out = Path(cli.trainer.log_dir or _next_folder(Path("runs") / "demo" / "omni"))
    out.mkdir(parents=True, exist_ok=True)

    # mine the pool with the baseline's features and confidence
    primitive.eval()
    t0 = time.perf_counter()
    feats_l, labels_l = map(torch.cat, zip(*labelled_features(primitive, dm.judge_dataloader(preset="eval"))))
    pool = dm.source.build("pool", transform=dm.make_transform("eval", 0.0, "eval"))
    embedder = PoolEmbedder(primitive).eval()
    with torch.no_grad():
        feats_p, probs_p = map(torch.cat, zip(*(embedder.embed(b["image"]) for b in DataLoader(pool, batch_size=256))))
    m = OMNI_DEMO_MINING
    miner = PrototypeMiner(dm.num_classes, tau_sim=1.0, tau_conf=m["tau_conf"], margin=m["margin"]).fit(feats_l, labels_l)
    taus = miner.calibrate_tau_sim(feats_l, labels_l, m["quantile"]).tolist()
    mined = miner.mine(feats_p, probs_p)
    hidden = torch.as_tensor(pool.hidden_labels)
    right = int((hidden[mined.indices] == mined.pseudo_labels).sum())
    manifest = write_manifest(out / "mined.csv", [
        ManifestRow(f"pool:{i}", k, sim, conf, i) for i, k, sim, conf in
        zip(mined.indices.tolist(), mined.pseudo_labels.tolist(), mined.similarity.tolist(), mined.confidence.tolist())],
        dm.class_names)
    print(f"[ferkit demo] the baseline mined {len(mined)} of {len(pool)} unlabelled faces; {right} of their "
          f"pseudo-labels are right ({100 * right / max(len(mined), 1):.1f} %, scored against the pool's hidden labels)")

    # distil labelled + mined faces, then train Omni on labelled + mined + distilled for the same number of steps
    method_args = ["--config", config, *rest, f"--data.dataset.init_args.mined_manifest={manifest}"]
    probe = build_cli(args=[*method_args, "--trainer.logger=false"], run=False)
    probe.datamodule.setup("fit")
    to_distil = probe.datamodule.judge_dataloader(preset="eval").dataset
    condensed = DatasetCondensation(**OMNI_DEMO_DISTILL).run(to_distil, to_distil.labels, dm.class_names)
    condensed.save(out / "distilled.pt")
    prep_s = time.perf_counter() - t0
    print(f"[ferkit demo] distilled {len(to_distil)} faces into {tuple(condensed.images.shape)} "
          f"({condensed.info['seconds']:.0f} s); mining and distilling took {prep_s:.0f} s")
    method = build_cli(args=[*method_args, f"--model.init_args.distilled={out / 'distilled.pt'}",
                             f"--trainer.logger.init_args.version={out.name}"], run=False)
    with warnings.catch_warnings():
        # Omni logs into the folder that already holds its inputs (mined.csv, distilled.pt). Lightning's CSV logger
        # warns that "previous log files will be deleted"; it removes only an earlier metrics.csv, which this folder
        # does not have, so the warning would only alarm the reader
        warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
        row = _run(method)
    row["model"] = "Omni (+ mined, distilled)"
    row["fit_seconds"] = round(row["fit_seconds"] + prep_s, 1)
    rows.append(row)
    summary = {"labelled": len(dm.train_set), "pool": len(pool), "mined": len(mined), "mined_right": right,
               "mining": OMNI_DEMO_MINING, "tau_sim": taus, "distillation": OMNI_DEMO_DISTILL,
               "omni_train_set": len(probe.datamodule.train_set), "steps": int(cli.trainer.max_steps)}
    (out / "omni_demo.json").write_text(json.dumps(summary, indent=2))
    return rows, out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(prog="ferkit demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="demo", help="a packaged config name or a path (default: demo)")
    p.add_argument("--no-baseline", action="store_true", help="train the config's model only (not with PASM or Omni, "
                   "whose baseline is also their teacher or miner)")
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
    elif isinstance(cli.model, OmniClassifier) and not a.no_baseline:
        results, out = _run_omni(a.config, rest, cli)
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
    print(f"  {'model':<26} {'overall %':>10} {'mean-class %':>13} {'seconds':>8}  outputs")
    for r in results:
        print(f"  {r['model']:<26} {r['acc']:>10.2f} {r['mean_class_acc']:>13.2f} {r['fit_seconds']:>8.0f}  {r['log_dir']}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_summary.json").write_text(json.dumps(results, indent=2))
    for r in results:
        r["label"] = r["model"]
    fig = plot(results, out / "demo.png", f"ferkit demo ({a.config}): validation accuracy")
    print(f"  summary: {out / 'demo_summary.json'}" + (f"   plot: {fig}" if fig else ""))
    print("=" * 78)
    return results


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
