"""Plots drawn from the JSON records (matplotlib, Agg backend), written to ``<results>/plots/``.

* ``<suite>_val_acc.png``: validation accuracy per epoch of every method of the suite on one figure (mean over seeds,
  band from the lowest to the highest seed); a method and its baseline share the colour family of the suite's order.
* ``<suite>_memorisation.png``: how the *network* treats the training samples whose labels were flipped, when the runs
  logged it (``memorisation/flipped_fit``: predicted as the wrong given label; ``memorisation/flipped_clean``: as the
  true one) -- the curve that shows cross-entropy learning wrong labels by heart.
* ``<suite>_label_memory.png``: LA-Net's *label memory* against the true labels (``memory/...`` statistics other than
  the per-class recalls: its arg-max accuracy, the shares of flipped samples whose memory ranks the given or the true
  label first, ...), apart from the network's curves above.
* ``<suite>_recall.png``: test recall per class of each method (mean over seeds), grouped bars.
"""
from __future__ import annotations

from pathlib import Path

from benchmarks.tables import group, load_records


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise SystemExit("python -m benchmarks plot needs matplotlib: pip install matplotlib") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves(records: list[dict], key: str, section: str = "history") -> tuple[list[int], list[float], list[float], list[float]]:
    """Epochs (from 1) with the mean, min and max of ``key`` over the records that logged it at that epoch."""
    per_epoch: dict[int, list[float]] = {}
    for r in records:
        for h in r.get(section, []):
            if h.get(key) is not None:
                per_epoch.setdefault(h["epoch"], []).append(h[key])
    epochs = sorted(per_epoch)
    return ([e + 1 for e in epochs], [sum(per_epoch[e]) / len(per_epoch[e]) for e in epochs],
            [min(per_epoch[e]) for e in epochs], [max(per_epoch[e]) for e in epochs])


def logged_by(records: list[dict], key: str, section: str = "history") -> int:
    """How many of the records (seeds) logged ``key`` at any epoch: the ``n`` behind a curve of :func:`curves`, which
    can be fewer than the seeds in the table when an older record predates a statistic."""
    return sum(any(h.get(key) is not None for h in r.get(section, [])) for r in records)


def memorisation_keys(records: list[dict], prefix: str = "memorisation/") -> list[tuple[str, str]]:
    """``(section, key)`` of the per-epoch statistics under ``prefix`` (``memory/``: without the per-class recalls)."""
    keys = set()
    for r in records:
        for section in ("history", "stats"):
            for h in r.get(section, []):
                keys |= {(section, k) for k in h if k.startswith(prefix) and not k.startswith("memory/recall_")}
    return sorted(keys)


#: the overall mining scores a method logs per epoch against the true labels (e.g. ``asm/noisy_precision``)
MINING = ("noisy_precision", "noisy_recall", "clean_purity")


def mining_keys(records: list[dict]) -> list[str]:
    """The per-epoch overall mining scores in the records' ``stats`` (not the per-class ones)."""
    keys = set()
    for r in records:
        for h in r.get("stats", []):
            keys |= {k for k in h if k.count("/") == 1 and k.split("/")[1] in MINING}
    return sorted(keys, key=lambda k: (k.split("/")[0], MINING.index(k.split("/")[1])))


