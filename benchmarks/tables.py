"""Markdown tables built from the JSON records only (no hand-copied numbers).

For each suite: one row per method (runs that differ only in seed), with the mean and spread over seeds of the test
metrics of the checkpoints chosen on validation, the gap to the method's baseline, the best validation score and the
wall time. Spread is the sample standard deviation over seeds (shown only with two seeds or more). The gap is paired by
seed when the method and its baseline share their seeds (mean and standard deviation of the per-seed differences);
otherwise it is the difference of the means, with spread sqrt(sd_method^2 + sd_baseline^2).

``update_tables`` writes ``TABLES.md`` and replaces the text between ``<!-- bench:<suite> -->`` and
``<!-- /bench:<suite> -->`` in the given markdown files.
"""
from __future__ import annotations

import json
import os
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from benchmarks.paired import paired_gap

SMOKE_SUFFIX = ".smoke"
MARKER = re.compile(r"(<!-- bench:(?P<name>[\w.-]+) -->)(?P<body>.*?)(<!-- /bench:(?P=name) -->)", re.S)


def load_records(results_dir: str | Path, include_smoke: bool = False) -> dict[str, list[dict]]:
    """``{suite: [record, ...]}`` from ``<results>/<suite>/*.json``. The ``smoke`` suite and ``--smoke`` records
    (``<suite>.smoke/``) are left out unless ``include_smoke``; files directly under ``<results>`` are older,
    script-written results with another layout, and are not read."""
    out: dict[str, list[dict]] = {}
    if not Path(results_dir).is_dir():
        return out
    for folder in sorted(p for p in Path(results_dir).iterdir() if p.is_dir()):
        is_smoke = folder.name == "smoke" or folder.name.endswith(SMOKE_SUFFIX)
        if folder.name == "plots" or (is_smoke and not include_smoke):
            continue
        recs = []
        for path in sorted(folder.glob("*.json")):
            try:
                rec = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} is not valid JSON ({e}); delete it and run the suite again to rewrite it") from e
            if isinstance(rec, dict) and "test" in rec and "method" in rec:
                recs.append(rec)
        if recs:
            out[folder.name] = recs
    return out


