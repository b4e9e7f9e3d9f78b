"""Should the CPU queue run its runs one at a time with every thread, or several side by side with one thread each?

One process with N threads (N = the cores) takes the FER+ recipe's training step (timm ResNet-18 through
:class:`ferkit.models.FERNet`, 1 x 48 px, 8 classes, bf16 autocast, batch 64, AdamW) for a fixed number of steps; then
N processes with one thread each take the same steps at the same time. Both are repeated, interleaved, and the report
gives the median images per second of the machine as a whole in each mode and their ratio: the throughput a queue of
long runs gains (or loses) by running lanes side by side. Each lane's run then takes longer than it would alone, so the
harness records how many runs shared the CPU (``cpu_lanes``) and the tables say so.

    python benchmarks/cpu_lanes.py            # writes benchmarks/results/cpu_lanes.json (about 3 minutes here)

This is the model's cost alone; a real fit also decodes and augments in its main process (``num_workers: 0``), work
a single process cannot overlap with its own steps, so side-by-side lanes gain at least as much in a real queue. The
records confirm it: compare the median minutes per epoch of the same configuration run alone and in a lane.
``--smoke`` (batch 2, 1 repetition) checks the script runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, result_path, training_step, write_results  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lanes", type=int, default=os.cpu_count() or 1, help="processes side by side (default: cores)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--img-size", type=int, default=48)
    p.add_argument("--steps", type=int, default=40, help="timed steps per process and repetition")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repetitions of both modes")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    p.add_argument("--output", default=None)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)  # internal: threads of one worker
    args = p.parse_args(argv)
    if args.smoke:
        args.batch_size, args.steps, args.repeats, args.warmup = 2, 1, 1, 0
    return args


def worker(args: argparse.Namespace) -> None:
    """Time ``steps`` training steps with ``args.worker`` threads; print the seconds they took."""
    import torch

    from ferkit.models import FERNetConfig

    torch.set_num_threads(args.worker)
    torch.manual_seed(0)
    net = FERNetConfig(backbone="resnet18", small_input=False).build(num_classes=8, in_chans=1, img_size=args.img_size)
    step = training_step(net, args.batch_size, args.img_size)
    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    print(f"SECONDS {time.perf_counter() - t0:.6f}", flush=True)


def launch(args: argparse.Namespace, processes: int, threads: int) -> float:
    """Start ``processes`` workers with ``threads`` threads each at once; the machine's images per second."""
    cmd = [sys.executable, __file__, "--worker", str(threads), "--batch-size", str(args.batch_size), "--img-size",
           str(args.img_size), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(processes)]
    seconds = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"cpu_lanes: a worker failed (exit {p.returncode}); run {' '.join(cmd)} to see why")
        seconds.append(float(next(line.split()[1] for line in out.splitlines() if line.startswith("SECONDS"))))
    # each worker's images per second over its own timed window, summed over the workers running together
    return sum(args.steps * args.batch_size / s for s in seconds)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.worker is not None:
        worker(args)
        return {}
    out = result_path(args.output, "cpu_lanes", args.smoke)  # refused before the measurement, not after
    modes = {"one process, %d threads" % args.lanes: (1, args.lanes),
             "%d processes, 1 thread each" % args.lanes: (args.lanes, 1)}
    ips: dict[str, list[float]] = {m: [] for m in modes}
    for rep in range(args.repeats):
        order = list(modes) if rep % 2 == 0 else list(modes)[::-1]
        for m in order:
            ips[m].append(launch(args, *modes[m]))
            print(f"repeat {rep + 1}/{args.repeats}: {m}: {ips[m][-1]:.1f} images/s", flush=True)
    single, lanes = (statistics.median(ips[m]) for m in modes)
    print(f"side-by-side lanes / one process: x{lanes / single:.2f} images per second")
    record = {"benchmark": "CPU queue throughput: one multi-threaded process vs side-by-side 1-thread processes",
              "command": "python benchmarks/cpu_lanes.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "smoke": args.smoke, "network": "timm resnet18 via FERNet, avg pool, 1 x %d px, 8 classes, bf16 autocast, "
              "batch %d, AdamW" % (args.img_size, args.batch_size),
              "lanes": args.lanes, "steps": args.steps, "repeats": args.repeats, "warmup": args.warmup,
              "images_per_second": ips, "median_images_per_second": dict(zip(modes, (single, lanes))),
              "lanes_over_single": lanes / single, "environment": environment()}
    write_results(out, record)
    return record


if __name__ == "__main__":
    main()