def _finish(plt, fig, ax, path: Path, title: str, ylabel: str, xlabel: str | None = "epoch", grid: bool = True,
            legend_size: int = 8) -> Path:
    """Label, save and close one figure (every plot of a suite ends the same way)."""
    if xlabel:
        ax.set_xlabel(xlabel)
        if xlabel == "epoch":  # whole epochs on the axis, never 12.5
            from matplotlib.ticker import MaxNLocator
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if grid:
        ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_suite(name: str, records: list[dict], out_dir: Path) -> list[Path]:
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = group(records)
    written = []
    monitor = records[0]["selection"]["monitor"]

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for row in rows:
        x, mean, lo, hi = curves(row.records, monitor)
        if not x:
            continue
        line, = ax.plot(x, [100 * v for v in mean], marker="o", ms=3, label=f"{row.method} (n={len(row.records)})")
        if len(row.records) > 1:
            ax.fill_between(x, [100 * v for v in lo], [100 * v for v in hi], color=line.get_color(), alpha=0.2)
        sel = [r["selection"]["epoch"] + 1 for r in row.records]
        ax.scatter(sel, [100 * r["selection"]["value"] for r in row.records], color=line.get_color(), marker="*", s=80,
                   zorder=3)
    written.append(_finish(plt, fig, ax, out_dir / f"{name}_val_acc.png", ylabel=f"{monitor} (%)",
                           title=f"{name}: validation per epoch (mean over seeds, band min-max; * chosen epoch)"))

    for prefix, file, title in (("memorisation/", "memorisation", "the network on the flipped training samples"),
                                ("memory/", "label_memory", "the label memory against the true labels")):
        mem = memorisation_keys(records, prefix)
        if not mem:
            continue
        fig, ax = plt.subplots(figsize=(8, 4.8))
        styles = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1))]  # one line style per statistic ...
        for row in rows:
            colour = None  # ... and one colour per method
            for k, (section, key) in enumerate(mem):
                x, mean, lo, hi = curves(row.records, key, section)
                if x:
                    line, = ax.plot(x, [100 * v for v in mean], linestyle=styles[k % len(styles)], marker="o", ms=2,
                                    color=colour, label=f"{row.method} (n={logged_by(row.records, key, section)}): "
                                                        f"{key.split('/', 1)[1]}")
                    colour = line.get_color()
        written.append(_finish(plt, fig, ax, out_dir / f"{name}_{file}.png", ylabel=f"{prefix}* (%)",
                               title=f"{name}: {title} (mean over the n seeds that logged it)", legend_size=6))

    mining = mining_keys(records)
    if mining:  # how well a method's split of the training set matches the true labels, epoch by epoch
        fig, ax = plt.subplots(figsize=(7, 4.2))
        styles = {"noisy_precision": "-", "noisy_recall": "--", "clean_purity": ":"}
        for row in rows:
            colour = None
            for key in mining:
                x, mean, lo, hi = curves(row.records, key, "stats")
                if not x:
                    continue
                line, = ax.plot(x, [100 * v for v in mean], styles[key.split("/")[1]], marker="o", ms=2, color=colour,
                                label=f"{row.method} (n={logged_by(row.records, key, 'stats')}): "
                                      f"{key.split('/')[1].replace('_', ' ')}")
                colour = line.get_color()  # one colour per method, one line style per score
        written.append(_finish(plt, fig, ax, out_dir / f"{name}_mining.png", ylabel="%", legend_size=7,
                               title=f"{name}: mining against the true labels per epoch "
                                     "(mean over the n seeds that logged it)"))

    names = records[0]["test"].get("class_names") or list(records[0]["test"].get("per_class_recall", {}))
    if names:
        fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(names)), 4.2))
        width = 0.8 / max(1, len(rows))
        for k, row in enumerate(rows):
            vals = []
            for c in names:
                v = [r["test"]["per_class_recall"].get(c) for r in row.records]
                v = [x for x in v if x is not None]
                vals.append(100 * sum(v) / len(v) if v else 0.0)
            ax.bar([i + k * width for i in range(len(names))], vals, width, label=row.method)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=30)
        written.append(_finish(plt, fig, ax, out_dir / f"{name}_recall.png", ylabel="test recall (%)", xlabel=None,
                               grid=False, title=f"{name}: per-class test recall (chosen checkpoints, mean over seeds)"))
    return written


def plot_all(results_dir: Path, suites: list[str] | None = None, include_smoke: bool = False) -> list[Path]:
    written = []
    for name, recs in load_records(results_dir, include_smoke=include_smoke).items():
        if suites and name not in suites:
            continue
        written += plot_suite(name, recs, Path(results_dir) / "plots")
    return written
