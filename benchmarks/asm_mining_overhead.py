"""What ASM's mining costs per epoch, for both statistics options, as a fraction of the epoch's training time.

* ``stats=extra_pass`` (the paper): a no-grad, eval-mode pass of both networks over the training set at the start of
  every epoch after warm-up, then thresholds and split;
* ``stats=train_forward``: the softmax of the training forward passes is accumulated by index during epoch e-1
  (a copy of B x 2 x C probabilities per step), then thresholds and split at the start of epoch e.

Both runs use ``configs/asm_ferplus.yaml`` (FER+, 48 px grayscale, two ResNet-18s, batch 64) on a smaller training
subset for a few epochs; ``mining_seconds`` is the time spent in the miner (pass, accumulation, thresholds, split) and
``train_seconds`` the epoch's training time including it (validation excluded). Writes
``benchmarks/results/asm_mining_overhead.json``.

    flock /tmp/ferkit_heavy.lock python benchmarks/asm_mining_overhead.py
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run(stats: str, args) -> dict:
    from ferkit.cli import build_cli

    cli_args = ["--config", str(REPO / "configs/asm_ferplus.yaml"), f"--data.root={args.root}",
                f"--data.train_limit={args.train_limit}", f"--trainer.max_epochs={args.epochs}",
                f"--model.init_args.warmup_epochs={args.warmup}", f"--model.init_args.stats={stats}",
                f"--trainer.accelerator={args.accelerator}", "--trainer.limit_val_batches=0", "--trainer.logger=false",
                "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]", "--trainer.enable_progress_bar=false",
                f"--seed_everything={args.seed}"]
    cli = build_cli(args=cli_args, run=False)
    model, dm, trainer = cli.model, cli.datamodule, cli.trainer
    t0 = time.perf_counter()
    trainer.fit(model, dm)
    fit_s = time.perf_counter() - t0
    per_epoch = []
    for e in model.mining_history:
        if "timing" not in e:
            continue
        t = e["timing"]
        per_epoch.append({"epoch": e["epoch"], "mined": t["mined"], "train_seconds": round(t["train_seconds"], 2),
                          "mining_seconds": round(t["mining_seconds"], 3), "mining_fraction": round(t["mining_fraction"], 4)})
    mined = [p for p in per_epoch if p["mined"]]
    warm = [p for p in per_epoch if not p["mined"]]
    return {
        "stats": stats, "fit_seconds": round(fit_s, 1), "train_samples": len(dm.train_set), "per_epoch": per_epoch,
        "mean_mining_seconds_per_mined_epoch": round(sum(p["mining_seconds"] for p in mined) / max(len(mined), 1), 3),
        "mean_mining_fraction_of_mined_epoch": round(sum(p["mining_fraction"] for p in mined) / max(len(mined), 1), 4),
        "mean_warmup_epoch_seconds": round(sum(p["train_seconds"] for p in warm) / max(len(warm), 1), 2) if warm else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(REPO.parent / "shared/data/fer2013"))
    p.add_argument("--train-limit", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=str(REPO / "benchmarks/results/asm_mining_overhead.json"))
    args = p.parse_args()
    import torch

    if args.accelerator == "cpu":
        torch.set_num_threads(args.threads)
    runs = {s: run(s, args) for s in ("extra_pass", "train_forward")}
    for s, r in runs.items():
        print(f"{s:>13}: {r['mean_mining_seconds_per_mined_epoch']:.2f} s per mined epoch = "
              f"{100 * r['mean_mining_fraction_of_mined_epoch']:.1f} % of the epoch", flush=True)
    write_results(args.output, {
        "benchmark": "ASM mining overhead per epoch (FER+ 48 px grayscale, two ResNet-18s, batch 64, CPU)",
        "command": "flock /tmp/ferkit_heavy.lock python " + " ".join(sys.argv),
        "settings": vars(args), "environment": environment(), "runs": runs,
        "notes": ["mining_fraction = mining_seconds / train_seconds of that epoch (training incl. mining, validation excluded)",
                  "train_forward also pays a small per-step cost (copying the probabilities into the accumulator, a gather "
                  "under DDP); it is included in its mining_seconds, also in the epoch before the first mined one",
                  "wall-clock timings on a shared 2-core machine: other jobs may have run concurrently"],
    })


if __name__ == "__main__":
    main()
