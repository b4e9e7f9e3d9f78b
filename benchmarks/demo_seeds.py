"""``ferkit demo`` (Omni against its baseline on synthetic faces) for several training seeds, one record.

    python benchmarks/demo_seeds.py --seeds 0 1                    # runs the demos (about 5 minutes each on 2 cores)
    python benchmarks/demo_seeds.py --collect /tmp/d0 /tmp/d1      # or collects finished demo folders (cwd of each run)

Writes ``benchmarks/results/demo_omni_synthetic.json``: per seed the two rows of the demo's table, the mining summary
and the wall time, and the gap's mean and spread over seeds; and the table between the README's
``<!-- bench:demo_omni_synthetic -->`` markers.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def collect(folder: Path) -> dict:
    """The demo's outputs in ``folder`` (the working directory it ran in): its last runs/demo/omni/version_N."""
    runs = sorted((folder / "runs" / "demo" / "omni").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    if not runs:
        raise SystemExit(f"no runs/demo/omni/version_* in {folder}")
    out = runs[-1]
    rows = json.loads((out / "demo_summary.json").read_text())
    import yaml

    seed = yaml.safe_load((out / "config.yaml").read_text()).get("seed_everything")
    return {"seed": seed, "folder": str(out), "rows": [{k: r[k] for k in ("model", "acc", "mean_class_acc", "fit_seconds", "val_acc")}
                                                      for r in rows],
            "mining": json.loads((out / "omni_demo.json").read_text())}


def seed_table(payload: dict) -> str:
    """The README's table, from the record only."""
    lines = ["| seed | CE (labelled only): test acc % | Omni (+ mined, distilled): test acc % | gap (points) | mined (right) |",
             "|---|---|---|---|---|"]
    for r, g in zip(payload["runs"], payload["gap_points"]["per_seed"]):
        m = r["mining"]
        lines.append(f"| {r['seed']} | {r['rows'][0]['acc']:.2f} | **{r['rows'][1]['acc']:.2f}** | {g:+.2f} | "
                     f"{m['mined']} ({m['mined_right']}: {100 * m['mined_right'] / max(m['mined'], 1):.1f} %) |")
    gp = payload["gap_points"]
    lines += ["", f"Mean gap {gp['mean']:+.2f} points" + (f" (standard deviation {gp['sd']:.2f} over {len(gp['per_seed'])} "
                                                          "seeds)." if gp["sd"] is not None else ".")]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    p.add_argument("--collect", nargs="*", default=None, help="finished demo folders instead of running the demos")
    p.add_argument("--work", default="runs/demo_seeds")
    p.add_argument("--output", default=str(REPO / "benchmarks/results/demo_omni_synthetic.json"))
    args = p.parse_args()
    runs = []
    if args.collect is not None:
        runs = [collect(Path(f)) for f in args.collect]
    else:
        for s in args.seeds:
            folder = Path(args.work) / f"seed_{s}"
            folder.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ferkit.cli", "demo", "--seed_everything", str(s)], cwd=folder, check=True)
            run = collect(folder)
            run["wall_seconds"] = round(time.perf_counter() - t0, 1)
            runs.append(run)
    gaps = [r["rows"][1]["acc"] - r["rows"][0]["acc"] for r in runs]
    payload = {
        "benchmark": "ferkit demo: Omni vs its CE baseline on synthetic faces (a quarter labelled), per training seed",
        "command": "python " + " ".join(sys.argv),
        "environment": environment(),
        "runs": runs,
        "gap_points": {"per_seed": gaps, "mean": round(statistics.fmean(gaps), 2),
                       "sd": round(statistics.stdev(gaps), 2) if len(gaps) > 1 else None},
    }
    write_results(args.output, payload)
    if Path(args.output).resolve() == (REPO / "benchmarks/results/demo_omni_synthetic.json").resolve():
        sys.path.insert(0, str(REPO))  # tables imports the benchmarks package
        from tables import fill_markers  # the README's table, from this result only

        fill_markers(REPO / "README.md", {"demo_omni_synthetic": seed_table(payload)})
    print(f"Omni - CE per seed: {gaps} points (mean {statistics.fmean(gaps):.2f})")


if __name__ == "__main__":
    main()
