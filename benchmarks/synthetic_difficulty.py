"""How hard is the synthetic-faces task? Train a small CNN briefly and record the test accuracy per epoch.

Trains timm's ``resnet18`` (random init) at 64 px with a plain PyTorch loop on the CPU (2 threads) on
:class:`ferkit.data.synthetic.SyntheticFaces` and writes ``benchmarks/results/synthetic_difficulty.json``
(versions, hardware, settings, generation speed, per-epoch test accuracy, final per-class recall and
confusion matrix). It also writes the contact sheet ``docs/img/synthetic_faces.png``.

Run (about 3-4 minutes on 2 cores)::

    flock /tmp/ferkit_heavy.lock python benchmarks/synthetic_difficulty.py

``--smoke`` (96 training and 48 test faces at 32 px, one epoch; seconds) checks that the script runs; it writes to
a temporary folder (or ``--output``) and draws no contact sheet unless ``--sheet`` is given.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import timm
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, result_path  # noqa: E402

import ferkit  # noqa: E402
from ferkit.data.synthetic import SyntheticFaces  # noqa: E402
from ferkit.data.visual import contact_sheet, save_rgb  # noqa: E402


def generation_speed(num_images: int = 2000, image_size: int = 64) -> float:
    """Images per second rendered by one process (single-threaded numpy/cv2)."""
    ds = SyntheticFaces(max(num_images, 1), split="val", image_size=image_size, seed=123)
    ds.load_image(0)  # warm-up (noise bank, caches)
    start = time.perf_counter()
    for i in range(num_images):
        ds.load_image(i)
    return num_images / (time.perf_counter() - start)


def write_contact_sheet(path: Path, **common) -> None:
    """Four faces per class (8 classes), each plain and with its landmarks."""
    sheet_ds = SyntheticFaces(400, split="val", **{**common, "num_classes": 8})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_rgb(path, contact_sheet(sheet_ds, per_class=4, upscale=3, draw_landmarks="both"))


def to_tensor(ds: SyntheticFaces) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.stack([ds.load_image(i) for i in range(len(ds))])            # N, H, W, 3 uint8
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(ds.labels)


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mean, std, num_classes: int, bs: int = 256):
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(x), bs):
            xb = (x[i : i + bs].float() / 255 - mean) / std
            preds.append(model(xb).argmax(1))
    pred = torch.cat(preds)
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    cm.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    return float((pred == y).float().mean()), cm


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=4000, help="training faces")
    ap.add_argument("--test", type=int, default=1000, help="test faces")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--num-classes", type=int, default=7)
    ap.add_argument("--difficulty", type=float, default=1.0)
    ap.add_argument("--ambiguity", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", "--out", dest="output", default=None,
                    help="result file (default: benchmarks/results/synthetic_difficulty.json; --smoke: a temporary folder)")
    ap.add_argument("--sheet", default=None,
                    help="contact sheet to write ('' to skip; default docs/img/synthetic_faces.png, none with --smoke)")
    ap.add_argument("--sheet-only", action="store_true", help="write the contact sheet and exit")
    ap.add_argument("--gen-images", type=int, default=2000, help="images rendered to measure the generation speed")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (seconds): checks that the script runs")
    args = ap.parse_args(argv)
    if args.smoke:
        args.train, args.test, args.epochs, args.batch_size, args.image_size = 96, 48, 1, 32, 32
        args.gen_images, args.threads = 20, 1
    if args.sheet is None:
        args.sheet = "" if args.smoke else str(REPO / "docs/img/synthetic_faces.png")
    args.sheet = Path(args.sheet) if args.sheet else ""
    args.out = result_path(args.output, "synthetic_difficulty", args.smoke)

    common = dict(image_size=args.image_size, num_classes=args.num_classes, seed=args.seed,
                  difficulty=args.difficulty, ambiguity=args.ambiguity)
    if str(args.sheet):
        write_contact_sheet(args.sheet, **common)
        if args.sheet_only:
            return {}

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_start = time.perf_counter()
    speed = generation_speed(args.gen_images, image_size=args.image_size)
    print(f"generation: {speed:.0f} images/s (one process)", flush=True)
    train = SyntheticFaces(args.train, split="train", **common)
    test = SyntheticFaces(args.test, split="test", **common)
    x_train, y_train = to_tensor(train)
    x_test, y_test = to_tensor(test)
    mean = (x_train.float() / 255).mean(dim=(0, 2, 3)).view(1, 3, 1, 1)
    std = (x_train.float() / 255).std(dim=(0, 2, 3)).view(1, 3, 1, 1)

    model = timm.create_model("resnet18", pretrained=False, num_classes=args.num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = len(x_train) // args.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch,
                                                pct_start=0.2)
    gen = torch.Generator().manual_seed(args.seed)
    history = []
    for epoch in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(len(x_train), generator=gen)
        losses, correct = [], 0
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch_size : (s + 1) * args.batch_size]
            xb = (x_train[idx].float() / 255 - mean) / std
            flip = torch.rand(len(idx), generator=gen) < 0.5                # horizontal flip (labels are symmetric)
            xb[flip] = xb[flip].flip(-1)
            yb = y_train[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            correct += int((logits.argmax(1) == yb).sum())
        train_time = time.perf_counter() - t0
        acc, cm = evaluate(model, x_test, y_test, mean, std, args.num_classes)
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
               "train_acc": correct / (steps_per_epoch * args.batch_size), "test_acc": acc,
               "epoch_seconds": round(train_time, 1)}
        history.append(row)
        print(json.dumps(row), flush=True)

    recall = (cm.diag().float() / cm.sum(1).clamp(min=1).float()).tolist()
    ambiguous = torch.from_numpy(test.ambiguous)
    # Accuracy on clear vs weak/blended test samples, with the final model.
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model((x_test[i : i + 256].float() / 255 - mean) / std).argmax(1)
                          for i in range(0, len(x_test), 256)])
    result = {
        "benchmark": "synthetic_difficulty",
        "command": " ".join(["flock /tmp/ferkit_heavy.lock python benchmarks/synthetic_difficulty.py",
                             *(argv if argv is not None else sys.argv[1:])]).strip(),
        "versions": {"python": platform.python_version(), "ferkit": getattr(ferkit, "__version__", "unknown"),
                     "torch": torch.__version__, "timm": timm.__version__, "numpy": np.__version__,
                     "opencv": cv2.__version__},
        "hardware": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                     "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": "cpu"},
        "smoke": args.smoke,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "output"},
        "model": "timm resnet18, pretrained=False",
        "optimizer": "AdamW + OneCycleLR (pct_start 0.2), horizontal flip, per-channel standardisation",
        "generation_images_per_second": round(speed, 1),
        "history": history,
        "final_test_acc": history[-1]["test_acc"],
        "final_test_acc_clear": float((pred == y_test)[~ambiguous].float().mean()),
        "final_test_acc_ambiguous": float((pred == y_test)[ambiguous].float().mean()) if ambiguous.any() else None,
        "test_ambiguous_fraction": float(ambiguous.float().mean()),
        "per_class_recall": dict(zip(test.class_names, [round(r, 4) for r in recall])),
        "confusion_matrix": cm.tolist(),
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"final test accuracy {result['final_test_acc']:.4f}; wrote {args.out}", flush=True)
    return result


if __name__ == "__main__":
    main()
