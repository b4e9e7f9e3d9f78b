"""What erasing at PASM's located positions does to the teacher and to the students, against erasing at random.

PASM's claim is that the position matters: a region erased where the teacher's decision depends on a few pixels
makes a harder, more useful sample than the same region erased anywhere. In the ``ferplus_pasm`` suite generation 1
(located positions) did not beat the random-position control, so this script measures the two ingredients of that
claim on real faces, with the suite's own checkpoints and centre file:

* **Training side** (the samples generation 1 was trained on): on ``--train-images`` FER+ training images drawn at
  random (seeded), with the centres of the suite's centre file, the teacher's accuracy and its probability of the
  given label on the clean image, on the image erased at its located centre and on the same box (same area and aspect,
  ``p = 1``) at a random position. Where erasing makes the teacher wrong, the distillation term pulls the student away
  from the label that the cross-entropy term pulls it to.
* **Evaluation side**: on the first ``--val-images`` validation (PublicTest) images, centres located afresh with the
  teacher and the suite's locator settings; every named network (``--net NAME=CKPT``, e.g. generation 0, generation 1
  and the random control) is scored clean, erased at the located centre and erased at random. This shows what each
  student learned to cope with. The test split is never read.
* **Where the centres are**: the distribution of the training centres over the 48 x 48 image (a heat map of
  coordinates, no face), written to ``benchmarks/results/plots/pasm_centres.png``.

No image is written anywhere. One thread, about two minutes with the queue's fits running beside it.

    OMP_NUM_THREADS=1 python benchmarks/pasm_erase_study.py --ferplus-root ../shared/data/fer2013 \
        --teacher benchmarks/runs/ferplus_pasm/gen0_s0/ckpt/best-epoch=23.ckpt \
        --centres benchmarks/runs/ferplus_pasm/_shared/centres_gen1_s0.pt \
        --net gen0=benchmarks/runs/ferplus_pasm/gen0_s0/ckpt/best-epoch=23.ckpt \
        --net gen1=benchmarks/runs/ferplus_pasm/gen1_s0/ckpt/best-epoch=24.ckpt \
        --net gen1_random=benchmarks/runs/ferplus_pasm/random1_s0/ckpt/best-epoch=27.ckpt

Writes ``benchmarks/results/pasm_erase_study.json`` and the ``pasm_erase_study`` table of the PASM card.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ferplus-root", required=True, help="folder with fer2013.csv and fer2013new.csv")
    p.add_argument("--teacher", required=True, help="the checkpoint that located the centres (generation g-1)")
    p.add_argument("--centres", required=True, help="the centre file of the training images (int16 [N, 2])")
    p.add_argument("--net", action="append", default=[], metavar="NAME=CKPT",
                   help="a network to score on erased validation images (repeatable)")
    p.add_argument("--train-images", type=int, default=2000)
    p.add_argument("--val-images", type=int, default=1000)
    p.add_argument("--area", type=float, nargs=2, default=(0.02, 0.2), help="the suite's erase_area")
    p.add_argument("--aspect", type=float, nargs=2, default=(0.3, 3.3), help="the suite's erase_aspect")
    p.add_argument("--max-points", type=int, default=32)
    p.add_argument("--points-per-step", type=int, default=4)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--img-size", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=str(REPO / "benchmarks/results/pasm_erase_study.json"))
    p.add_argument("--plot", default=str(REPO / "benchmarks/results/plots/pasm_centres.png"))
    a = p.parse_args(argv)
    for spec in a.net:
        if "=" not in spec:
            p.error(f"--net {spec!r}: expected NAME=CKPT")
    return a


def erased_views(x, centres, eraser_args: dict, seed: int):
    """``{"located": ..., "random": ...}``: each image erased once around its centre and once at a random position,
    with the same box size (one generator state per image, drawn identically for both)."""
    import numpy as np
    import torch

    from ferkit.data.erasing import InformativeRegionEraser

    at_centre = InformativeRegionEraser(p=1.0, random_centres=False, **eraser_args)
    anywhere = InformativeRegionEraser(p=1.0, random_centres=True, **eraser_args)
    out = {"located": [], "random": []}
    areas = []
    h, w = x.shape[-2:]
    for i in range(len(x)):
        c = centres[i].tolist()
        out["located"].append(at_centre.erase(x[i], c, np.random.default_rng([seed, i])))
        out["random"].append(anywhere.erase(x[i], c, np.random.default_rng([seed, i])))
        y0, y1, x0, x1 = at_centre.box(c, h, w, np.random.default_rng([seed, i]))  # the same draws as erase()
        areas.append((y1 - y0) * (x1 - x0) / (h * w))
    return {k: torch.stack(v) for k, v in out.items()}, np.asarray(areas)


def score(net, views: dict, y, batch_size: int, areas=None, bins=(0.0, 0.05, 0.1, 1.0)) -> dict:
    """Accuracy and mean probability of the label, per view; the share right on the clean view and wrong on the erased
    one; with ``areas`` (each image's erased fraction), the accuracy per area bin too."""
    import numpy as np
    import torch

    probs = {}
    with torch.no_grad():
        for name, x in views.items():
            probs[name] = torch.cat([net(xb).float().softmax(1) for xb in x.split(batch_size)])
    right = {k: p.argmax(1).eq(y) for k, p in probs.items()}
    res = {}
    for k, p in probs.items():
        res[k] = {"acc": round(float(right[k].float().mean()), 4),
                  "p_label": round(float(p.gather(1, y[:, None]).mean()), 4)}
        if k != "clean":
            # right on the clean image, wrong once erased: a sample on which the erased view "changes class"
            res[k]["flipped_from_right"] = round(float((right["clean"] & ~right[k]).float().mean()), 4)
            if areas is not None:
                res[k]["by_area"] = []
                for lo, hi in zip(bins[:-1], bins[1:]):
                    m = torch.from_numpy((areas >= lo) & (areas < hi))
                    if m.any():
                        res[k]["by_area"].append({"area": [lo, min(hi, 1.0)], "images": int(m.sum()),
                                                  "acc": round(float(right[k][m].float().mean()), 4),
                                                  "clean_acc": round(float(right["clean"][m].float().mean()), 4)})
    return res


def centre_stats(centres, size: int) -> dict:
    import numpy as np

    c = np.asarray(centres, dtype=np.float64)
    ok = (c >= 0).all(1)
    c = c[ok]
    x, y = c[:, 0], c[:, 1]
    third = size / 3
    cells, counts = np.unique(c.astype(int), axis=0, return_counts=True)
    order = np.argsort(-counts)
    return {
        "images": int(ok.sum()), "missing": int((~ok).sum()),
        "mean_xy": [round(float(x.mean()), 2), round(float(y.mean()), 2)],
        "rows_top_middle_bottom": [round(float((y < third).mean()), 4), round(float(((y >= third) & (y < 2 * third)).mean()), 4),
                                   round(float((y >= 2 * third).mean()), 4)],
        "distinct_positions": int(len(cells)),
        "top5_positions": [{"xy": cells[i].tolist(), "share": round(float(counts[i] / len(c)), 4)} for i in order[:5]],
    }


def plot_centres(centres, size: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    c = np.asarray(centres)
    c = c[(c >= 0).all(1)]
    heat = np.zeros((size, size))
    np.add.at(heat, (np.clip(c[:, 1], 0, size - 1), np.clip(c[:, 0], 0, size - 1)), 1)
    fig, ax = plt.subplots(figsize=(4.2, 4))
    im = ax.imshow(100 * heat / len(c), cmap="magma", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    fig.colorbar(im, ax=ax, label="% of training images")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import numpy as np
    import torch

    from ferkit.data import FERPlusSource
    from ferkit.data.erasing import load_centres
    from ferkit.data.transforms import FERTransform
    from ferkit.methods.pasm import load_network
    from ferkit.miners.point_attack import PointAttackLocator

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    source = FERPlusSource(root=args.ferplus_root, label_mode="majority", num_classes=8)
    train, val = source.build("train"), source.build("val")
    stored = load_centres(args.centres)["centres"]
    if len(stored) != len(train):
        raise SystemExit(f"{args.centres} holds {len(stored)} centres but the FER+ training split has {len(train)} images: "
                         "not this data's centre file")
    t = FERTransform(img_size=args.img_size, channels=1)
    eraser_args = {"area": tuple(args.area), "aspect": tuple(args.aspect), "fill": "random"}
    teacher = load_network(args.teacher, num_classes=8, in_chans=1, img_size=args.img_size)

    def load(ds, idx):
        x = torch.stack([t(ds.load_image(int(i)))["image"] for i in idx])
        return x, torch.as_tensor(np.asarray(ds.labels)[idx]).long()

    # training side: the stored centres (the raw FER+ images are 48 x 48, so raw and input coordinates agree)
    idx = np.sort(np.random.default_rng(args.seed).choice(len(train), size=min(args.train_images, len(train)), replace=False))
    x, y = load(train, idx)
    erased, areas = erased_views(x, stored[idx], eraser_args, args.seed)
    train_side = score(teacher, {"clean": x, **erased}, y, args.batch_size, areas=areas)
    print(f"teacher on {len(idx)} training images: " + "; ".join(
        f"{k} {100 * v['acc']:.1f} % (p(label) {v['p_label']:.3f})" for k, v in train_side.items()), flush=True)

    # evaluation side: centres located afresh on validation images with the teacher and the suite's settings
    n = min(args.val_images, len(val))
    xv, yv = load(val, np.arange(n))
    locator = PointAttackLocator(teacher, attack="l0_greedy", max_points=args.max_points,
                                 points_per_step=args.points_per_step, window=args.window, stride=args.stride)
    cv = torch.cat([locator.locate(xb, yb) for xb, yb in zip(xv.split(args.batch_size), yv.split(args.batch_size))])
    vviews = {"clean": xv, **erased_views(xv, cv.numpy(), eraser_args, args.seed + 1)[0]}
    nets = {"teacher": teacher} if not args.net else {}
    for spec in args.net:
        name, ckpt = spec.split("=", 1)
        nets[name] = load_network(ckpt, num_classes=8, in_chans=1, img_size=args.img_size)
    val_side = {}
    for name, net in nets.items():
        val_side[name] = score(net, vviews, yv, args.batch_size)
        print(f"{name} on {n} validation images: " + "; ".join(
            f"{k} {100 * v['acc']:.1f} %" for k, v in val_side[name].items()), flush=True)

    stats = centre_stats(stored, args.img_size)
    plot_centres(stored, args.img_size, Path(args.plot),
                 f"{Path(args.centres).name}: {stats['images']} training centres")
    payload = {
        "benchmark": "PASM: erasing at located vs random positions (teacher and students, FER+ 48 px)",
        "command": "OMP_NUM_THREADS=1 python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "settings": {k: v for k, v in vars(args).items() if k not in ("output", "plot")},
        "environment": environment(),
        "teacher": Path(args.teacher).parent.parent.name + "/" + Path(args.teacher).name,
        "train_side": {"images": int(len(idx)), "teacher": train_side},
        "val_side": {"images": int(n), "networks": val_side},
        "centres": stats,
        "plot": Path(args.plot).name,
    }
    write_results(args.output, payload)
    if Path(args.output).resolve() == (REPO / "benchmarks/results/pasm_erase_study.json").resolve():
        from tables import fill_markers

        fill_markers(REPO / "ferkit" / "methods" / "pasm" / "README.md", {"pasm_erase_study": study_table(payload)})


def study_table(payload: dict) -> str:
    """The PASM card's table, from the result file only."""
    tr, va = payload["train_side"], payload["val_side"]
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    lines = ["| network | images | clean acc % | erased at located centre: acc % (right -> wrong %) | "
             "erased at random: acc % (right -> wrong %) |", "|---|---|---|---|---|"]
    t = tr["teacher"]
    lines.append(f"| teacher `{payload['teacher']}` | {tr['images']} training | {pct(t['clean']['acc'])} | "
                 f"{pct(t['located']['acc'])} ({pct(t['located']['flipped_from_right'])}) | "
                 f"{pct(t['random']['acc'])} ({pct(t['random']['flipped_from_right'])}) |")
    for name, r in va["networks"].items():
        lines.append(f"| `{name}` | {va['images']} validation | {pct(r['clean']['acc'])} | "
                     f"{pct(r['located']['acc'])} ({pct(r['located']['flipped_from_right'])}) | "
                     f"{pct(r['random']['acc'])} ({pct(r['random']['flipped_from_right'])}) |")
    by = zip(t["located"]["by_area"], t["random"]["by_area"])
    lines += ["", "The teacher on the same training images, by erased area: " + "; ".join(
        f"{100 * a['area'][0]:.0f}-{100 * a['area'][1]:.0f} % of the image ({a['images']} images): {pct(a['acc'])} % "
        f"located, {pct(b['acc'])} % random" for a, b in by) + "."]
    c = payload["centres"]
    rows = c["rows_top_middle_bottom"]
    lines += ["", f"Same box size for both erasings (area {payload['settings']['area']}, aspect "
                  f"{payload['settings']['aspect']}, random fill, every image erased). Training centres: mean (x, y) = "
                  f"{tuple(c['mean_xy'])}, {pct(rows[0])} / {pct(rows[1])} / {pct(rows[2])} % in the top / middle / bottom "
                  f"third of the image, {c['distinct_positions']} distinct positions "
                  f"(`benchmarks/results/plots/{payload['plot']}`). Command: `{payload['command']}`."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
