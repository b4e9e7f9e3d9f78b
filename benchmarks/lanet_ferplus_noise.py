"""FER+ test accuracy under symmetric label noise: LA-Net vs the CE baseline trained the same way.

Runs ``configs/ce_ferplus_noisy_lanet.yaml`` (LA-Net's module with every auxiliary loss at weight 0: cross-entropy on
the expression path) and ``configs/lanet_ferplus.yaml`` through the same LightningCLI code path as ``ferkit fit``,
with identical overrides (epochs, stratified training subset, noise rate and seed), then tests the best-on-validation
and the last checkpoint on the FER+ test split, and writes ``benchmarks/results/lanet_ferplus_noise.json``.

Needs the landmark cache (``python -m ferkit.landmarks extract --dataset fer2013 ... --out ~/.cache/ferkit/landmarks/``).

    python benchmarks/lanet_ferplus_noise.py --epochs 6 --train-limit 10000       # CPU configuration
    python benchmarks/lanet_ferplus_noise.py --epochs 40 --accelerator gpu          # a fuller run on a GPU
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_ferplus_args, checkpoint_paths, environment, start_ferplus, test_record, val_history, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"ce": "ce_ferplus_noisy_lanet.yaml", "lanet": "lanet_ferplus.yaml"}


def run_one(name: str, args: argparse.Namespace, out_root: Path) -> dict:
    import numpy as np

    from ferkit.cli import build_cli

    cli_args = [
        "--config", str(REPO / "configs" / CONFIGS[name]),
        f"--trainer.max_epochs={args.epochs}", f"--trainer.accelerator={args.accelerator}",
        f"--trainer.logger.init_args.save_dir={out_root}", f"--trainer.enable_progress_bar={str(args.progress).lower()}",
        f"--data.root={args.root}", f"--seed_everything={args.seed}", f"--data.num_workers={args.workers}",
        f"--data.label_noise={args.noise}", f"--data.noise_seed={args.noise_seed}", f"--data.landmarks_cache={args.landmarks}",
        f"--data.img_size={args.img_size}",
    ]
    if args.train_limit:
        cli_args.append(f"--data.train_limit={args.train_limit}")
    if args.eval_limit:  # quick checks only: results on a subset are not comparable to the full test split
        cli_args += [f"--data.val_limit={args.eval_limit}", f"--data.test_limit={args.eval_limit}"]
    cli = build_cli(args=cli_args, run=False)
    model, dm, trainer = cli.model, cli.datamodule, cli.trainer
    t0 = time.perf_counter()
    trainer.fit(model, dm)
    fit_s = time.perf_counter() - t0
    train = dm.train_set
    clean, noisy = np.asarray(train.clean_labels), np.asarray(train.labels)
    result = {
        "config": f"configs/{CONFIGS[name]}", "fit_seconds": round(fit_s, 1), "train_samples": len(train),
        "realised_noise_rate": round(float((clean != noisy).mean()), 4), "val_history": val_history(trainer.logger.log_dir),
        "log_dir": trainer.logger.log_dir,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    if model.uses_auxiliary_losses:
        memory = model.lde_bank.memory.cpu()
        result["memory_argmax_equals_clean_label"] = round(float((memory.argmax(1).numpy() == clean).mean()), 4)
        result["memory_argmax_equals_noisy_label"] = round(float((memory.argmax(1).numpy() == noisy).mean()), 4)
        lm = getattr(train, "landmarks", None)
        if lm is not None:
            result["train_samples_without_landmarks"] = int((~np.isfinite(lm).all(axis=(1, 2))).sum())
    for which, ckpt in checkpoint_paths(trainer).items():  # both paths are read before the first test
        trainer.test(model, datamodule=dm, ckpt_path=ckpt, verbose=False)
        result[f"test_{which}"] = {"checkpoint": ckpt, **test_record(model)}
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--landmarks", default="~/.cache/ferkit/landmarks/", help="landmark cache folder or file")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--train-limit", type=int, default=10000, help="stratified training subset (0: all)")
    p.add_argument("--img-size", type=int, default=48)
    p.add_argument("--eval-limit", type=int, default=None, help="quick checks: stratified val/test subsets")
    p.add_argument("--noise", type=float, default=0.3)
    p.add_argument("--noise-seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--methods", default="ce,lanet")
    add_ferplus_args(p, "lanet_ferplus_noise", "bench_lanet_ferplus")
    args = p.parse_args()
    start_ferplus(args)
    runs = {}
    for name in args.methods.split(","):
        runs[name] = run_one(name, args, Path(args.out_root))
        print(name, runs[name]["test_best"], runs[name]["test_last"], flush=True)
        payload = {
            "benchmark": f"FER+ test accuracy (majority labels, 8 classes) with {int(100 * args.noise)} % symmetric label noise "
                         "on the training split: LA-Net vs cross-entropy, same network path, data, optimiser, schedule and seed",
            "command": "python " + " ".join(sys.argv),
            "settings": {"epochs": args.epochs, "train_limit": args.train_limit, "eval_limit": args.eval_limit, "img_size": args.img_size,
                         "noise": args.noise, "noise_seed": args.noise_seed, "seed": args.seed,
                         "accelerator": args.accelerator, "threads": args.threads},
            "environment": environment(),
            "runs": runs,
            "selection": "test_best = checkpoint with the best validation (PublicTest, clean labels) accuracy; "
                         "test_last = last epoch; the test split (PrivateTest) was never used for selection",
        }
        write_results(args.output, payload)  # after every run, so a partial result survives


if __name__ == "__main__":
    main()
