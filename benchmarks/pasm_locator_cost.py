"""What PASM's centre pass costs per image, for each attack option, against one training step's cost per image.

The network is the FER+ CPU recipe's (ResNet-18 with the standard stem as in the ``ferplus_pasm`` suite,
``--small-input`` for the stem without max-pool; 48 px grayscale, 8 classes); the images are synthetic faces (no dataset needed) and the teacher is freshly initialised, so the greedy
attack's early stop (a flipped prediction) happens when it happens for that network: the result also records how
many pixels the attack perturbed per image (rounds = pixels / points_per_step) and the worst case (the full budget).
One thread, small scale. Writes ``benchmarks/results/pasm_locator_cost.json`` and the table between the
``<!-- bench:pasm_locator_cost -->`` markers of ``ferkit/methods/pasm/README.md``.

    OMP_NUM_THREADS=1 python benchmarks/pasm_locator_cost.py

With ``--teacher CKPT --ferplus-root DIR`` it times the real case instead: a trained teacher (e.g. the ``ferplus_pasm``
suite's generation 0) on the first ``--images`` FER+ training images (read locally; no image is written anywhere),
and writes ``benchmarks/results/pasm_locator_cost_trained.json`` and the ``pasm_locator_cost_trained`` table. The
training step is then timed on a trainable copy of the teacher (the same architecture; the step's cost does not depend on
the weights).

    OMP_NUM_THREADS=1 python benchmarks/pasm_locator_cost.py --images 256 \
        --teacher benchmarks/runs/ferplus_pasm/gen0_s0/ckpt/best-epoch=23.ckpt --ferplus-root ../shared/data/fer2013
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--img-size", type=int, default=48)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--small-input", action="store_true", help="the stem without max-pool (about 2.7x the compute)")
    p.add_argument("--max-points", type=int, default=32)
    p.add_argument("--points-per-step", type=int, default=4)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--epochs", type=int, default=30, help="epochs per generation, for the fraction of a generation")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--teacher", default=None, help="a trained ferkit checkpoint to attack (default: a fresh network)")
    p.add_argument("--ferplus-root", default=None,
                   help="time on FER+ training images from this folder (fer2013.csv + fer2013new.csv) instead of synthetic faces")
    p.add_argument("--output", default=None, help="default: benchmarks/results/pasm_locator_cost.json, or "
                                                   "pasm_locator_cost_trained.json with --teacher")
    args = p.parse_args()
    trained = args.teacher is not None
    name = "pasm_locator_cost_trained" if trained else "pasm_locator_cost"
    args.output = args.output or str(REPO / f"benchmarks/results/{name}.json")

    import numpy as np
    import torch
    import torch.nn.functional as F

    from ferkit.data import SyntheticFaces
    from ferkit.data.transforms import FERTransform
    from ferkit.miners.point_attack import PointAttackLocator
    from ferkit.models import FERNetConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.ferplus_root:
        from ferkit.data import FERPlusSource

        faces = FERPlusSource(root=args.ferplus_root, label_mode="majority", num_classes=8).build("train")
        if len(faces) < args.images:
            raise SystemExit(f"--images {args.images}: the FER+ training split has only {len(faces)}")
    else:
        faces = SyntheticFaces(split="train", num_samples=args.images, image_size=args.img_size)
    t = FERTransform(img_size=args.img_size, channels=1)
    x = torch.stack([t(faces.load_image(i))["image"] for i in range(args.images)])
    y = torch.as_tensor(np.asarray(faces.labels)[: args.images]).long()
    if trained:
        from ferkit.methods.pasm import load_network

        teacher = load_network(args.teacher, num_classes=8, in_chans=1, img_size=args.img_size)
        with torch.no_grad():
            teacher_acc = float(torch.cat([teacher(xb).argmax(1) for xb in x.split(args.batch_size)]).eq(y).float().mean())
        net = copy.deepcopy(teacher)  # the same architecture, for the training step
        for q in net.parameters():
            q.requires_grad_(True)
        args.small_input = bool(getattr(teacher, "config", None) and getattr(teacher.config, "small_input", False))
    else:
        net = FERNetConfig(backbone=args.backbone, pool="avg", small_input=args.small_input).build(
            num_classes=8, in_chans=1, img_size=args.img_size)
    batches = list(zip(x.split(args.batch_size), y.split(args.batch_size)))

    def timed(fn) -> float:
        fn(*batches[0])  # warm-up
        start = time.perf_counter()
        for xb, yb in batches:
            fn(xb, yb)
        return 1000 * (time.perf_counter() - start) / args.images

    # one training step (forward, backward, AdamW update) per image, as in a generation's epoch
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def train_step(xb, yb):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(xb), yb).backward()
        opt.step()

    train_ms = timed(train_step)
    if trained:
        net = teacher  # the attacks run on the trained weights (frozen, eval mode)
    net.eval()
    for q in net.parameters():
        q.requires_grad_(False)
    results = {}
    passes = -(-args.max_points // args.points_per_step)
    for attack in ("l0_greedy", "sparse_pgd", "saliency"):
        loc = PointAttackLocator(net, attack=attack, max_points=args.max_points, points_per_step=args.points_per_step,
                                 window=args.window, stride=args.stride)
        ms = timed(loc.locate)
        maps = [loc.perturbation_map(xb, yb) for xb, yb in batches]
        perturbed = torch.cat([m[0].flatten(1).sum(1) for m in maps]).float()
        results[attack] = {
            "ms_per_image": round(ms, 2),
            "fraction_of_one_training_epoch": round(ms / train_ms, 3),
            "fraction_of_a_generation": round(ms / (train_ms * args.epochs), 4),
            "mean_perturbed_pixels": round(float(perturbed.mean()), 2),
            # saliency: one gradient; greedy: one per round; sparse PGD: the first one, then one after every step
            "gradient_passes_worst_case": {"saliency": 1, "l0_greedy": passes, "sparse_pgd": passes + 1}[attack],
        }
        print(f"{attack:>10}: {ms:.1f} ms / image: the centre pass costs {ms / train_ms:.2f} training epochs "
              f"({100 * ms / (train_ms * args.epochs):.1f} % of a {args.epochs}-epoch generation); "
              f"{float(perturbed.mean()):.1f} pixels perturbed", flush=True)
    print(f"training step: {train_ms:.1f} ms / image", flush=True)
    payload = {
        "benchmark": "PASM locator cost per image vs a training step per image (CPU, ResNet-18, 48 px gray)",
        "command": "OMP_NUM_THREADS=1 python " + " ".join(sys.argv),
        "settings": vars(args),
        "environment": environment(),
        "train_step_ms_per_image": round(train_ms, 2),
        "attacks": results,
        "note": ("a trained teacher on FER+ training images" if trained else
                 "the teacher is freshly initialised (a trained one stops the greedy attack at a different point)")
                + "; the centre pass runs once per generation, so its share of a generation is the per-image ratio "
                "divided by the generation's epochs",
    }
    if trained:
        payload["teacher"] = {"checkpoint": Path(args.teacher).name, "accuracy_on_these_images": round(teacher_acc, 4)}
        payload["images"] = f"the first {args.images} FER+ training images (majority labels)"
    write_results(args.output, payload)
    if Path(args.output).resolve() == (REPO / f"benchmarks/results/{name}.json").resolve():
        from tables import fill_markers  # the README's table, from this result only

        fill_markers(REPO / "ferkit" / "methods" / "pasm" / "README.md", {name: cost_table(payload)})


def cost_table(payload: dict) -> str:
    """The README's table, from the result file only."""
    s = payload["settings"]
    lines = ["| attack | ms per image | centre pass / one training epoch | centre pass / a "
             f"{s['epochs']}-epoch generation | pixels perturbed (mean) | gradient passes (worst case) |",
             "|---|---|---|---|---|---|"]
    for name, r in payload["attacks"].items():
        lines.append(f"| `{name}` | {r['ms_per_image']:.2f} | {r['fraction_of_one_training_epoch']:.2f} | "
                     f"{100 * r['fraction_of_a_generation']:.1f} % | {r['mean_perturbed_pixels']:.2f} | "
                     f"{r['gradient_passes_worst_case']} |")
    lines.append(f"| (training step, forward + backward + AdamW) | {payload['train_step_ms_per_image']:.2f} | 1 | — | — | — |")
    stem = "stem without max-pool" if s.get("small_input") else "standard stem"
    if payload.get("teacher"):
        what = (f"{s['images']} FER+ training images, teacher `{payload['teacher']['checkpoint']}` (trained; "
                f"{100 * payload['teacher']['accuracy_on_these_images']:.1f} % right on these images)")
    else:
        what = f"{s['images']} synthetic faces, freshly initialised teacher"
    lines += ["", f"ResNet-18 ({stem}), {s['img_size']} px grayscale, batch {s['batch_size']}, {what}, "
                  f"{s['threads']} thread(s), fp32; `max_points={s['max_points']}`, "
                  f"`points_per_step={s['points_per_step']}`. Command: `{payload['command']}`."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