def mean_spread(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` with fewer than two values)."""
    if not values:
        raise ValueError("no values")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def gap(method: list[dict], baseline: list[dict], key: str = "acc") -> tuple[float, float | None, int]:
    """Test-metric gap method - baseline: (mean, spread, number of seed pairs). With seeds in common (and no seed twice
    on a side) the gap is the mean of the per-seed differences over the shared seeds; otherwise (0 pairs) the
    difference of the two means over all records, with the spreads combined."""
    m = {r["seed"]: r["test"][key] for r in method}
    b = {r["seed"]: r["test"][key] for r in baseline}
    shared = sorted(set(m) & set(b))
    if shared and len(m) == len(method) and len(b) == len(baseline):
        mean, sd = mean_spread([m[s] - b[s] for s in shared])
        return mean, sd, len(shared)
    (ma, sa) = mean_spread([r["test"][key] for r in method])
    (mb, sb) = mean_spread([r["test"][key] for r in baseline])
    sd = math.sqrt(sa ** 2 + sb ** 2) if sa is not None and sb is not None else None
    return ma - mb, sd, 0


@dataclass
class Row:
    method: str
    records: list[dict]

    @property
    def baselines(self) -> list[str]:
        b = self.records[0].get("baseline")
        return [b] if isinstance(b, str) else list(b or [])


def group(records: list[dict]) -> list[Row]:
    rows: dict[str, Row] = {}
    for r in records:
        rows.setdefault(r["method"], Row(r["method"], [])).records.append(r)
    return list(rows.values())


def pct(mean: float, sd: float | None, signed: bool = False) -> str:
    s = f"{100 * mean:+.2f}" if signed else f"{100 * mean:.2f}"
    return s + (f" ± {100 * sd:.2f}" if sd is not None else "")


def epoch_minutes(record: dict) -> float | None:
    """Median minutes between consecutive epochs of a run (from the history's wall-clock times; None without them).

    Unlike the fit's wall time, the median is not moved by a few epochs that shared the machine or waited."""
    times = [h["time"] for h in record.get("history", []) if h.get("time") is not None]
    steps = [b - a for a, b in zip(times, times[1:]) if b > a]
    return statistics.median(steps) / 60 if steps else None


def epoch_cpu_minutes(record: dict) -> float | None:
    """Median CPU minutes of an epoch (the history's ``cpu_s``: the fit process's CPU time in each epoch, all threads;
    None for records written before it was kept). Data-loader worker processes are not counted."""
    cpu = [h["cpu_s"] for h in record.get("history", []) if h.get("cpu_s") is not None]
    return statistics.median(cpu) / 60 if cpu else None


def fit_time_complete(record: dict) -> bool:
    """Whether ``wall_seconds.fit`` counts every fit attempt. An attempt killed outright (the session ended) was not
    counted before the harness recorded ``fit_timed_attempts``; a single attempt always was."""
    timed = record.get("fit_timed_attempts", -1)
    attempts = record.get("fit_attempts", 1)
    return timed == attempts or (timed < 0 and attempts == 1)


def short_cpu(name: str) -> str:
    """A CPU model as a table cell: ``Intel(R) Xeon(R) Processor`` -> ``Intel Xeon``."""
    name = re.sub(r"\((R|TM|tm)\)|\bProcessor\b|\bCPU\b|@.*$", " ", name)
    return " ".join(name.split())


def device_cell(record: dict) -> str:
    """The device (a GPU's name; on the CPU its model, since the 2-core machines this project runs on differ, and so
    do their minutes: ``benchmarks/recipe_speed.py``'s results), and on a CPU shared by several runs at once
    (``cpu_queue.sh``'s lanes) how many: such a run's minutes measure the queue's throughput, not the run's speed
    alone. Times are never averaged across two cells (see ``suite_table``)."""
    device = record["machine"].get("device", "?")
    cpu = short_cpu(record["machine"].get("cpu") or "")
    if device == "cpu" and cpu:
        device = f"cpu, {cpu}"
    lanes = record.get("cpu_lanes", 1)
    return f"{device} ({lanes} runs at once)" if lanes > 1 else device


def suite_table(records: list[dict]) -> str:
    rows = group(records)
    by_name = {r.method: r for r in rows}
    lines = ["| method | seeds | test acc % | test mean-class acc % | gap to baseline (acc points) | best val (epoch) | "
             "fit min / run | median min / epoch (CPU min) | device |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        recs = row.records
        acc = mean_spread([r["test"]["acc"] for r in recs])
        mca_vals = [r["test"]["mean_class_acc"] for r in recs if r["test"].get("mean_class_acc") is not None]
        mca = pct(*mean_spread(mca_vals)) if mca_vals else "—"
        gaps = []
        for b in row.baselines:
            if b in by_name:
                base = by_name[b].records
                g_mean, g_sd, pairs = gap(recs, base)
                if pairs == 0:
                    note = " (unpaired)"  # no seed in common (or one recorded twice)
                elif pairs < max(len(recs), len(base)):
                    note = f" (seed{'s' if pairs > 1 else ''} {', '.join(map(str, sorted({r['seed'] for r in recs} & {r['seed'] for r in base})))} only)"
                else:
                    note = ""
                gaps.append(f"{pct(g_mean, g_sd, signed=True)} vs {b}{note}")
            else:
                gaps.append(f"({b}: no records)")
        g = "; ".join(gaps) or "—"
        val = ", ".join(f"{100 * r['selection']['value']:.2f} ({r['selection']['epoch'] + 1})" for r in recs)
        devices = sorted({device_cell(r) for r in recs})
        # times are per device: a seed trained on a lent GPU (see benchmarks/adopt.py) is not averaged with CPU ones
        fit_cells, epoch_cells = [], []
        for dev in devices:
            on = [r for r in recs if device_cell(r) == dev]
            fit_min = statistics.fmean(r["wall_seconds"]["fit"] for r in on) / 60
            fit_cells.append(f"{fit_min:.1f}" if all(fit_time_complete(r) for r in on) else f">= {fit_min:.1f}")
            per_epoch = [m for m in (epoch_minutes(r) for r in on) if m is not None]
            cell = f"{statistics.fmean(per_epoch):.2f}" if per_epoch else "—"
            cpu_epoch = [m for m in (epoch_cpu_minutes(r) for r in on) if m is not None]
            if cpu_epoch:
                cell += f" (CPU {statistics.fmean(cpu_epoch):.2f})"
            epoch_cells.append(cell)
        fit_cell, epoch_min = "; ".join(fit_cells), "; ".join(epoch_cells)
        seeds = ",".join(str(r["seed"]) for r in sorted(recs, key=lambda r: r["seed"]))
        lines.append(f"| {row.method} | {len(recs)} ({seeds}) | {pct(*acc)} | {mca} | {g} | {val} | {fit_cell} | {epoch_min} | "
                     f"{'; '.join(devices)} |")
    monitor = records[0]["selection"]["monitor"]
    paired = paired_table(rows)
    if paired:
        lines += ["", paired]
    steps = steps_table(records)
    if steps:
        lines += ["", steps]
    mining = mining_table(records)
    if mining:
        lines += ["", mining]
    lines.append("")
    lines.append(f"Test metrics of the checkpoint with the best `{monitor}` (epochs counted from 1); mean ± sample "
                 "standard deviation over seeds; built by `python -m benchmarks table` from "
                 f"`benchmarks/results/{records[0]['suite']}/*.json`.")
    return "\n".join(lines)


def seed_pairs(method: list[dict], baseline: list[dict]):
    """(method record, :func:`benchmarks.paired.paired_gap`) for each seed both sides have, in seed order, where the
    two records carry test predictions to pair image by image."""
    base = {r["seed"]: r for r in baseline}
    for rec in sorted(method, key=lambda r: r["seed"]):
        pg = paired_gap(rec, base[rec["seed"]]) if rec["seed"] in base else None
        if pg is not None:
            yield rec, pg


def paired_table(rows: list[Row]) -> str:
    """Each method against each baseline, seed by seed, image by image on the test split (records with
    ``test_predictions``; see :mod:`benchmarks.paired`): empty when no pair has them."""
    by_name = {r.method: r for r in rows}
    lines, sizes = [], set()
    for row in rows:
        for b in row.baselines:
            for rec, pg in seed_pairs(row.records, by_name[b].records if b in by_name else []):
                sizes.add(pg["n"])
                lo, hi = pg["ci95"]
                p = f"{pg['mcnemar_p']:.3g}" if pg["mcnemar_p"] >= 1e-4 else "< 0.0001"
                lines.append(f"| {row.method} | {b} | {rec['seed']} | {100 * pg['gap']:+.2f} | "
                             f"{100 * lo:+.2f} to {100 * hi:+.2f} | {pg['only_a']} / {pg['only_b']} | {p} |")
    if not lines:
        return ""
    return "\n".join([
        f"The same gaps image by image, on the {'/'.join(f'{n:,}' for n in sorted(sizes))} test images "
        "(`benchmarks/paired.py`):",
        "",
        "| method | baseline | seed | gap (acc points) | 95 % interval from the test images alone | right only by "
        "method / by baseline | McNemar p |",
        "|---|---|---|---|---|---|---|",
        *lines,
        "",
        "The interval is what another draw of test images could do to the gap between these two trained networks; it "
        "does not hold the seed-to-seed spread of training, which only more seeds measure."])


def _scalar(v) -> str | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str) and "/" not in v:  # paths are machine-specific: left out
        return v
    return None


def steps_table(records: list[dict]) -> str:
    """The suite's steps (commands run before some fits: a centre pass, embedding, mining, distillation), each once:
    its minutes and the scalar fields of its report; a mining report with the pool's hidden labels adds a table of
    precision and recall per class and over ``tau_sim``."""
    steps: dict[str, dict] = {}
    for r in records:
        for name, entry in (r.get("steps") or {}).items():
            steps.setdefault(name, entry)
    if not steps:
        return ""
    lines = ["| step | minutes | report |", "|---|---|---|"]
    quality = []
    for name, entry in steps.items():
        report = entry.get("report") or {}
        fields = [f"{k} {v}" for k, v in ((k, _scalar(v)) for k, v in report.items()) if v is not None]
        minutes = f"{entry['seconds'] / 60:.1f}" if isinstance(entry.get("seconds"), (int, float)) else "—"
        lines.append(f"| {name} | {minutes} | {', '.join(fields) or '—'} |")
        if isinstance(report.get("quality"), dict):
            quality.append((name, report))
    for name, report in quality:
        q, names = report["quality"], list((report.get("per_class") or {}).keys())
        lines += ["", f"Mining ({name}) against the pool's hidden labels: {q['mined']} mined, precision "
                      f"{100 * q['precision']:.1f} %, recall {100 * q['recall']:.1f} %.", "",
                  "| class | mined | precision % | recall % |", "|---|---|---|---|"]
        for k, c in enumerate(q.get("per_class", [])):
            label = names[k] if k < len(names) else str(k)
            lines.append(f"| {label} | {c['mined']} | {100 * c['precision']:.1f} | {100 * c['recall']:.1f} |")
        if report.get("curve"):
            lines += ["", "| tau_sim | mined | precision % | recall % |", "|---|---|---|---|"]
            lines += [f"| {c['tau_sim']} | {c['mined']} | {100 * c['precision']:.1f} | {100 * c['recall']:.1f} |"
                      for c in report["curve"]]
    return "\n".join(lines)


def mining_table(records: list[dict], prefix: str = "asm/") -> str:
    """For each run whose method mines its own training labels against a known truth (ASM's ``asm/noisy_precision``
    and friends in the record's ``stats``): the noisy subset's precision and recall against the wrong labels and the
    clean subset's purity at the chosen epoch, overall and per given class where they were logged."""
    parts = []
    for r in sorted(records, key=lambda r: r["run"]):
        epoch = r["selection"]["epoch"]
        stats = next((s for s in r.get("stats") or [] if s.get("epoch") == epoch), None)
        if not stats or f"{prefix}noisy_precision" not in stats:
            continue

        def cell(key: str) -> str:
            v = stats.get(key)
            return "—" if v is None or v != v else f"{100 * v:.1f}"

        names = [k[len(f"{prefix}flip_rate/"):] for k in stats if k.startswith(f"{prefix}flip_rate/")]
        rows = [("all", "")] + [(n, f"/{n}") for n in names]
        parts += [f"Mining of `{r['run']}` at the chosen epoch ({epoch + 1}) against the true labels:", "",
                  "| given label | wrong labels % | noisy precision % | noisy recall % | clean purity % |",
                  "|---|---|---|---|---|"]
        parts += [f"| {label} | {cell(prefix + 'flip_rate' + sfx)} | {cell(prefix + 'noisy_precision' + sfx)} | "
                  f"{cell(prefix + 'noisy_recall' + sfx)} | {cell(prefix + 'clean_purity' + sfx)} |" for label, sfx in rows]
        parts.append("")
    return "\n".join(parts).rstrip()


def replace_markers(text: str, tables: dict[str, str]) -> tuple[str, list[str]]:
    """Replace the body of every ``<!-- bench:NAME -->...<!-- /bench:NAME -->`` whose NAME has a table; markers
    without a table are left as they are. Returns the new text and the names replaced."""
    done: list[str] = []

    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in tables:
            return m.group(0)
        done.append(name)
        return f"{m.group(1)}\n{tables[name].strip()}\n{m.group(4)}"

    return MARKER.sub(sub, text), done


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step, so a rebuild killed half-way (``cpu_queue.sh stop``) never leaves
    a README cut short."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def fill_markers(path: Path, tables: dict[str, str]) -> list[str]:
    """Fill the ``<!-- bench:NAME -->`` markers of the markdown file ``path`` that ``tables`` has (a missing file
    is left alone); returns the names filled."""
    path = Path(path)
    if not path.is_file():
        return []
    new, done = replace_markers(path.read_text(), tables)
    if done:
        write_text_atomic(path, new)
        print(f"updated {path}: {', '.join(done)}")
    return done


def summary_table(suites: dict[str, list[dict]], comparisons=None) -> str:
    """One row per comparison of :data:`benchmarks.comparisons.COMPARISONS` (each method against its own baseline,
    same suite): the paired gap over the shared seeds, each seed's interval from the test images alone, the goal, and
    whether the mean gap meets it. Comparisons without records say so, so the table shows what is still to run."""
    from benchmarks.comparisons import COMPARISONS

    lines = ["| comparison | suite | seeds | gap (acc points) | 95 % interval from the test images, per seed | goal | "
             "met |", "|---|---|---|---|---|---|---|"]
    for c in COMPARISONS if comparisons is None else comparisons:
        recs = suites.get(c.suite, [])
        m = [r for r in recs if r["method"] == c.method]
        b = [r for r in recs if r["method"] == c.baseline]
        if not m or not b:
            missing = " and ".join(x for x, rs in ((c.method, m), (c.baseline, b)) if not rs)
            lines.append(f"| {c.what} | {c.suite} | — | no records of {missing} yet | — | {c.goal} | — |")
            continue
        g_mean, g_sd, pairs = gap(m, b)
        shared = sorted({r["seed"] for r in m} & {r["seed"] for r in b})
        ci = {rec["seed"]: pg["ci95"] for rec, pg in seed_pairs(m, b)}
        # a seed whose records predate the kept test predictions has no interval: said, where another seed has one
        intervals = ([f"{s}: {100 * ci[s][0]:+.2f} to {100 * ci[s][1]:+.2f}" if s in ci else f"{s}: not kept"
                      for s in shared] if ci else [])
        seeds = ", ".join(str(s) for s in shared) if pairs else "unpaired"
        if c.min_gap is None:
            met = "—"
        else:
            met = "yes" if g_mean >= c.min_gap else "no"
            if pairs == 0:  # no seed in common (or a seed twice on a side): a gap of means, not of pairs
                met += " (unpaired)"
            elif pairs < 2:
                met += " (one seed)"
            elif g_sd is not None and abs(g_mean - c.min_gap) < g_sd:
                met += " (within the seed spread)"
        lines.append(f"| {c.what} | {c.suite} | {seeds} | {pct(g_mean, g_sd, signed=True)} | "
                     f"{'; '.join(intervals) or '—'} | {c.goal} | {met} |")
    lines += ["", "Gap: method minus its own baseline in test accuracy, paired by seed (mean ± standard deviation over "
              "seeds where there are two or more); the intervals hold only the test split's own chance, not the seed "
              "spread (\"not kept\": records written before the harness kept each test image's prediction). Built "
              "by `python -m benchmarks table` from the records and `benchmarks/comparisons.py`."]
    return "\n".join(lines)


def update_tables(results_dir: Path, out: Path | None = None, markdown: list[Path] | None = None,
                  include_smoke: bool = False) -> dict[str, str]:
    suites = load_records(results_dir, include_smoke=include_smoke)
    tables = {name: suite_table(recs) for name, recs in suites.items()}
    if suites:
        tables = {"summary": summary_table(suites), **tables}
    out = out or Path(results_dir) / "TABLES.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = ["# Benchmark tables", "", "Generated by `python -m benchmarks table` from the JSON records; do not edit.", ""]
    for name, table in tables.items():
        parts += [f"## {name}", "", table, ""]
    if not tables:
        parts.append("No records yet: run `python -m benchmarks run <suite>`.")
    write_text_atomic(out, "\n".join(parts).rstrip() + "\n")
    print(f"wrote {out} ({len(tables)} suite(s))")
    for path in markdown or []:
        fill_markers(path, tables)
    return tables
