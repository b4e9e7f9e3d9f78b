"""What PASM's centre pass costs per image, for each attack option, against one training step's cost per image.

The network is the FER+ CPU recipe's (ResNet-18 with the standard stem as in the ``ferplus_pasm`` suite,
``--small-input`` for the stem without max-pool; 48 px grayscale, 8 classes); the images are synthetic faces (no dataset needed) and the teacher is freshly initialised, so the greedy
attack's early stop (a flipped prediction) happens when it happens for that network: the result also records how
many pixels the attack perturbed per image (rounds = pixels / points_per_step) and the worst case (the full budget).
One thread, small scale. Writes ``benchmarks/results/pasm_locator_cost.json`` and the table between the
``<!-- bench:pasm_locator_cost -->`` markers of ``ferkit/methods/pasm/README.md``.

    OMP_NUM_THREADS=1 python benchmarks/pasm_locator_cost.py
"""
from __future__ import annotations

import argparse
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
    p.add_argument("--output", default=str(REPO / "benchmarks/results/pasm_locator_cost.json"))
    args = p.parse_args()

    import torch
    import torch.nn.functional as F

    from ferkit.data import SyntheticFaces
    from ferkit.data.transforms import FERTransform
    from ferkit.miners.point_attack import PointAttackLocator
    from ferkit.models import FERNetConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    faces = SyntheticFaces(split="train", num_samples=args.images, image_size=args.img_size)
    t = FERTransform(img_size=args.img_size, channels=1)
    x = torch.stack([t(faces.load_image(i))["image"] for i in range(args.images)])
    y = torch.as_tensor(faces.labels[: args.images]).long()
    net = FERNetConfig(backbone=args.backbone, pool="avg", small_input=args.small_input).build(num_classes=8, in_chans=1,
                                                                                  img_size=args.img_size)
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
    net.eval()
    for q in net.parameters():
        q.requires_grad_(False)
    results = {}
    passes = -(-args.max_points // args.points_per_step)
    for attack in ("l0_greedy", "sparse_pgd", "saliency"):
        loc = PointAttackLocator(net, attack=attack, max_points=args.max_points, points_per_step=args.points_per_step,
                                 window=args.window, stride=args.stride)
        ms = timed(loc.locate)
        perturbed = torch.cat([loc.perturbation_map(xb, yb)[0].flatten(1).sum(1) for xb, yb in batches]).float()
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
        "benchmark": "PASM locator cost per image vs a training step per image (CPU, ResNet-18 small-input, 48 px gray)",
        "command": "OMP_NUM_THREADS=1 python " + " ".join(sys.argv),
        "settings": vars(args),
        "environment": environment(),
        "train_step_ms_per_image": round(train_ms, 2),
        "attacks": results,
        "note": "the teacher is freshly initialised (a trained one stops the greedy attack at a different point); "
                "the centre pass runs once per generation, so its share of a generation is the per-image ratio "
                "divided by the generation's epochs",
    }
    write_results(args.output, payload)
    if Path(args.output).resolve() == (REPO / "benchmarks/results/pasm_locator_cost.json").resolve():
        from tables import fill_markers  # the README's table, from this result only

        fill_markers(REPO / "ferkit" / "methods" / "pasm" / "README.md", {"pasm_locator_cost": cost_table(payload)})


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
    lines += ["", f"ResNet-18 ({stem}), {s['img_size']} px grayscale, batch {s['batch_size']}, {s['images']} synthetic "
                  f"faces, {s['threads']} thread(s), freshly initialised teacher; `max_points={s['max_points']}`, "
                  f"`points_per_step={s['points_per_step']}`. Command: `{payload['command']}`."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
