"""ARM speed: training-step and inference time of FERNet(pool="arm") against FERNet(pool="avg") on CPU.

Both models (same timm backbone, random init) are timed in ONE process, interleaved over the repetitions (the
order alternates every repetition) after a warm-up, so that load from other processes affects both alike; the
report gives medians and the ratios arm/avg (of the medians, of the minimums, and the median of the
per-repetition ratios; on a shared machine bursts of load inflate single repetitions, which the latter two resist). A training step is forward + cross-entropy + backward + Adam step;
inference is a forward pass in eval mode under ``torch.inference_mode``.

Run (heavy: take the shared lock so runs do not overlap)::

    flock /tmp/ferkit_heavy.lock python benchmarks/arm_speed.py            # ResNet-18, 112 px, batch 32, 2 threads

At 112 px ResNet-18's map is 4x4; the default ARM configuration (shuffle 16, kernel 32, stride 8, the official
geometry) arranges it to 2 x 64 x 64 and gives a 5x5 = 25-d feature. Change it with --arm-shuffle/--arm-kernel/
--arm-stride. Writes ``benchmarks/results/arm_speed.json``.

``--smoke`` (batch 2, 2 repetitions, no warm-up; seconds) checks that the script runs and writes to a temporary
folder (or ``--output``), never over the committed result.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import result_path  # noqa: E402

from ferkit.models import FERNet, FERNetConfig  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--img-size", type=int, default=112)
    p.add_argument("--in-chans", type=int, default=3)
    p.add_argument("--num-classes", type=int, default=7)
    p.add_argument("--repeats", type=int, default=20, help="timed repetitions per model (interleaved)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model before timing")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--arm-shuffle", type=int, default=16)
    p.add_argument("--arm-kernel", type=int, default=32)
    p.add_argument("--arm-stride", type=int, default=8)
    p.add_argument("--arm-affinity", default="ema", choices=["ema", "batch", "none"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", "--out", dest="output", default=None,
                   help="result file (default: benchmarks/results/arm_speed.json; with --smoke a temporary folder)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (batch 2, 2 repetitions): checks the script runs")
    args = p.parse_args(argv)
    if args.smoke:
        args.batch_size, args.repeats, args.warmup, args.threads = 2, 2, 0, 1
    args.out = result_path(args.output, "arm_speed", args.smoke)
    return args


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build(args: argparse.Namespace, pool: str) -> FERNet:
    torch.manual_seed(args.seed)  # same backbone initialisation for both models
    kwargs = None
    if pool == "arm":
        kwargs = {"shuffle": args.arm_shuffle, "kernel_size": args.arm_kernel, "stride": args.arm_stride,
                  "affinity": args.arm_affinity}
    net = FERNetConfig(backbone=args.backbone, pool=pool, pool_kwargs=kwargs)
    return net.build(num_classes=args.num_classes, in_chans=args.in_chans, img_size=args.img_size)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch_size, args.in_chans, args.img_size, args.img_size, generator=gen)
    y = torch.randint(0, args.num_classes, (args.batch_size,), generator=gen)

    models = {"avg": build(args, "avg"), "arm": build(args, "arm")}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3, weight_decay=1e-4) for k, m in models.items()}

    def train_step(name: str) -> float:
        model, opt = models[name], opts[name]
        model.train()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        return time.perf_counter() - t0

    def infer(name: str) -> float:
        model = models[name]
        model.eval()
        t0 = time.perf_counter()
        with torch.inference_mode():
            model(x)
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        for name in models:
            train_step(name)
            infer(name)

    times: dict[str, dict[str, list[float]]] = {k: {"train": [], "infer": []} for k in models}
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    for rep in range(args.repeats):
        order = ["avg", "arm"] if rep % 2 == 0 else ["arm", "avg"]  # alternate to cancel drift
        for name in order:
            times[name]["train"].append(train_step(name))
        for name in order:
            times[name]["infer"].append(infer(name))
    wall = time.perf_counter() - t_start
    load_after = os.getloadavg()

    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in times.items()}
    arm_pool = models["arm"].pool
    result = {
        "benchmark": "arm_speed",
        "command": "python benchmarks/arm_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "timm": __import__("timm").__version__},
        "hardware": {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                     "loadavg_1min_before": round(load_before[0], 2), "loadavg_1min_after": round(load_after[0], 2)},
        "smoke": args.smoke,
        "settings": {"backbone": args.backbone, "pretrained": None, "batch_size": args.batch_size,
                     "img_size": args.img_size, "in_chans": args.in_chans, "num_classes": args.num_classes,
                     "repeats": args.repeats, "warmup": args.warmup, "optimizer": "Adam(lr=1e-3, wd=1e-4)",
                     "feature_map": f"{models['arm'].backbone.num_features}x{models['arm'].feat_size}x{models['arm'].feat_size}",
                     "arm": {"shuffle": arm_pool.shuffle, "kernel_size": arm_pool.kernel_size, "stride": arm_pool.stride,
                             "affinity": arm_pool.affinity, "arranged": f"{arm_pool.arranged_channels}x"
                             f"{arm_pool.arranged_size}x{arm_pool.arranged_size}",
                             "out_features": arm_pool.out_features}},
        "params": {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()},
        "median_s": {k: {m: round(v, 5) for m, v in d.items()} for k, d in med.items()},
        "min_s": {k: {m: round(min(v), 5) for m, v in d.items()} for k, d in times.items()},
        "ratio_arm_over_avg": {m: round(med["arm"][m] / med["avg"][m], 4) for m in ("train", "infer")},
        # robust to bursts of load from other processes: best-of-N, and the median of the per-repetition pairs
        "ratio_arm_over_avg_min": {
            m: round(min(times["arm"][m]) / min(times["avg"][m]), 4) for m in ("train", "infer")
        },
        "ratio_arm_over_avg_paired_median": {
            m: round(statistics.median(a / v for a, v in zip(times["arm"][m], times["avg"][m])), 4)
            for m in ("train", "infer")
        },
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "timed_wall_s": round(wall, 2),
        "raw_s": {k: {m: [round(t, 5) for t in v] for m, v in d.items()} for k, d in times.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    keys = ("settings", "params", "median_s", "min_s", "ratio_arm_over_avg", "ratio_arm_over_avg_min",
            "ratio_arm_over_avg_paired_median", "peak_rss_mib", "hardware")
    print(json.dumps({k: result[k] for k in keys},
                     indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
