"""How well does each ASM mining rule find the flipped labels, judged from one checkpoint?

Loads an ASM checkpoint (typically the end of the warm-up), judges the whole training set once in eval mode (the
``stats="extra_pass"`` path of :class:`ferkit.methods.asm.ASM`), then applies several rules to the *same*
probabilities and records, per rule, the subset sizes, the purity of the clean subset and the precision / recall of
the noisy subset against the labels that were actually flipped. The data settings come from the checkpoint's
training config (``config.yaml`` beside the log directory) or from ``--config``.

    ferkit fit --config configs/asm_ferplus.yaml --trainer.max_epochs 6          # the 6 warm-up epochs alone
    python benchmarks/asm_rule_study.py --ckpt runs/asm_ferplus/version_0/checkpoints/last.ckpt

This is how the CPU configuration's base thresholds were chosen (``benchmarks/results/asm_rule_study.json``): it
uses the training set only (its given and, under synthetic noise, its true labels), never validation or test data.

Nothing is trained: the point is to see, before a long run, whether a rule's split is usable (a non-empty clean
subset that is purer than the training set, a noisy subset that is richer in flipped labels than the flip rate).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# name -> ASMMiner keyword arguments
RULES = {
    "max (T_c=0.8, T_n=0.2)": dict(norm="max", t_clean=0.8, t_noisy=0.2),
    "none (T_c=0.8, T_n=0.2)": dict(norm="none", t_clean=0.8, t_noisy=0.2),
    "fixed (T_c=0.8, T_n=0.2)": dict(norm="fixed", t_clean=0.8, t_noisy=0.2),
    "max (T_c=0.4, T_n=0.2): configs/asm_ferplus.yaml": dict(norm="max", t_clean=0.4, t_noisy=0.2),
    "none (T_c=1.0, T_n=0.5): above the class mean is clean": dict(norm="none", t_clean=1.0, t_noisy=0.5),
    "man (argmax agreement)": dict(rule="man"),
}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--config", default=str(REPO / "configs" / "asm_ferplus.yaml"))
    p.add_argument("--root", default=None, help="data.root override")
    p.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "asm_rule_study.json"))
    args = p.parse_args(argv)

    import numpy as np
    import torch
    import yaml

    from ferkit.data.datamodule import FERDataModule
    from ferkit.methods.asm import ASM
    from ferkit.miners import ASMMiner, detection_scores

    cfg = yaml.safe_load(Path(args.config).read_text())
    data = dict(cfg["data"])
    if args.root:
        data["root"] = args.root
    torch.manual_seed(int(cfg.get("seed_everything", 0)))
    dm = FERDataModule(**data)
    dm.setup("fit")
    ds = dm.train_set
    model = ASM.load_from_checkpoint(args.ckpt, map_location="cpu")
    model.miner.resize(len(ds))
    model.judge(model.judge_loader(dm))  # the extra pass of ASM itself (the model's judge_transform)
    acc_sum, acc_count = model.miner.acc_sum.values.clone(), model.miner.acc_count.values.clone()
    labels = model.miner.labels.values.clone()
    given = torch.as_tensor(np.asarray(ds.labels), dtype=torch.long)
    flipped = given != torch.as_tensor(np.asarray(ds.clean_labels), dtype=torch.long)
    names = dm.class_names

    # how well the confidence on the given label alone separates flipped from kept labels (rank AUROC)
    probs = (acc_sum / acc_count.clamp_min(1)[:, None, None].float())
    conf = ASMMiner.confidence_on_label(probs, labels)
    ranks = conf.argsort().argsort().double() + 1
    n_f, n_k = int(flipped.sum()), int((~flipped).sum())
    auroc = float((ranks[~flipped].sum() - n_k * (n_k + 1) / 2) / (n_f * n_k)) if n_f and n_k else float("nan")
    quant = {f"q{q}": {"kept": float(conf[~flipped].quantile(q / 100)), "flipped": float(conf[flipped].quantile(q / 100))}
             for q in (10, 25, 50, 75, 90)}
    print(f"confidence AUROC (kept vs flipped) {auroc:.3f}; quantiles {quant}")

    out = {}
    for name, kw in RULES.items():
        miner = ASMMiner(model.hparams.num_classes, num_samples=len(ds), num_networks=2, momentum=0.0, **kw)
        miner.acc_sum.values.copy_(acc_sum)
        miner.acc_count.values.copy_(acc_count)
        miner.labels.values.copy_(labels)
        split = miner.mine(epoch=1)
        s = miner.summary(names)
        scores = detection_scores(split, flipped)
        out[name] = {"counts": s["counts"], "t_clean": s["t_clean"], "t_noisy": s["t_noisy"],
                     "class_mean_confidence": s["class_mean_confidence"],
                     "counts_per_class": s["counts_per_class"], "detection": scores}
        print(f"{name:56s} {s['counts']}  clean purity {scores['clean_purity']}  noisy P {scores['noisy_precision']:.3f} "
              f"R {scores['noisy_recall']:.3f}")
    record = {"benchmark": "ASM mining rules applied to the same judged probabilities of one checkpoint",
              "command": "python benchmarks/asm_rule_study.py " + " ".join(argv or sys.argv[1:]),
              "checkpoint": str(args.ckpt), "config": str(args.config), "train_samples": len(ds),
              "flip_rate": float(flipped.float().mean()),
              "confidence_auroc": auroc, "confidence_quantiles": quant, "rules": out, "environment": environment()}
    write_results(args.output, record)
    return record


if __name__ == "__main__":
    main()
