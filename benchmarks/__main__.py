"""``python -m benchmarks run <suite> | predict <suite> | adopt SRC DST | table | plot | status | list`` -- see
docs/benchmarks.md."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from benchmarks.harness import DEFAULT_DATA_ROOT, DEFAULT_RESULTS, DEFAULT_WORK, REPO, run_suite
from benchmarks.suite import available_suites, load_suite


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description="ferkit's benchmark harness: resumable suites "
                                "of `ferkit fit` runs, one JSON record per run, tables and plots built from the records.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run (or continue) a suite; finished runs are skipped, killed runs resume",
                       epilog="Overrides after `--` are given to every ferkit call, e.g. `-- --trainer.max_epochs 5`.")
    r.add_argument("suite", help=f"one of: {', '.join(available_suites())}")
    r.add_argument("--only", nargs="+", metavar="NAME", help="only these runs (run names or method labels)")
    r.add_argument("--root", default=str(DEFAULT_DATA_ROOT), help="the dataset folder (default: %(default)s)")
    r.add_argument("--work-dir", default=str(DEFAULT_WORK), help="where run folders live (default: %(default)s)")
    r.add_argument("--results", default=str(DEFAULT_RESULTS), help="where records go (default: %(default)s)")
    r.add_argument("--smoke", action="store_true", help="the suite's tiny setting (seconds per run); records go to "
                   "<results>/<suite>.smoke/, which the tables ignore")
    r.add_argument("--accelerator", default=None, help="override trainer.accelerator (cpu, gpu, auto)")
    r.add_argument("--stop-on-failure", action="store_true", help="stop at the first failed run")
    r.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="a run whose teacher run another process is training now waits for it (polling every SECONDS) "
                        "instead of failing; a teacher nobody is training still fails at once")

    pr = sub.add_parser("predict", help="add each test image's prediction to finished records made before the harness "
                        "wrote them (from the run folder's tested checkpoint; checked against the recorded accuracy)")
    pr.add_argument("suite", nargs="+", help="suites")
    pr.add_argument("--only", nargs="+", metavar="NAME", help="only these runs (run names or method labels)")
    pr.add_argument("--work-dir", default=str(DEFAULT_WORK))
    pr.add_argument("--results", default=str(DEFAULT_RESULTS))

    ad = sub.add_parser("adopt", help="count a record trained in another suite (e.g. gpu) as a run of this one, after "
                        "checking it is the same run: same config, seed and overrides but where it ran")
    ad.add_argument("source", help="SUITE/RUN of the record, e.g. gpu/arm_clean_s1")
    ad.add_argument("dest", nargs="?", help="SUITE/RUN it stands for, e.g. ferplus_clean/arm_s1 (default: the source's "
                    "name, for a record from --from)")
    ad.add_argument("--from", dest="from_dir", help="the results folder the source record is in (default --results), "
                    "e.g. one copied back from a lent GPU machine")
    ad.add_argument("--results", default=str(DEFAULT_RESULTS))
    ad.add_argument("--work-dir", default=str(DEFAULT_WORK), help="where the destination run would train here")
    ad.add_argument("--force", action="store_true", help="replace the destination's own record, or adopt while the "
                    "destination run is training here")

    t = sub.add_parser("table", help="build benchmarks/results/TABLES.md and fill the README markers")
    t.add_argument("--results", default=str(DEFAULT_RESULTS))
    t.add_argument("--out", default=None, help="markdown file (default: <results>/TABLES.md)")
    t.add_argument("--markdown", nargs="*", default=None, metavar="FILE",
                   help="files whose <!-- bench:<suite> --> markers are filled (default: README.md and the method READMEs)")

    g = sub.add_parser("plot", help="draw the plots into <results>/plots/")
    g.add_argument("--results", default=str(DEFAULT_RESULTS))
    g.add_argument("--suite", nargs="*", default=None)

    st = sub.add_parser("status", help="where every started run stands: phase, running now, epochs, best "
                        "validation so far, minutes per epoch, time left (reads the run folders, changes nothing)")
    st.add_argument("suite", nargs="*", help="only these suites")
    st.add_argument("--work-dir", default=str(DEFAULT_WORK))

    ls = sub.add_parser("list", help="list the suites and their runs")
    ls.add_argument("-v", "--verbose", action="store_true", help="show each run's overrides")
    argv = list(sys.argv[1:] if argv is None else argv)
    # after `--`: more overrides given to every ferkit call of `run`
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    a = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)

    if a.command == "run":
        # a time limit's SIGTERM stops the current run like Ctrl-C (its ferkit process too); the next call resumes it
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            run_suite(load_suite(a.suite), only=a.only, work_dir=Path(a.work_dir), results_dir=Path(a.results),
                      data_root=a.root, smoke=a.smoke, accelerator=a.accelerator, extra=extra,
                      keep_going=not a.stop_on_failure, wait=a.wait)
        except KeyboardInterrupt:
            print("[bench] interrupted; the same command continues from the last checkpoints", file=sys.stderr)
            return 130
    elif a.command == "predict":
        from benchmarks.harness import add_predictions

        for name in a.suite:
            changed = add_predictions(load_suite(name), only=a.only, work_dir=Path(a.work_dir),
                                      results_dir=Path(a.results))
            print(f"{name}: predictions added to {len(changed)} record(s){': ' + ', '.join(changed) if changed else ''}")
    elif a.command == "adopt":
        from benchmarks.adopt import adopt

        try:
            path = adopt(a.source, a.dest, Path(a.results), force=a.force,
                         from_dir=Path(a.from_dir) if a.from_dir else None, work_dir=Path(a.work_dir))
        except ValueError as e:
            print(f"[bench] {e}", file=sys.stderr)
            return 2
        print(f"{a.source} -> {path}")
    elif a.command == "status":
        from benchmarks.status import status_lines

        print("\n".join(status_lines(Path(a.work_dir), a.suite or None)) or f"no run folders under {a.work_dir}")
    elif a.command == "table":
        from benchmarks.tables import update_tables

        markdown = a.markdown
        if markdown is None:
            markdown = [REPO / "README.md", *sorted((REPO / "ferkit" / "methods").glob("*/README.md"))]
        update_tables(Path(a.results), out=Path(a.out) if a.out else None, markdown=[Path(m) for m in markdown])
    elif a.command == "plot":
        from benchmarks.plots import plot_all

        for path in plot_all(Path(a.results), suites=a.suite):
            print(path)
    elif a.command == "list":
        for name in available_suites():
            s = load_suite(name)
            print(f"{name}: {s.description}")
            for run in s.runs:
                print(f"  {run.name:<16} {run.config:<24} seed {run.seed}  method {run.method}"
                      + (f"  vs {run.baseline}" if run.baseline else "")
                      + (f"\n      {' '.join(run.overrides)}" if a.verbose else ""))
            if s.pending:
                print(f"  (cannot run yet: {s.pending})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
