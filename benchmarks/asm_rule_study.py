"""How well does each ASM mining rule find the flipped labels, judged from one checkpoint?

Loads an :class:`ferkit.methods.ASMClassifier` checkpoint (typically the end of the warm-up), judges the whole
training set once in eval mode over the data module's ``judge_dataloader`` (the pass ASM itself makes with
``stats="extra_pass"``), then applies several rules (:data:`ferkit.miners.MINERS`) to the *same* probabilities and
records, per rule, the subset sizes, the purity of the clean subset and the precision / recall of the noisy subset
against the labels that were actually flipped. The training set is rebuilt from the data-module settings stored in
the checkpoint, or from ``--config`` (``--root`` relocates the data).

    ferkit fit --config asm_ferplus --trainer.max_epochs 6          # the 6 warm-up epochs alone
    python benchmarks/asm_rule_study.py --ckpt runs/asm_ferplus/version_0/checkpoints/last.ckpt

This is how the CPU configuration's base thresholds were chosen (``benchmarks/results/asm_rule_study.json``): it
uses the training set only (its given and, under synthetic noise, its true labels), never validation or test data.
The harness logs the statistics of the one rule a run trains with (``asm/*``); this script compares rules on one
set of probabilities, which no training run does.

Nothing is trained: the point is to see, before a long run, whether a rule's split is usable (a non-empty clean
subset that is purer than the training set, a noisy subset that is richer in flipped labels than the flip rate).

``--smoke`` trains ``asm_synthetic`` for one epoch on 48 synthetic faces (30 % flipped labels) and studies that
checkpoint (seconds; no real data; results in a temporary folder or ``--output``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import datamodule_from_checkpoint, environment, result_path, smoke_dir, \
    training_set_with_clean_labels, write_results  # noqa: E402

# name -> (MINERS key, keyword arguments)
RULES = {
    "max (T_c=0.8, T_n=0.2)": ("asm", dict(norm="max", t_clean=0.8, t_noisy=0.2)),
    "none (T_c=0.8, T_n=0.2)": ("asm", dict(norm="none", t_clean=0.8, t_noisy=0.2)),
    "fixed (T_c=0.8, T_n=0.2)": ("asm", dict(norm="fixed", t_clean=0.8, t_noisy=0.2)),
    "max (T_c=0.4, T_n=0.2): configs/asm_ferplus.yaml": ("asm", dict(norm="max", t_clean=0.4, t_noisy=0.2)),
    "fixed (T_c=0.4, T_n=0.2)": ("asm", dict(norm="fixed", t_clean=0.4, t_noisy=0.2)),
    "none (T_c=1.0, T_n=0.5): above the class mean is clean": ("asm", dict(norm="none", t_clean=1.0, t_noisy=0.5)),
    "man (argmax agreement)": ("man", {}),
}

SMOKE_ARGS = ["--config", "asm_synthetic", "--data.dataset.init_args.num_train=48", "--data.dataset.init_args.num_val=16",
              "--data.dataset.init_args.num_test=16", "--data.dataset.init_args.image_size=32", "--data.img_size=32",
              "--data.batch_size=16", "--data.eval_batch_size=32", "--trainer.max_epochs=1", "--trainer.limit_val_batches=0",
              "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]",
              "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def smoke_checkpoint() -> Path:
    """One epoch of ``asm_synthetic`` on a few faces with flipped labels, saved as a checkpoint (for --smoke)."""
    from ferkit.commands.lightning_cli import build_cli

    cli = build_cli(args=SMOKE_ARGS + [f"--trainer.default_root_dir={smoke_dir() / 'asm_rule_study'}"], run=False)
    cli.trainer.fit(cli.model, cli.datamodule)
    path = smoke_dir() / "asm_rule_study" / "smoke.ckpt"
    cli.trainer.save_checkpoint(path)
    return path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=None, help="an ASMClassifier checkpoint (required unless --smoke)")
    p.add_argument("--config", default=None,
                   help="the training config (a file or a packaged name); default: the data settings stored in the checkpoint")
    p.add_argument("--root", default=None, help="where the dataset lives now (overrides data.dataset's root)")
    p.add_argument("--output", default=None,
                   help="result file (default: benchmarks/results/asm_rule_study.json; --smoke: a temporary folder)")
    p.add_argument("--smoke", action="store_true", help="study a one-epoch checkpoint on synthetic faces (seconds)")
    p.add_argument("--stored", action="store_true",
                   help="use the probabilities of the judging pass stored in the checkpoint (the split it trained its "
                        "next epoch with) instead of judging the training set again: no forward pass")
    args = p.parse_args(argv)
    if not args.ckpt and not args.smoke:
        p.error("--ckpt is required (an ASMClassifier checkpoint, e.g. runs/asm_ferplus/version_0/checkpoints/last.ckpt)")
    output = result_path(args.output, "asm_rule_study", args.smoke)

    import numpy as np
    import torch

    from ferkit.commands.lightning_cli import build_cli
    from ferkit.methods import ASMClassifier
    from ferkit.metrics import rank_auroc
    from ferkit.miners import MINERS, detection_scores, detection_scores_per_class

    if args.smoke and not args.ckpt:
        torch.manual_seed(0)
        args.ckpt = str(smoke_checkpoint())
    ckpt = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    if args.config:
        cli_args = ["--config", args.config] + ([f"--data.dataset.init_args.root={args.root}"] if args.root else [])
        dm = build_cli(args=cli_args, run=False).datamodule
    else:
        dm = datamodule_from_checkpoint(ckpt, args.root, args.ckpt)
    ds = training_set_with_clean_labels(dm)
    model = ASMClassifier.load_from_checkpoint(args.ckpt, map_location="cpu")
    if model.miner.num_samples != len(ds):
        model.miner.resize(len(ds))
    if args.stored:  # the probabilities the last mining used (the accumulator is emptied after each mining)
        probs_stored = model.miner.probs.values
        seen = torch.isfinite(probs_stored).all(dim=(1, 2))
        if not bool(seen.any()):
            raise SystemExit(f"{args.ckpt} stores no judged probabilities (a warm-up checkpoint?): leave out --stored")
        acc_sum = torch.where(seen[:, None, None], probs_stored, torch.zeros_like(probs_stored))
        acc_count = seen.to(torch.int32)
    else:
        model.miner.reset_observations()
        model.judge(dm.judge_dataloader(preset=model.hparams.judge_transform))
        acc_sum, acc_count = model.miner.acc_sum.values.clone(), model.miner.acc_count.values.clone()
    labels = model.miner.labels.values.clone()
    given = torch.as_tensor(np.asarray(ds.labels), dtype=torch.long)
    if not torch.equal(labels, given):
        raise SystemExit("the judged labels differ from the rebuilt training set's: use the training config")
    flipped = given != torch.as_tensor(np.asarray(ds.clean_labels), dtype=torch.long)
    names = list(dm.class_names)

    # how well the confidence on the given label alone separates flipped from kept labels (rank AUROC)
    probs = acc_sum / acc_count.clamp_min(1)[:, None, None].float()
    conf = MINERS["asm"].confidence_on_label(probs, labels)
    n_f, n_k = int(flipped.sum()), int((~flipped).sum())
    auroc = rank_auroc(conf[~flipped], conf[flipped])
    quant = {f"q{q}": {"kept": float(conf[~flipped].quantile(q / 100)) if n_k else float("nan"),
                       "flipped": float(conf[flipped].quantile(q / 100)) if n_f else float("nan")}
             for q in (10, 25, 50, 75, 90)}
    print(f"confidence AUROC (kept vs flipped) {auroc:.3f}; quantiles {quant}")
    per_class_auroc = {}
    for k, name in enumerate(names):  # within one given class: does the confidence single out its wrong labels?
        m = labels == k
        if bool((m & flipped).any()) and bool((m & ~flipped).any()):
            per_class_auroc[name] = rank_auroc(conf[m & ~flipped], conf[m & flipped])
    print("per-class AUROC:", {k: round(v, 3) for k, v in per_class_auroc.items()})

    out = {}
    for name, (kind, kw) in RULES.items():
        miner = MINERS[kind](model.hparams.num_classes, num_samples=len(ds), num_networks=2, momentum=0.0, **kw)
        miner.acc_sum.values.copy_(acc_sum)
        miner.acc_count.values.copy_(acc_count)
        miner.labels.values.copy_(labels)
        split = miner.mine(epoch=1)
        s = miner.summary(names)
        scores = detection_scores(split, flipped)
        out[name] = {"miner": kind, "counts": s["counts"], "t_clean": s["t_clean"], "t_noisy": s["t_noisy"],
                     "class_mean_confidence": s["class_mean_confidence"],
                     "counts_per_class": s["counts_per_class"], "detection": scores,
                     "detection_per_class": detection_scores_per_class(split, flipped, labels, names)}
        print(f"{name:56s} {s['counts']}  clean purity {scores['clean_purity']}  noisy P {scores['noisy_precision']:.3f} "
              f"R {scores['noisy_recall']:.3f}")
    record = {"benchmark": "ASM mining rules applied to the same judged probabilities of one checkpoint",
              "command": "python benchmarks/asm_rule_study.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "smoke": args.smoke, "checkpoint": str(args.ckpt), "checkpoint_global_step": int(ckpt.get("global_step", -1)),
              "config": args.config or "(stored in the checkpoint)", "train_samples": len(ds),
              "flip_rate": float(flipped.float().mean()),
              "judged": "stored in the checkpoint" if args.stored else "again, with the checkpoint's networks",
              "confidence_auroc": auroc, "confidence_auroc_per_class": per_class_auroc, "confidence_quantiles": quant,
              "rules": out, "environment": environment()}
    write_results(output, record)
    return record


if __name__ == "__main__":
    main()
