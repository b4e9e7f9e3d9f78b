"""What routing the stem max-pool through PyTorch's channels-last CPU kernel buys, and that it pools the same.

:class:`ferkit.backbones.ChannelsLastMaxPool2d` (every ferkit backbone's ``nn.MaxPool2d``) pools channels-first CPU
tensors with the channels-last kernel. This script times, in ONE process, interleaved over repetitions after a
warm-up (so that load from other processes affects the settings alike), with the channels-last route on and off:

* ``pool``: the stem pool alone, forward and backward, on a 48-px FER+ batch's stem output (batch x 64 x 24 x 24,
  bf16 as under autocast);
* ``ce``: a full training step of the label-noise suites' CE network (timm ResNet-18 through
  :class:`ferkit.models.FERNet`, 1 x 48 px, standard stem, 8 classes, contiguous weights, Adam fused, bf16 autocast);
* ``lanet``: a full training step of :class:`ferkit.methods.LANetClassifier` with the same network (its query
  network and momentum key encoder each run the stem), on random images and landmarks.

A setting's speed-up is the median over repetitions of its paired ratio to the plain pool. The record also holds the
largest difference between the two routes' outputs and input gradients (fp32 and bf16, random inputs).

    python benchmarks/channels_last_pool.py --output benchmarks/results/channels_last_pool_<cpu>.json

``--smoke`` (batch 2, one repetition) checks the script runs.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (interleaved_step_times, lane_timing_args, recipe_network, timing_record,  # noqa: E402
                    training_step, write_results)

from ferkit.backbones import ChannelsLastMaxPool2d  # noqa: E402
from ferkit.backbones import channels_last_pool as clp  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return lane_timing_args(__doc__, argv)


def pool_step(batch: int, side: int):
    """Forward and backward of the stem pool on a fixed bf16 ``batch x 64 x side x side`` map."""
    pool = ChannelsLastMaxPool2d(kernel_size=3, stride=2, padding=1)
    x = torch.randn(batch, 64, side, side).bfloat16().requires_grad_()

    def step() -> None:
        pool(x).float().sum().backward()
        x.grad = None

    return step


def lanet_step(batch: int, img: int):
    """One training step of LA-Net (all four losses, Adam fused, bf16 autocast) on random images and landmarks."""
    from ferkit.methods import LANetClassifier
    from ferkit.models import FERNetConfig

    torch.manual_seed(0)
    model = LANetClassifier(net=FERNetConfig(backbone="resnet18"), num_classes=8, in_chans=1, img_size=img)
    n = 4 * batch
    model.lde_bank.init_from_labels(torch.randint(0, 8, (n,)))
    for hook in ("log_train", "log_train_accuracy"):  # no trainer to log to
        setattr(model, hook, lambda *a, **k: None)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    gen = torch.Generator().manual_seed(0)
    batch_data = {"image": torch.randn(batch, 1, img, img, generator=gen),
                  "label": torch.randint(0, 8, (batch,), generator=gen),
                  "index": torch.randperm(n, generator=gen)[:batch],
                  "landmarks": torch.rand(batch, 68, 2, generator=gen) * (img - 8) + 4}

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model.training_step(batch_data, 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def agreement(batch: int, side: int) -> dict[str, float]:
    """Largest output and input-gradient differences between the two routes (random inputs: no ties in fp32)."""
    pool = ChannelsLastMaxPool2d(kernel_size=3, stride=2, padding=1)
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(batch, 64, side, side, generator=torch.Generator().manual_seed(1)).to(dtype)
        g = torch.randn(batch, 64, (side + 1) // 2, (side + 1) // 2).to(dtype)
        results = []
        for enabled in (False, True):
            clp._ENABLED = enabled
            xi = x.clone().requires_grad_()
            y = pool(xi)
            y.backward(g)
            results.append((y.detach(), xi.grad))
        clp._ENABLED = True
        name = "fp32" if dtype == torch.float32 else "bf16"
        out[f"{name}_output_max_abs_diff"] = float((results[0][0].float() - results[1][0].float()).abs().max())
        out[f"{name}_grad_max_abs_diff"] = float((results[0][1].float() - results[1][1].float()).abs().max())
        out[f"{name}_output_is_contiguous"] = bool(results[1][0].is_contiguous())
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    out, net = recipe_network(args, "channels_last_pool")
    side = args.img_size // 2  # the stem convolution's stride
    makers = {"pool": lambda: pool_step(args.batch_size, side),
              "ce": lambda: training_step(copy.deepcopy(net), args.batch_size, args.img_size, bf16=True,
                                          optimizer=lambda ps: torch.optim.Adam(ps, lr=1e-3, weight_decay=1e-4,
                                                                                fused=True)),
              "lanet": lambda: lanet_step(args.batch_size, args.img_size)}
    steps = {}
    for name, make in makers.items():
        step = make()
        for enabled in (False, True):
            steps[(name, enabled)] = step  # the same model for both routes: only the pool's kernel differs

    def run(key) -> None:
        clp._ENABLED = key[1]
        try:
            steps[key]()
        finally:
            clp._ENABLED = True

    times = interleaved_step_times(steps, args, run=run)
    rows = []
    for name, enabled in steps:
        per_step = statistics.median(times[(name, enabled)])
        ratios = [a / b for a, b in zip(times[(name, False)], times[(name, enabled)])]
        rows.append({"setting": name, "channels_last_pool": enabled, "median_step_seconds": per_step,
                     "images_per_second": args.batch_size / per_step, "step_seconds": times[(name, enabled)],
                     "speedup_vs_plain_paired_median": statistics.median(ratios)})
        print(f"{name:5s} {'channels-last' if enabled else 'plain':13s}: {1000 * per_step:7.1f} ms / step, "
              f"x{statistics.median(ratios):.2f} against the plain pool")
    agree = agreement(min(args.batch_size, 8), side)
    print(f"outputs equal to {max(agree['fp32_output_max_abs_diff'], agree['bf16_output_max_abs_diff']):.1e}, "
          f"input gradients to {max(agree['fp32_grad_max_abs_diff'], agree['bf16_grad_max_abs_diff']):.1e}")
    record = timing_record(
        "channels_last_pool", args, argv,
        benchmark="stem max-pool through the channels-last CPU kernel vs the plain pool: pool, CE and LA-Net steps",
        network=f"timm resnet18 via FERNet, standard stem, 1 x {args.img_size} px, 8 classes, contiguous weights, "
                f"bf16 autocast, batch {args.batch_size}, Adam fused",
        pool_input=[args.batch_size, 64, side, side], agreement=agree, results=rows)
    write_results(out, record)
    return record


if __name__ == "__main__":
    main()
