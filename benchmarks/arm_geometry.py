"""What a sound ARM geometry costs: the training step of each way to give ResNet-18 a 6x6 final map on FER+ faces.

ARM turns the last feature map into s^2 features, so on the FER+ recipe's 2x2 map (48 px, standard stem) it has
almost nothing to work with. A 6x6 map can come from a larger input (96 px without the stem max-pool), from dilation
(timm's ``output_stride``, :class:`ferkit.models.FERNetConfig`'s ``output_stride``) at the native 48 px, or both.
Each geometry's training step (forward, cross-entropy, backward, AdamW; bf16 autocast, batch 64, 1 channel, 8 classes)
is timed with average pooling and with ARM, interleaved over the repetitions after a warm-up, against the recipe's
step (48 px, standard stem, average pooling). The weights are identical in number in every geometry: only the cost
and the map change.

    python benchmarks/arm_geometry.py          # writes benchmarks/results/arm_geometry.json (about 3 minutes here)

``--smoke`` (batch 2, 1 repetition) checks the script runs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (interleaved_step_times, result_path, smoke_timing, timing_options, timing_record,  # noqa: E402
                    training_step, write_results)

from ferkit.models import FERNetConfig  # noqa: E402

#: (name, image side, small_input, output_stride)
GEOMETRIES = [
    ("recipe: 48 px, standard stem", 48, False, None),
    ("96 px, no stem max-pool", 96, True, None),
    ("48 px, no stem max-pool, output stride 16", 48, True, 16),
    ("48 px, standard stem, output stride 8", 48, False, 8),
]
#: the ARM geometry of the ferplus_clean suite on a 6x6 map (9x9 = 81 features)
ARM_KWARGS = {"shuffle": 16, "kernel_size": 32, "stride": 8, "affinity": "ema"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    timing_options(p, steps=5, repeats=5, warmup=2, threads=2, batch_size=64)
    return smoke_timing(p.parse_args(argv))


def make_step(img: int, small_input: bool, output_stride: int | None, pool: str, batch: int):
    torch.manual_seed(0)
    cfg = FERNetConfig(backbone="resnet18", pool=pool, small_input=small_input, output_stride=output_stride,
                       pool_kwargs=dict(ARM_KWARGS) if pool == "arm" else None)
    net = cfg.build(num_classes=8, in_chans=1, img_size=img)
    return training_step(net, batch, img), net.feat_size, net.num_features


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = result_path(args.output, "arm_geometry", args.smoke)  # refused before the measurement, not after
    settings, steps, shapes = [], {}, {}
    for name, img, small, stride in GEOMETRIES:
        for pool in ("avg", "arm"):
            if pool == "arm" and name.startswith("recipe"):
                continue  # a 2x2 map: ARM's kernel does not fit (the point of this benchmark)
            key = (name, pool)
            steps[key], feat, nfeat = make_step(img, small, stride, pool, args.batch_size)
            shapes[key] = {"img_size": img, "small_input": small, "output_stride": stride, "pool": pool,
                           "map": f"{feat}x{feat}", "features": nfeat}
            settings.append(key)
    times = interleaved_step_times(steps, args)
    base = statistics.median(times[settings[0]])
    rows = []
    for key in settings:
        per_step = statistics.median(times[key])
        row = {"geometry": key[0], **shapes[key], "median_step_seconds": per_step,
               "images_per_second": args.batch_size / per_step, "cost_vs_recipe": per_step / base,
               "step_seconds": times[key]}
        rows.append(row)
        print(f"{key[0]:45s} {key[1]:3s} map {row['map']:>3s} features {row['features']:4d}: "
              f"{row['images_per_second']:7.1f} images/s, x{row['cost_vs_recipe']:.2f} the recipe's step cost")
    record = timing_record(
        "arm_geometry", args, argv,
        benchmark="ARM geometry: training-step cost of each way to a 6x6 ResNet-18 map (CPU)",
        network="timm resnet18 via FERNet, 1 channel, 8 classes, bf16 autocast, AdamW", arm_kwargs=ARM_KWARGS,
        batch_size=args.batch_size, results=rows)
    write_results(out, record)
    return record


if __name__ == "__main__":
    main()
