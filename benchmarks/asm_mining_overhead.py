"""What ASM's mining costs per epoch, for both statistics options, as a fraction of the epoch's training time.

* ``stats=extra_pass`` (the paper): a no-grad, eval-mode pass of both networks over the training set
  (``judge_dataloader``) at the start of every epoch after warm-up, then thresholds and split;
* ``stats=train_forward``: the softmax of the training forward passes is accumulated by index during epoch e-1
  (a copy of B x 2 x C probabilities per step), then thresholds and split at the start of epoch e.

Both runs use the packaged ``asm_ferplus`` config (FER+, 48 px grayscale, two ResNet-18s, batch 64) on a smaller
training subset for a few epochs. The times come from Lightning's :class:`~lightning.pytorch.profilers.SimpleProfiler`:
``mining_seconds`` is the ``asm_mining`` section that :class:`ferkit.methods.ASMClassifier` opens at the start of a
mined epoch (judging pass, thresholds, split), ``train_seconds`` the epoch's ``run_training_epoch`` plus that mining
(validation is switched off). ``train_forward``'s per-step copy of the probabilities runs inside the training steps
and is not in its ``mining_seconds``. Writes ``benchmarks/results/asm_mining_overhead.json``.

    flock /tmp/ferkit_heavy.lock python benchmarks/asm_mining_overhead.py
    python benchmarks/asm_mining_overhead.py --smoke     # asm_synthetic on 32 faces, 1 mined epoch, temporary folder
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, environment, result_path, shared_data_root, smoke_dir, write_results  # noqa: E402

SMOKE_DATA = ["--data.dataset.init_args.num_train=32", "--data.dataset.init_args.num_val=16",
              "--data.dataset.init_args.num_test=16", "--data.dataset.init_args.image_size=32", "--data.img_size=32",
              "--data.batch_size=16", "--data.eval_batch_size=32"]


def run(stats: str, args, out_dir: Path) -> dict:
    from ferkit.commands.lightning_cli import build_cli

    if args.smoke:
        data = ["--config", "asm_synthetic", *SMOKE_DATA]
    else:
        data = ["--config", "asm_ferplus", f"--data.dataset.init_args.root={args.root}", f"--data.train_limit={args.train_limit}"]
    profiler = ("{class_path: lightning.pytorch.profilers.SimpleProfiler, "
                f"init_args: {{dirpath: {out_dir}, filename: profile_{stats}}}}}")
    cli_args = [*data, f"--trainer.max_epochs={args.epochs}", f"--model.init_args.warmup_epochs={args.warmup}",
                f"--model.init_args.stats={stats}", f"--trainer.accelerator={args.accelerator}",
                "--trainer.limit_val_batches=0", "--trainer.logger=false", "--trainer.enable_checkpointing=false",
                "--trainer.callbacks=[]", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                f"--trainer.default_root_dir={out_dir}", f"--trainer.profiler={profiler}", f"--seed_everything={args.seed}"]
    cli = build_cli(args=cli_args, run=False)
    model, dm, trainer = cli.model, cli.datamodule, cli.trainer
    durations = trainer.profiler.recorded_durations
    trainer.fit(model, dm)
    epochs = list(durations["run_training_epoch"])
    mining = list(durations["asm_mining"])
    if len(epochs) != args.epochs or len(mining) != max(args.epochs - args.warmup, 0):
        raise RuntimeError(f"profiler recorded {len(epochs)} training epochs and {len(mining)} mining sections; expected "
                           f"{args.epochs} and {max(args.epochs - args.warmup, 0)}")
    per_epoch = []
    for e, t_epoch in enumerate(epochs, start=1):
        mined = e > args.warmup
        t_mine = mining[e - args.warmup - 1] if mined else 0.0
        train = t_epoch + t_mine
        per_epoch.append({"epoch": e, "mined": mined, "train_seconds": round(train, 2), "mining_seconds": round(t_mine, 3),
                          "mining_fraction": round(t_mine / train, 4) if train > 0 else 0.0})
    mined = [p for p in per_epoch if p["mined"]]
    warm = [p for p in per_epoch if not p["mined"]]
    return {
        "stats": stats, "fit_seconds": round(sum(epochs) + sum(mining), 1), "train_samples": len(dm.train_set),
        "per_epoch": per_epoch,
        "mean_mining_seconds_per_mined_epoch": round(sum(p["mining_seconds"] for p in mined) / max(len(mined), 1), 3),
        "mean_mining_fraction_of_mined_epoch": round(sum(p["mining_fraction"] for p in mined) / max(len(mined), 1), 4),
        "mean_warmup_epoch_seconds": round(sum(p["train_seconds"] for p in warm) / len(warm), 2) if warm else None,
        "asm_split_last_epoch": model.miner.summary(list(model.class_names))["counts"],
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(shared_data_root() / "fer2013"), help="the folder with fer2013.csv(.gz) and fer2013new.csv")
    p.add_argument("--train-limit", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs-dir", default=str(REPO / "runs" / "asm_mining_overhead"), help="profiler reports")
    p.add_argument("--output", default=None,
                   help="result file (default: benchmarks/results/asm_mining_overhead.json; --smoke: a temporary folder)")
    p.add_argument("--smoke", action="store_true", help="asm_synthetic on 32 faces, one mined epoch (seconds; no real data)")
    args = p.parse_args(argv)
    output = result_path(args.output, "asm_mining_overhead", args.smoke)
    if args.smoke:
        args.epochs, args.warmup, args.threads = 1, 0, 1  # epoch 1 is mined: the code path without its cost
        args.runs_dir = str(smoke_dir() / "asm_mining_overhead")
    elif not Path(args.root).exists():
        raise SystemExit(f"FER+ data not found at {args.root}: pass --root (the folder with fer2013.csv(.gz) and "
                         "fer2013new.csv) or set FERKIT_SHARED_DATA")
    import torch

    if args.accelerator == "cpu":
        torch.set_num_threads(args.threads)
    runs = {s: run(s, args, Path(args.runs_dir)) for s in ("extra_pass", "train_forward")}
    for s, r in runs.items():
        print(f"{s:>13}: {r['mean_mining_seconds_per_mined_epoch']:.2f} s per mined epoch = "
              f"{100 * r['mean_mining_fraction_of_mined_epoch']:.1f} % of the epoch", flush=True)
    what = ("smoke run: asm_synthetic on 32 synthetic faces, not a measurement" if args.smoke else
            "ASM mining overhead per epoch (FER+ 48 px grayscale, two ResNet-18s, batch 64, CPU)")
    record = {
        "benchmark": what,
        "command": "flock /tmp/ferkit_heavy.lock python benchmarks/asm_mining_overhead.py "
                   + " ".join(sys.argv[1:] if argv is None else argv),
        "smoke": args.smoke, "settings": {k: v for k, v in vars(args).items() if k != "output"},
        "environment": environment(), "runs": runs,
        "notes": ["times from Lightning's SimpleProfiler: mining_seconds = the asm_mining section, train_seconds = "
                  "run_training_epoch + asm_mining of that epoch (validation switched off)",
                  "mining_fraction = mining_seconds / train_seconds of that epoch",
                  "train_forward also pays a small per-step cost (copying the probabilities into the accumulator, a gather "
                  "under DDP) inside its training steps; it is not in its mining_seconds",
                  "wall-clock timings on a shared 2-core machine: other jobs may have run concurrently"],
    }
    write_results(output, record)
    return record


if __name__ == "__main__":
    main()
