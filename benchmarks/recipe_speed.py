"""What the FER+ recipe's training step costs on this CPU under each speed option: precision (fp32 / bf16 autocast),
memory format (contiguous / channels_last), stem (standard / ``small_input``) and batch size.

The recipe's network (timm ResNet-18 through :class:`ferkit.models.FERNet`, 1 channel, 48 px, 8 classes, average
pooling) takes full training steps (forward, cross-entropy, backward, AdamW step) on random tensors, so the numbers are
the model's cost alone (ferkit's loader keeps up with a bare loop over in-memory tensors on this machine). All settings
are timed in ONE process, interleaved over the repetitions after a warm-up, so that load from other processes affects
them alike; the report gives the median images per second of each and its ratio to the fp32 / contiguous / standard
stem / batch-64 step.

    flock /tmp/ferkit_heavy.lock python benchmarks/recipe_speed.py        # writes benchmarks/results/recipe_speed.json

Accuracy per CPU-minute needs both halves: this script gives the cost of a step, the ``ferplus_recipe`` suite the
accuracy of each option at a fixed number of epochs. ``--smoke`` (batch 2, 1 repetition) checks the script runs.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (interleaved_step_times, result_path, smoke_timing, timing_options, timing_record,  # noqa: E402
                    training_step, write_results)

from ferkit.models import FERNetConfig  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128])
    timing_options(p, steps=6, repeats=3, warmup=2, threads=2, img_size=48)
    p.add_argument("--small-input", action="store_true", help="also time the stem without max-pool")
    args = smoke_timing(p.parse_args(argv))
    if args.smoke:
        args.batch_sizes = [2]
    return args


def make_step(precision: str, memory: str, small_input: bool, batch: int, img: int):
    torch.manual_seed(0)
    net = FERNetConfig(backbone="resnet18", small_input=small_input).build(num_classes=8, in_chans=1, img_size=img)
    return training_step(net, batch, img, bf16=precision == "bf16-mixed", channels_last=memory == "channels_last")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = result_path(args.output, "recipe_speed", args.smoke)  # refused before the measurement, not after
    stems = [False, True] if args.small_input else [False]
    settings = list(itertools.product(["32-true", "bf16-mixed"], ["contiguous", "channels_last"], stems,
                                      args.batch_sizes))
    steps = {s: make_step(*s, args.img_size) for s in settings}
    times = interleaved_step_times(steps, args)
    base = ("32-true", "contiguous", False, args.batch_sizes[0])
    rows = []
    for s in settings:
        per_step = statistics.median(times[s])
        ips = s[3] / per_step
        rows.append({"precision": s[0], "memory_format": s[1], "small_input": s[2], "batch_size": s[3],
                     "median_step_seconds": per_step, "images_per_second": ips, "step_seconds": times[s]})
    # channels_last against contiguous with the same precision, stem and batch, paired within each repetition
    # (both ran in the same sweep): the median of these ratios resists a burst of load better than the medians do
    by_key = {(r["precision"], r["memory_format"], r["small_input"], r["batch_size"]): r for r in rows}
    for r in rows:
        if r["memory_format"] == "channels_last":
            twin = by_key[(r["precision"], "contiguous", r["small_input"], r["batch_size"])]
            ratios = [a / b for a, b in zip(twin["step_seconds"], r["step_seconds"])]
            r["channels_last_speedup_paired_median"] = statistics.median(ratios)
            r["channels_last_speedup_per_repeat"] = ratios
    base_ips = next(r["images_per_second"] for r in rows
                    if (r["precision"], r["memory_format"], r["small_input"], r["batch_size"]) == base)
    for r in rows:
        r["speed_vs_fp32_contiguous_standard_b%d" % args.batch_sizes[0]] = r["images_per_second"] / base_ips
        print(f"{r['precision']:10s} {r['memory_format']:13s} small_input={str(r['small_input']):5s} "
              f"batch {r['batch_size']:4d}: {r['images_per_second']:7.1f} images/s "
              f"(x{r['images_per_second'] / base_ips:.2f})"
              + (f"; channels_last / contiguous, paired median x{r['channels_last_speedup_paired_median']:.2f}"
                 if "channels_last_speedup_paired_median" in r else ""))
    record = timing_record(
        "recipe_speed", args, argv, benchmark="FER+ recipe training step: images per second per speed option (CPU)",
        network="timm resnet18 via FERNet, avg pool, 1 x %d px, 8 classes" % args.img_size, results=rows)
    write_results(out, record)
    return record


if __name__ == "__main__":
    main()
