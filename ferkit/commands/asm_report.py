"""``ferkit asm-report``: what did ASM find? The training set's current split as CSV plus a contact sheet of suspects.

::

    ferkit asm-report --ckpt runs/asm_ferplus/version_0/checkpoints/last.ckpt --out reports/asm
        [--config configs/asm_ferplus.yaml] [--root ../shared/data/fer2013] [--top 8] [--recompute]

Outputs in ``--out``:

* ``asm_split.csv``: one row per training sample, ``index, id, label, [clean_label,] pred, confidence, subset,
  t_clean, t_noisy`` (``id`` is the sample's path or ``file.csv:row``; ``confidence`` the mean probability of the
  given label over the two networks; ``subset`` clean / ambiguous / noisy / unknown). Sort by ``confidence`` to
  review the most suspicious labels first.
* ``asm_suspects.png``: per class, the ``--top`` training images labelled with that class that the networks
  believe least (noisy subset first), captioned with the predicted class and the confidence.
* ``asm_split_summary.json``: thresholds, subset sizes per class and, with synthetic noise, the precision and
  recall of the noisy subset against the flipped labels.

The split is the one stored in the checkpoint (the last epoch's mining). The training set is rebuilt from the
checkpoint's data-module settings (same subset, same synthetic noise), or from ``--config``; ``--root`` relocates
the data. ``--recompute`` judges the training set again with the checkpoint's networks (needed when the checkpoint
was saved before mining started).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from ferkit.commands.lightning_cli import build_cli
from ferkit.data.datamodule import FERDataModule
from ferkit.methods.asm import ASMClassifier
from ferkit.miners.split import SUBSET_NAMES, detection_scores, detection_scores_per_class

log = logging.getLogger(__name__)

__all__ = ["write_split_csv", "contact_sheet", "build_report", "main"]


def _subset_name(i: int) -> str:
    return SUBSET_NAMES[i] if i >= 0 else "unknown"


def write_split_csv(path: str | Path, miner, ids: Sequence[str], class_names: Sequence[str],
                    clean_labels: np.ndarray | None = None) -> Path:
    """Write one row per sample of the miner's current split (see the module docstring for the columns)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = miner.labels.values.cpu().numpy()
    conf = miner.confidence.values.cpu().numpy()
    subset = miner.subset.values.cpu().numpy()
    probs = miner.probs.values.cpu().float()
    pred = torch.nan_to_num(probs.mean(1), nan=-1.0).argmax(1).numpy()
    known_pred = torch.isfinite(probs).all(dim=(1, 2)).numpy()
    t_c, t_n = miner.thresholds.clean.cpu().numpy(), miner.thresholds.noisy.cpu().numpy()
    header = ["index", "id", "label"] + (["clean_label"] if clean_labels is not None else []) + \
             ["pred", "confidence", "subset", "t_clean", "t_noisy"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in range(len(labels)):
            y = int(labels[i])
            row: list[Any] = [i, ids[i], class_names[y] if y >= 0 else ""]
            if clean_labels is not None:
                row.append(class_names[int(clean_labels[i])])
            row += [class_names[int(pred[i])] if known_pred[i] else "",
                    f"{conf[i]:.6f}" if np.isfinite(conf[i]) else "",
                    _subset_name(int(subset[i])),
                    f"{t_c[y]:.6f}" if y >= 0 else "", f"{t_n[y]:.6f}" if y >= 0 else ""]
            w.writerow(row)
    return path


def _tile(image: np.ndarray, size: int) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_GRAY2BGR)
    else:
        img = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2BGR)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR)


