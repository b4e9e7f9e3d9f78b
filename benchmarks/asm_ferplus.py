"""ASM vs plain cross-entropy on FER+ with 30 % symmetric synthetic label noise (CPU configuration).

Runs ``configs/asm_ferplus.yaml`` and ``configs/ce_ferplus_noisy.yaml`` (same subset, same noisy labels, same weak view,
optimiser and epochs) through the same LightningCLI code path as ``ferkit fit``, tests the last-epoch model on the FER+
test split (PrivateTest; never used for selection), and records for ASM the precision / recall of the mined noisy
subset against the labels that were actually flipped, the thresholds and subset sizes per epoch, and the mining
overhead per epoch. Writes ``benchmarks/results/asm_ferplus.json``.

    flock /tmp/ferkit_heavy.lock python benchmarks/asm_ferplus.py            # the configs as they are (~35 min CPU)
    python benchmarks/asm_ferplus.py --smoke --output /tmp/asm_smoke.json    # a 1-minute check of the pipeline
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_ferplus_args, checkpoint_paths, environment, start_ferplus, test_record, val_history, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# "ce2" (optional control): ASM's two averaged networks trained with CE only (warm-up never ends, no mining), which
# separates the effect of mining from the effect of averaging two networks
CONFIGS = {"asm": "asm_ferplus.yaml", "ce": "ce_ferplus_noisy.yaml", "ce2": "asm_ferplus.yaml"}


def _cli_args(name: str, args, out_root: Path) -> list[str]:
    config = CONFIGS[name]
    a = ["--config", str(REPO / "configs" / config), f"--trainer.accelerator={args.accelerator}",
         f"--trainer.logger.init_args.save_dir={out_root}", f"--trainer.enable_progress_bar={str(args.progress).lower()}",
         f"--data.root={args.root}", f"--seed_everything={args.seed}"]
    if args.epochs:
        a.append(f"--trainer.max_epochs={args.epochs}")
    if args.train_limit:
        a.append(f"--data.train_limit={args.train_limit}")
    if args.smoke:
        a += ["--trainer.max_epochs=2", "--data.train_limit=256", "--data.val_limit=64", "--data.test_limit=128"]
    if name == "ce2":
        a += ["--model.init_args.warmup_epochs=100000", "--trainer.logger.init_args.name=ce2_ferplus_noisy"]
    elif name == "asm":
        if args.warmup is not None:
            a.append(f"--model.init_args.warmup_epochs={args.warmup}")
        if args.smoke:
            a.append("--model.init_args.warmup_epochs=1")
        if args.stats:
            a.append(f"--model.init_args.stats={args.stats}")
    return a


def _finite(obj):
    """NaN / inf -> None, recursively, so the result file is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def run_one(name: str, args, out_root: Path) -> dict:
    from ferkit.cli import build_cli

    cli = build_cli(args=_cli_args(name, args, out_root), run=False)
    model, dm, trainer = cli.model, cli.datamodule, cli.trainer
    t0 = time.perf_counter()
    trainer.fit(model, dm)
    fit_s = time.perf_counter() - t0
    model.output_dir = str(Path(trainer.logger.log_dir) / "test_last")
    trainer.test(model, datamodule=dm, verbose=False)  # the last-epoch weights
    ds = dm.train_set
    result = {
        "config": f"configs/{CONFIGS[name]}",
        "command": "ferkit fit --config configs/" + CONFIGS[name] + (" --model.init_args.warmup_epochs=100000" if name == "ce2" else ""),
        "fit_seconds": round(fit_s, 1), "epochs": trainer.max_epochs, "train_samples": len(ds),
        "flipped_labels": int((ds.labels != ds.clean_labels).sum()) if ds.clean_labels is not None else None,
        "test_last": test_record(model),
        "val_history": val_history(trainer.logger.log_dir), "log_dir": trainer.logger.log_dir,
        "checkpoint": checkpoint_paths(trainer)["last"] or None,
        "params": sum(p.numel() for p in model.model.parameters()),
    }
    if name == "asm":
        h = model.hparams
        result["asm"] = {"warmup_epochs": h.warmup_epochs, "stats": h.stats, "judge_transform": h.judge_transform,
                         "t_clean": h.t_clean, "t_noisy": h.t_noisy, "threshold_momentum": h.threshold_momentum}
        epochs = []
        for e in model.mining_history:
            row = {"epoch": e["epoch"]}
            if "counts" in e:
                row.update({"counts": e["counts"], "t_clean": e["t_clean"], "t_noisy": e["t_noisy"],
                            "counts_per_class": e["counts_per_class"]})
                if "detection" in e:
                    row["detection"] = {k: round(v, 4) for k, v in e["detection"].items()}
            if "timing" in e:
                t = e["timing"]
                row["timing"] = {"train_seconds": round(t["train_seconds"], 1), "mining_seconds": round(t["mining_seconds"], 2),
                                 "mining_fraction": round(t["mining_fraction"], 4)}
            epochs.append(row)
        result["mining_per_epoch"] = epochs
        mined = [e for e in epochs if "detection" in e]
        if mined:
            result["final_split"] = {"epoch": mined[-1]["epoch"], "counts": mined[-1]["counts"], **mined[-1]["detection"]}
        fr = [e["timing"]["mining_fraction"] for e in epochs if "counts" in e and "timing" in e]
        if fr:
            result["mining_overhead"] = {"stats": h.stats, "mean_fraction_of_epoch": round(sum(fr) / len(fr), 4),
                                         "per_mined_epoch": fr}
        if result["checkpoint"]:
            from ferkit.methods.asm.report import build_report

            rep = build_report(result["checkpoint"], str(Path(trainer.logger.log_dir) / "report"), root=args.root)
            result["report_files"] = rep["files"]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="asm,ce", help="comma-separated: asm, ce, ce2 (two networks, CE only)")
    p.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs of both configs")
    p.add_argument("--warmup", type=int, default=None, help="override ASM's warmup_epochs")
    p.add_argument("--train-limit", type=int, default=None, help="override data.train_limit")
    p.add_argument("--stats", default=None, choices=["extra_pass", "train_forward"], help="override ASM's stats option")
    p.add_argument("--smoke", action="store_true", help="tiny run to check the pipeline (numbers meaningless)")
    add_ferplus_args(p, "asm_ferplus", "bench_asm_ferplus")
    args = p.parse_args()
    start_ferplus(args)
    runs = {}
    for name in args.runs.split(","):
        runs[name] = run_one(name, args, Path(args.out_root))
        print(name, runs[name]["test_last"], runs[name].get("final_split"), flush=True)
        _write(args, runs)  # after every run, so a long sequence that is stopped keeps what finished


def _write(args, runs: dict) -> None:
    payload = {
        "benchmark": "FER+ (majority labels, 8 classes) with 30 % symmetric synthetic label noise on the training subset: "
                     "ASM vs plain CE trained the same way; test = FER+ PrivateTest, last-epoch weights",
        "command": "flock /tmp/ferkit_heavy.lock python " + " ".join(sys.argv),
        "settings": {"epochs": args.epochs, "train_limit": args.train_limit, "seed": args.seed, "smoke": args.smoke,
                     "accelerator": args.accelerator, "threads": args.threads},
        "environment": environment(),
        "runs": runs,
        "notes": ["noisy-subset precision = fraction of the mined noisy subset whose given label was flipped; recall = fraction "
                  "of the flipped labels that the noisy subset contains (FER+ majority labels themselves are taken as clean)",
                  "ASM evaluates the average of two networks; the CE baseline is one network",
                  "timings are wall-clock on a shared 2-core machine (other jobs may have run concurrently)"],
    }
    write_results(args.output, _finite(payload))


if __name__ == "__main__":
    main()
