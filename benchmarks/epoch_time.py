"""What one suite run costs on this machine when it has the machine to itself, from a few of its epochs.

The CPU queue (``benchmarks/cpu_queue.sh``) runs two runs side by side for throughput, so a queued run's wall time is
not its cost alone (its record says ``cpu_lanes: 2``). Where the cost is itself a result (the FER+ recipe's "within
2 hours"), this script trains the same run (same config, overrides, data, seed) for ``--epochs`` epochs in a scratch
folder, with every thread, and projects its full fit time: the first epoch (start-up included) plus the median of
the later epochs times the remaining epochs, plus the test. It refuses to time while other ferkit fits run (their
load would be counted) unless ``--force``.

    python benchmarks/epoch_time.py ferplus_recipe soft_votes_flip_epochs60_s0 --epochs 3
    # -> benchmarks/results/timing/ferplus_recipe__soft_votes_flip_epochs60_s0.json

``--smoke`` times the suite's tiny setting (the tests use it with the synthetic ``smoke`` suite).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import environment, result_path, write_results  # noqa: E402
from benchmarks.harness import DEFAULT_DATA_ROOT, cpu_lanes, resolve_config, run_suite  # noqa: E402
from benchmarks.suite import load_suite  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("suite")
    p.add_argument("run", help="a run name of the suite (e.g. soft_votes_flip_epochs60_s0)")
    p.add_argument("--epochs", type=int, default=3, help="epochs to time (at least 2: the first includes start-up)")
    p.add_argument("--root", default=str(DEFAULT_DATA_ROOT), help="the dataset folder (default: %(default)s)")
    p.add_argument("--output", default=None, help="default: benchmarks/results/timing/<suite>__<run>.json")
    p.add_argument("--smoke", action="store_true", help="the suite's tiny setting")
    p.add_argument("--force", action="store_true", help="time even while other ferkit fits run")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch includes start-up)")
    return args


def stopped(pid: str) -> bool:
    """True for a process paused with SIGSTOP (state T): it uses no CPU, so it does not disturb the timing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].startswith(("T", "t"))


def other_fits() -> list[str]:
    """Command lines of ferkit fits running now (other than ours: none has started yet); paused ones do not count."""
    try:
        out = subprocess.run(["pgrep", "-af", "ferkit.cli fit"], capture_output=True, text=True).stdout
    except FileNotFoundError:  # no pgrep: cannot tell
        return []
    return [line for line in out.splitlines() if "pgrep" not in line and not stopped(line.split()[0])]


def full_epochs(run, config_path: str) -> int:
    """The run's own number of epochs: its last ``--trainer.max_epochs`` override, else its config's."""
    value = None
    for i, arg in enumerate(run.overrides):
        if arg == "--trainer.max_epochs" and i + 1 < len(run.overrides):
            value = run.overrides[i + 1]
        elif arg.startswith("--trainer.max_epochs="):
            value = arg.split("=", 1)[1]
    if value is None:
        import yaml

        value = (yaml.safe_load(Path(config_path).read_text()).get("trainer") or {}).get("max_epochs")
    if value is None:
        raise SystemExit(f"{run.name}: no trainer.max_epochs in its overrides or config; cannot project")
    return int(value)


def project(epoch_ends: list[float], fit_seconds: float, test_seconds: float, epochs: int) -> dict:
    """From the wall-clock ends of the timed epochs and the timed fit's seconds: the full run's projected fit time."""
    steps = [b - a for a, b in zip(epoch_ends, epoch_ends[1:])]
    if not steps:
        raise SystemExit("fewer than 2 epochs were timed; nothing to project from")
    per_epoch = statistics.median(steps)
    first = fit_seconds - sum(steps)  # start-up, the first epoch and the end of the fit
    fit = first + per_epoch * (epochs - 1)
    return {"epoch_seconds": steps, "median_epoch_seconds": per_epoch, "first_epoch_and_startup_seconds": first,
            "projected_fit_seconds": fit, "projected_fit_and_test_seconds": fit + test_seconds}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    suite = load_suite(args.suite)
    run = next((r for r in suite.runs if r.name == args.run), None)
    if run is None:
        raise SystemExit(f"suite {suite.name} has no run {args.run!r}; runs: {', '.join(r.name for r in suite.runs)}")
    out_path = result_path(args.output, f"timing/{suite.name}__{run.name}", args.smoke)  # refused before the timing
    busy = other_fits()
    if busy and not args.force:
        raise SystemExit("other ferkit fits are running, and their load would be counted:\n  " + "\n  ".join(busy)
                         + "\npause them (kill -STOP <pid>, later kill -CONT) or give --force")
    if cpu_lanes() > 1:
        raise SystemExit("FERKIT_BENCH_LANES > 1 says runs share the CPU; time with the machine to yourself")
    epochs = full_epochs(run, resolve_config(run.config))
    with tempfile.TemporaryDirectory(prefix="ferkit_epoch_time_") as tmp:
        (rec,) = run_suite(suite, only=[run.name], work_dir=Path(tmp) / "runs", results_dir=Path(tmp) / "results",
                           data_root=args.root, smoke=args.smoke, extra=["--trainer.max_epochs", str(args.epochs)],
                           predictions=False)  # only its times are kept
    ends = [h["time"] for h in rec["history"] if h.get("time") is not None]
    result = {"benchmark": "one suite run's cost alone, projected from a few epochs",
              "command": "python benchmarks/epoch_time.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "suite": suite.name, "run": run.name, "smoke": args.smoke, "timed_epochs": args.epochs,
              "full_epochs": epochs, "threads": rec["machine"].get("threads"), "machine": rec["machine"],
              "timed_fit_seconds": rec["wall_seconds"]["fit"], "test_seconds": rec["wall_seconds"]["test"],
              **project(ends, rec["wall_seconds"]["fit"], rec["wall_seconds"]["test"], epochs),
              "other_fits_running": busy, "environment": environment()}
    out = write_results(out_path, result)
    print(f"{suite.name}/{run.name}: {result['median_epoch_seconds'] / 60:.2f} min per epoch alone; "
          f"{epochs} epochs projected to {result['projected_fit_seconds'] / 60:.1f} fit minutes "
          f"(+ {result['test_seconds'] / 60:.1f} min test) -> {out}")
    return result


if __name__ == "__main__":
    main()
