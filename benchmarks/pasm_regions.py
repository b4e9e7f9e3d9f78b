"""Contact sheet of PASM's located regions on synthetic faces: ``docs/img/pasm_regions.png``.

Trains a small CE teacher on the embedded synthetic faces (CPU, about a minute), locates each shown face's centre
with the greedy point-wise attack and the density rule, and draws the density window (dotted green square) on six
faces per class with :func:`ferkit.data.visual.contact_sheet`. Synthetic faces only: real faces never go into the
repository (point ``--out`` outside it to look at real data).

    OMP_NUM_THREADS=1 python benchmarks/pasm_regions.py
"""
from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-train", type=int, default=1200)
    p.add_argument("--img-size", type=int, default=48)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--window", type=int, default=12)
    p.add_argument("--out", default=str(REPO / "docs/img/pasm_regions.png"))
    args = p.parse_args()

    import lightning as L
    import numpy as np
    import torch

    from ferkit.data import FERDataModule, SubsetFER, SyntheticSource
    from ferkit.data.erasing import to_original_coordinates
    from ferkit.data.visual import contact_sheet, save_rgb
    from ferkit.methods import FERClassifier
    from ferkit.miners.point_attack import PointAttackLocator
    from ferkit.models import FERNetConfig

    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    s = args.img_size
    dm = FERDataModule(SyntheticSource(num_train=args.num_train, num_val=200, num_test=200, image_size=s), img_size=s,
                       batch_size=64, train_preset="default")
    teacher = FERClassifier(net=FERNetConfig(backbone="resnet10t", small_input=True), num_classes=dm.num_classes,
                            class_names=dm.class_names, img_size=s, in_chans=3)
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(teacher, dm)
    ds = dm.train_set
    rows = [np.flatnonzero(np.asarray(ds.labels) == c)[:6].tolist() for c in range(ds.num_classes)]
    shown = [i for r in rows for i in r]
    items = [dm.judge_dataloader().dataset[i] for i in shown]
    x = torch.stack([it["image"] for it in items])
    y = torch.tensor([it["label"] for it in items])
    locator = PointAttackLocator(teacher.model, max_points=32, points_per_step=4, window=args.window, stride=2)
    centres = to_original_coordinates(locator.locate(x, y), torch.tensor([[s, s]] * len(shown)), s).numpy()
    # draw each located window as a dotted square (the sheet draws a sample's landmarks as dots)
    half = (args.window - 1) / 2
    t = np.linspace(-half, half, 9)
    square = np.concatenate([np.stack([t, np.full_like(t, -half)], 1), np.stack([t, np.full_like(t, half)], 1),
                             np.stack([np.full_like(t, -half), t], 1), np.stack([np.full_like(t, half), t], 1)])
    view = SubsetFER(ds, np.arange(len(ds)))
    marks = np.full((len(ds), len(square), 2), np.nan, np.float32)
    for i, c in zip(shown, centres):
        marks[i] = c + square
    view.landmarks = marks
    sheet = contact_sheet(view, per_class=6, upscale=3, rows=rows)
    try:  # a 128-colour palette keeps the committed figure small (about 80 KiB instead of 1 MiB)
        from PIL import Image

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(sheet).quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    except ImportError:
        save_rgb(args.out, sheet)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
