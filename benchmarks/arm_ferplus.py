"""FER+ test accuracy (majority labels) of ARM and of average pooling, trained identically.

Runs `configs/arm_ferplus.yaml` and `configs/avg_ferplus.yaml` through the same LightningCLI code path as
`ferkit fit`, then tests the best-on-validation checkpoint and the last one, and writes
`benchmarks/results/arm_ferplus.json`.

    python benchmarks/arm_ferplus.py                       # CPU configuration (see --epochs / --train-limit)
    python benchmarks/arm_ferplus.py --epochs 30 --accelerator gpu --img-size 96   # a fuller run on a GPU
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_ferplus_args, checkpoint_paths, environment, start_ferplus, test_record, val_history, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run_one(config: str, args, out_root: Path) -> dict:
    from ferkit.cli import build_cli

    cli_args = [
        "--config", str(REPO / "configs" / config),
        f"--trainer.max_epochs={args.epochs}", f"--trainer.accelerator={args.accelerator}",
        f"--trainer.logger.init_args.save_dir={out_root}", f"--trainer.enable_progress_bar={str(args.progress).lower()}",
        f"--data.root={args.root}", f"--seed_everything={args.seed}", f"--data.num_workers={args.workers}",
    ]
    if args.train_limit:
        cli_args.append(f"--data.train_limit={args.train_limit}")
    cli = build_cli(args=cli_args, run=False)
    model, dm, trainer = cli.model, cli.datamodule, cli.trainer
    t0 = time.perf_counter()
    trainer.fit(model, dm)
    fit_s = time.perf_counter() - t0
    result = {"config": config, "fit_seconds": round(fit_s, 1), "train_samples": len(dm.train_set),
              "val_history": val_history(trainer.logger.log_dir), "log_dir": trainer.logger.log_dir,
              "features": int(model.model.num_features), "params": sum(p.numel() for p in model.parameters())}
    for which, ckpt in checkpoint_paths(trainer).items():
        model.output_dir = str(Path(trainer.logger.log_dir) / f"test_{which}")
        trainer.test(model, datamodule=dm, ckpt_path=ckpt, verbose=False)
        result[f"test_{which}"] = {"checkpoint": ckpt, **test_record(model)}
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-limit", type=int, default=None, help="stratified training subset (default: all)")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--pools", default="avg,arm")
    add_ferplus_args(p, "arm_ferplus", "bench_ferplus")
    args = p.parse_args()
    start_ferplus(args)
    runs = {}
    for pool in args.pools.split(","):
        runs[pool] = run_one(f"{pool}_ferplus.yaml", args, Path(args.out_root))
        print(pool, runs[pool]["test_best"], runs[pool]["test_last"], flush=True)
    payload = {
        "benchmark": "FER+ test accuracy, majority labels, 8 classes, ARM vs average pooling (same backbone, recipe and seed)",
        "command": "python " + " ".join(sys.argv),
        "settings": {"epochs": args.epochs, "train_limit": args.train_limit, "seed": args.seed, "accelerator": args.accelerator,
                     "configs": [f"configs/{pool}_ferplus.yaml" for pool in runs]},
        "environment": environment(),
        "runs": runs,
        "selection": "test_best = checkpoint with the best validation (PublicTest) accuracy; test_last = last epoch; "
                     "the test split (PrivateTest) was never used for selection",
    }
    write_results(args.output, payload)


if __name__ == "__main__":
    main()