def contact_sheet(path: str | Path, dataset, miner, class_names: Sequence[str], top: int = 8, tile: int = 96) -> Path:
    """A PNG grid: one row per class, the ``top`` samples labelled with it that have the lowest confidence.

    Noisy-subset samples come first, then ambiguous, then clean, each by increasing confidence. Each tile is
    captioned ``-> <predicted class> <confidence>`` and framed red (noisy), orange (ambiguous) or green (clean).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = miner.labels.values.cpu().numpy()
    conf = np.nan_to_num(miner.confidence.values.cpu().numpy(), nan=np.inf)
    subset = miner.subset.values.cpu().numpy().astype(int)
    pred = torch.nan_to_num(miner.probs.values.cpu().float().mean(1), nan=-1.0).argmax(1).numpy()
    order_rank = np.where(subset == 2, 0, np.where(subset == 1, 1, np.where(subset == 0, 2, 3)))
    colours = {0: (60, 170, 60), 1: (0, 150, 255), 2: (40, 40, 220), -1: (128, 128, 128)}
    label_w, cap_h = 150, 18
    rows = []
    for k, name in enumerate(class_names):
        members = np.flatnonzero(labels == k)
        members = members[np.lexsort((conf[members], order_rank[members]))][:top]
        row = np.full((tile + cap_h, label_w + top * (tile + 4), 3), 255, np.uint8)
        cv2.putText(row, name[:14], (6, (tile + cap_h) // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        for j, i in enumerate(members):
            x0 = label_w + j * (tile + 4)
            row[:tile, x0:x0 + tile] = _tile(dataset.load_image(int(i)), tile)
            cv2.rectangle(row, (x0, 0), (x0 + tile - 1, tile - 1), colours[int(subset[i])], 2)
            c = conf[i]
            cap = f"->{class_names[int(pred[i])][:7]} {c:.2f}" if np.isfinite(c) else "not judged"
            cv2.putText(row, cap, (x0 + 1, tile + cap_h - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(row)
    sheet = np.concatenate(rows, axis=0) if rows else np.full((10, 10, 3), 255, np.uint8)
    if not cv2.imwrite(str(path), sheet):
        raise OSError(f"could not write {path}")
    return path


def _datamodule(ckpt: dict[str, Any], config: str | None, root: str | None, overrides: list[str]) -> FERDataModule:
    if config:
        args = ["--config", config] + ([f"--data.dataset.init_args.root={root}"] if root else []) + overrides
        return build_cli(args=args, run=False).datamodule
    hp = dict(ckpt.get("datamodule_hyper_parameters") or {})
    if not hp:
        raise ValueError("the checkpoint does not record its data-module settings: pass --config with the training config")
    if root:
        source = dict(hp["dataset"])
        source["init_args"] = {**dict(source.get("init_args") or {}), "root": root}
        hp["dataset"] = source
    return FERDataModule.from_hparams(hp)


def build_report(ckpt_path: str, out: str, config: str | None = None, root: str | None = None, top: int = 8,
                 recompute: bool = False, overrides: list[str] | None = None) -> dict[str, Any]:
    """Write the split CSV, contact sheet and summary for the ASM checkpoint ``ckpt_path`` into ``out``."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    dm = _datamodule(ckpt, config, root, list(overrides or []))
    dm.setup("fit")
    ds = dm.train_set
    model = ASMClassifier.load_from_checkpoint(ckpt_path, map_location="cpu")
    model.eval()
    miner = model.miner
    if miner.num_samples != len(ds):
        raise ValueError(f"{ckpt_path} mined {miner.num_samples} training samples but the rebuilt training set has {len(ds)}: "
                         "use the training config (same dataset, train_limit, label noise and seed)")
    given = torch.as_tensor(np.asarray(ds.labels), dtype=torch.long)
    known = miner.labels.values >= 0
    if bool((miner.labels.values[known] != given[known]).any()):
        raise ValueError("the rebuilt training set's labels differ from the ones the miner saw: use the training config "
                         "(same label noise rate, mode and seed)")
    recomputed = bool(recompute or not miner.has_split)
    if recomputed:
        loader = dm.judge_dataloader(preset="eval")
        miner.reset_observations()
        model.judge(loader)
        miner.mine()
    out_dir = Path(out)
    names = list(model.class_names)
    clean = None if ds.clean_labels is None else np.asarray(ds.clean_labels)
    csv_path = write_split_csv(out_dir / "asm_split.csv", miner, list(ds.ids), names, clean)
    png_path = contact_sheet(out_dir / "asm_suspects.png", ds, miner, names, top=top)
    summary: dict[str, Any] = {"checkpoint": str(ckpt_path), "checkpoint_epoch": int(ckpt.get("epoch", -1)) + 1,
                               "mined_epoch": int(miner.mined_epoch), "recomputed": recomputed, **miner.summary(names)}
    if clean is not None:
        flipped = given != torch.as_tensor(clean, dtype=torch.long)
        summary["detection"] = detection_scores(miner.split, flipped)
        summary["detection_per_class"] = detection_scores_per_class(miner.split, flipped, given, names)
    (out_dir / "asm_split_summary.json").write_text(json.dumps(summary, indent=2))
    summary["files"] = {"csv": str(csv_path), "contact_sheet": str(png_path), "summary": str(out_dir / "asm_split_summary.json")}
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="ferkit asm-report", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="an ASMClassifier checkpoint")
    p.add_argument("--out", default="asm_report", help="output folder")
    p.add_argument("--config", default=None, help="the training config (default: the data settings stored in the checkpoint)")
    p.add_argument("--root", default=None, help="where the dataset lives now (overrides the dataset's root in the config)")
    p.add_argument("--top", type=int, default=8, help="suspects per class in the contact sheet")
    p.add_argument("--recompute", action="store_true", help="judge the training set again with the checkpoint's networks")
    a, rest = p.parse_known_args(argv)
    s = build_report(a.ckpt, a.out, config=a.config, root=a.root, top=a.top, recompute=a.recompute, overrides=rest)
    c = s["counts"]
    when = (f"judged now with the weights of epoch {s['checkpoint_epoch']}" if s["recomputed"]
            else f"mined at the start of epoch {s['mined_epoch']}")
    print(f"[ferkit] ASM split of {sum(c.values()) + s['unknown']} training samples ({when}): "
          f"clean {c['clean']}, ambiguous {c['ambiguous']}, noisy {c['noisy']}, unknown {s['unknown']}")
    if "detection" in s:
        d = s["detection"]
        print(f"[ferkit] against the flipped labels: noisy-subset precision {d['noisy_precision']:.3f}, recall {d['noisy_recall']:.3f}")
        print(f"  {'given label':14s} {'wrong labels':>12s} {'noisy P':>8s} {'noisy R':>8s} {'clean purity':>12s}")
        for name, d in s["detection_per_class"].items():
            print(f"  {name:14s} {d['flip_rate']:12.3f} {d['noisy_precision']:8.3f} {d['noisy_recall']:8.3f} "
                  f"{d['clean_purity']:12.3f}")
    for k, v in s["files"].items():
        print(f"[ferkit] wrote {k}: {v}")
    return s


if __name__ == "__main__":
    main()
