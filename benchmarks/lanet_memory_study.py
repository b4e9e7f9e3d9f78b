"""Does LA-Net's label memory recover the true labels? Read from a finished (or running) run's checkpoints.

LA-Net keeps, for every training sample, a label distribution (``lde_bank``, an ``N x C`` buffer saved in every
checkpoint). It starts as the one-hot given label and is blended each time the sample is seen with an estimate from
the sample's neighbours. Where the given labels are known to be wrong (synthetic noise, or FER2013's labels scored
against the FER+ vote), the memory can be judged directly, with no forward pass: for the flipped samples, how often it
ranks the given (wrong) label first and how often the true one; for the correct ones, how often it keeps their
label; how well its mass on the given label singles out the flipped labels (rank AUROC, 0.5 = chance); and whether
its arg-max, taken as a new label, would be cleaner than the given labels. Overall and per given class.

    python benchmarks/lanet_memory_study.py ferplus_noise30 lanet_s0
    # -> benchmarks/results/lanet_memory/ferplus_noise30__lanet_s0.json (the run's best-on-validation and last checkpoints)
    python benchmarks/lanet_memory_study.py --ckpt runs/lanet_ferplus/version_0/checkpoints/last.ckpt --output m.json

A run keeps only its chosen and last checkpoints. For the memory epoch by epoch, start a watcher beside the run; it
saves the memory of every new ``last.ckpt`` (a few hundred kB each) into ``<run folder>/memory/``, and the study then
adds a curve over those epochs (``per_epoch``) and draws it into ``results/plots/<suite>_<run>_memory.png``:

    nohup python benchmarks/lanet_memory_study.py ferplus_noise30 lanet_s0 --watch >> runs/lanet_memory_watch.log 2>&1 &

The training set is rebuilt from the data-module settings stored in the checkpoint (``--root`` relocates the data).
It uses the training set only, never validation or test data, and chooses nothing. ``--smoke`` trains
``lanet_synthetic`` for one epoch on 48 synthetic faces (30 % flipped labels) and studies that checkpoint (seconds).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import RESULTS, datamodule_from_checkpoint, environment, result_path, smoke_dir, \
    training_set_with_clean_labels, write_results  # noqa: E402
from benchmarks.harness import DEFAULT_WORK  # noqa: E402
from ferkit.metrics import classification_scores, label_memory_stats  # noqa: E402

OUT_DIR = RESULTS / "lanet_memory"

SMOKE_ARGS = ["--config", "lanet_synthetic", "--data.dataset.init_args.num_train=48", "--data.dataset.init_args.num_val=16",
              "--data.dataset.init_args.num_test=16", "--data.dataset.init_args.image_size=32", "--data.img_size=32",
              "--data.batch_size=16", "--data.eval_batch_size=32", "--trainer.max_epochs=1", "--trainer.limit_val_batches=0",
              "--model.init_args.queue_size=64", "--model.init_args.lde_k=4",
              "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]",
              "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def epochs_trained(ckpt: dict) -> int:
    """The training epochs behind a checkpoint (counted from 1). ``ckpt["epoch"]`` is the index of the epoch during
    which it was saved, one short of this for a checkpoint saved at an epoch's end but not for one saved after
    ``fit`` returned; the fit loop's count of processed epochs is right for both."""
    try:
        return int(ckpt["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"])
    except (KeyError, TypeError):
        return int(ckpt.get("epoch", -1)) + 1


def study_checkpoint(path: Path, root: str | None = None) -> dict:
    """:func:`memory_stats` of one LA-Net checkpoint, overall and per given class, on its rebuilt training set."""
    import numpy as np
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    memory = ckpt.get("state_dict", {}).get("lde_bank.values")
    if memory is None:
        raise SystemExit(f"{path} has no label memory (state_dict['lde_bank.values']): not an LA-Net checkpoint")
    dm = datamodule_from_checkpoint(ckpt, root, str(path))
    ds = training_set_with_clean_labels(dm)
    given = torch.as_tensor(np.asarray(ds.labels), dtype=torch.long)
    clean = torch.as_tensor(np.asarray(ds.clean_labels), dtype=torch.long)
    if memory.shape[0] != len(given):
        raise SystemExit(f"{path}: the memory has {memory.shape[0]} rows, the rebuilt training set {len(given)} samples; "
                         "pass --root if the data moved, or check that the data settings match the run's")
    names = list(dm.class_names)
    per_class = {}
    for k, name in enumerate(names):
        m = given == k
        if bool(m.any()):
            per_class[name] = label_memory_stats(memory[m], given[m], clean[m])
    return {"_labels": (given, clean, names), "checkpoint": str(path), "epoch": epochs_trained(ckpt), "global_step": int(ckpt.get("global_step", -1)),
            "lde_momentum": (ckpt.get("hyper_parameters") or {}).get("lde_momentum"),
            "all": label_memory_stats(memory, given, clean), "per_given_class": per_class,
            # the class shares of the given labels, the clean labels and the memory's arg-max
            "class_counts": {"given": class_counts(given, names), "clean": class_counts(clean, names),
                             "memory_argmax": class_counts(memory.argmax(1), names)},
            "recall_by_true_class": {"given": recall_by_true_class(given, clean, names),
                                     "memory_argmax": recall_by_true_class(memory.argmax(1), clean, names)},
            "confusion_true_vs_memory_argmax": confusion(memory.argmax(1), clean, names),
            # where the memory puts its mass: the class marginal (mean mass) against the largest mass any one sample
            # gives a class; a class can keep its share of the mass while no sample's arg-max is that class
            "class_mass": {"memory_mean": dict(zip(names, memory.float().mean(0).tolist())),
                           "memory_max": dict(zip(names, memory.float().max(0).values.tolist()))},
            "alignment": alignment_state(ckpt["state_dict"], names)}


def alignment_state(state_dict: dict, names: list[str]) -> dict | None:
    """Class-prior alignment's buffers (``lde_align="given"``): the prior it aligns to and the moving average of the
    neighbours' estimate; None for a run without alignment."""
    prior, running = state_dict.get("lde.align_prior"), state_dict.get("lde.align_running")
    if prior is None or running is None:
        return None
    return {"prior": dict(zip(names, prior.tolist())), "running_estimate": dict(zip(names, running.tolist()))}


def load_memory(path: Path) -> tuple[int, int, "torch.Tensor"]:
    """(epochs trained, global step, label memory) of a checkpoint, read without keeping the rest in memory."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    memory = ckpt.get("state_dict", {}).get("lde_bank.values")
    if memory is None:
        raise SystemExit(f"{path} has no label memory (state_dict['lde_bank.values']): not an LA-Net checkpoint")
    return epochs_trained(ckpt), int(ckpt.get("global_step", -1)), memory.clone()


def watch(run_dir: Path, result: Path, interval: float = 30.0) -> int:
    """Save the label memory of each new ``last.ckpt`` of a running harness run into ``run_dir/memory/epoch_NNN.pt``
    (with ``last.prev.ckpt`` at the start), until the run's record ``result`` exists. Returns the snapshots saved."""
    import torch

    folder = run_dir / "memory"
    folder.mkdir(parents=True, exist_ok=True)
    seen: dict[str, float] = {}
    saved = 0
    while True:
        done = result.is_file()  # read before the last look, so the final epoch is not missed
        for name in ("last.prev.ckpt", "last.ckpt"):
            path = run_dir / "ckpt" / name
            try:
                stamp = path.stat().st_mtime
                if seen.get(name) == stamp:
                    continue
                epoch, step, memory = load_memory(path)
            except (OSError, RuntimeError, EOFError) as err:  # replaced while being read: the next look gets it
                print(f"[watch] {path}: {err}; trying again", flush=True)
                continue
            seen[name] = stamp
            target = folder / f"epoch_{epoch:03d}.pt"
            if not target.is_file():
                tmp = target.with_suffix(".tmp")
                torch.save({"epoch": epoch, "global_step": step, "memory": memory}, tmp)
                tmp.replace(target)
                saved += 1
                print(f"[watch] epoch {epoch}: memory saved to {target}", flush=True)
        if done:
            return saved
        time.sleep(interval)


def class_counts(labels, names: list[str]) -> dict[str, int]:
    """How many samples carry each class."""
    import torch

    counts = torch.bincount(torch.as_tensor(labels).long(), minlength=len(names))
    return {name: int(n) for name, n in zip(names, counts)}


def _scores(top, clean, names: list[str]) -> dict:
    """:func:`ferkit.metrics.classification_scores` of the memory's arg-max ``top`` against the clean labels, samples
    without a known clean label left out."""
    import torch

    top, clean = torch.as_tensor(top).long(), torch.as_tensor(clean).long()
    known = clean >= 0
    return classification_scores(top[known], clean[known], len(names))


def recall_by_true_class(top, clean, names: list[str]) -> dict[str, float | None]:
    """For each true class, the share of its samples whose memory arg-max ``top`` is that class (None where the class
    has no sample): which true classes the memory keeps and which it loses, whatever the given labels were."""
    recall = _scores(top, clean, names)["per_class_recall"].tolist()
    return {name: (None if r != r else r) for name, r in zip(names, recall)}


def confusion(top, clean, names: list[str]) -> dict[str, dict[str, int]]:
    """Samples by true class (outer key) and memory arg-max (inner key); samples without a known clean label left out."""
    cm = _scores(top, clean, names)["confusion_matrix"].tolist()
    return {t: {p: int(cm[i][j]) for j, p in enumerate(names)} for i, t in enumerate(names)}


def per_epoch(run_dir: Path, given, clean, names: list[str] | None = None) -> list[dict]:
    """:func:`memory_stats` of every snapshot in ``run_dir/memory/`` (see :func:`watch`), by epoch, with the number
    of samples whose memory ranks each class first (``argmax_counts``) and each true class's share kept by the
    memory's arg-max (``recall_by_true_class``) when the class ``names`` are given."""
    import torch

    rows = []
    for path in sorted((run_dir / "memory").glob("epoch_*.pt")):
        snap = torch.load(path, map_location="cpu", weights_only=True)
        if snap["memory"].shape[0] != len(given):
            raise SystemExit(f"{path}: {snap['memory'].shape[0]} rows, the training set {len(given)} samples")
        row = {"epoch": int(snap["epoch"]), "global_step": int(snap["global_step"]),
               **label_memory_stats(snap["memory"], given, clean)}
        if names:
            row["argmax_counts"] = class_counts(snap["memory"].argmax(1), names)
            row["recall_by_true_class"] = recall_by_true_class(snap["memory"].argmax(1), clean, names)
        rows.append(row)
    return rows


def plot_per_epoch(rows: list[dict], path: Path, title: str, clean_counts: dict[str, int] | None = None) -> Path:
    """The memory's verdicts on the flipped and correct labels, epoch by epoch; with ``clean_counts`` (and rows that
    carry ``argmax_counts``), a third panel: how many samples the memory gives each class, over its true count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    third = bool(clean_counts) and all("argmax_counts" in r for r in rows)
    fig, ax = plt.subplots(1, 3 if third else 2, figsize=(18 if third else 12, 4))
    for key, style, label in (("flipped_ranks_given_first", "o-", "flipped: given (wrong) label first"),
                              ("flipped_ranks_clean_first", "o-", "flipped: true label first"),
                              ("correct_ranks_given_first", "s--", "correct: given label first")):
        ax[0].plot(ep, [100 * r[key] for r in rows], style, label=label)
    ax[0].set(xlabel="epoch", ylabel="% of samples", ylim=(-2, 102), title="what the label memory ranks first")
    ax[0].legend(fontsize=8)
    ax[1].plot(ep, [100 * r["memory_label_accuracy"] for r in rows], "o-", label="memory's arg-max is the true label")
    ax[1].plot(ep, [100 * r["given_label_accuracy"] for r in rows], "k:", label="given label is the true label")
    ax[1].plot(ep, [100 * r["flip_auroc"] for r in rows], "^-", label="AUROC (x100): mass on given label flags flips")
    ax[1].set(xlabel="epoch", ylabel="%", title="is the memory a cleaner label?")
    ax[1].legend(fontsize=8)
    if third:
        for name, true in clean_counts.items():
            if true:
                ax[2].plot(ep, [r["argmax_counts"][name] / true for r in rows], "o-", ms=3, label=name)
        ax[2].axhline(1.0, color="k", ls=":", lw=1)
        ax[2].set_yscale("symlog", linthresh=0.1)  # the rare classes start near 10x their true count and end at 0
        ax[2].set_ylim(bottom=0)
        ax[2].set(xlabel="epoch", ylabel="samples the memory ranks on the class / true count",
                  title="which classes the memory keeps")
        ax[2].legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_checkpoints(work_dir: Path, suite: str, run: str) -> list[Path]:
    """A harness run's best-on-validation and last checkpoints (in that order)."""
    folder = work_dir / suite / run / "ckpt"
    best = sorted(folder.glob("best-*.ckpt"))
    last = folder / "last.ckpt"
    found = best[-1:] + ([last] if last.is_file() else [])
    if not found:
        raise SystemExit(f"no checkpoints in {folder}: has `python -m benchmarks run {suite} --only {run}` started?")
    return found


def smoke_checkpoint() -> Path:
    """One epoch of ``lanet_synthetic`` on a few faces with flipped labels, saved as a checkpoint (for --smoke)."""
    import torch

    from ferkit.commands.lightning_cli import build_cli

    torch.manual_seed(0)
    folder = smoke_dir() / "lanet_memory_study"
    cli = build_cli(args=SMOKE_ARGS + [f"--trainer.default_root_dir={folder}"], run=False)
    cli.trainer.fit(cli.model, cli.datamodule)
    path = folder / "smoke.ckpt"
    cli.trainer.save_checkpoint(path)
    return path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", nargs="?", help="a harness suite (with RUN)")
    p.add_argument("run", nargs="?", help="an LA-Net run of the suite, e.g. lanet_s0")
    p.add_argument("--ckpt", action="append", default=None, help="an LANetClassifier checkpoint (repeatable) instead of a run")
    p.add_argument("--work-dir", default=str(DEFAULT_WORK), help="the harness's run folders (default: %(default)s)")
    p.add_argument("--root", default=None, help="where the dataset lives now (overrides data.dataset's root)")
    p.add_argument("--output", default=None, help="default: benchmarks/results/lanet_memory/<suite>__<run>.json")
    p.add_argument("--smoke", action="store_true", help="study a one-epoch checkpoint on synthetic faces (seconds)")
    p.add_argument("--watch", action="store_true",
                   help="save the memory of each new epoch of the running SUITE RUN until its record exists, then study it")
    p.add_argument("--interval", type=float, default=30.0, help="--watch: seconds between looks (default: %(default)s)")
    args = p.parse_args(argv)
    if args.watch:
        if not (args.suite and args.run):
            p.error("--watch needs SUITE RUN")
        from benchmarks.harness import DEFAULT_RESULTS

        watch(Path(args.work_dir) / args.suite / args.run, Path(DEFAULT_RESULTS) / args.suite / f"{args.run}.json",
              args.interval)
    if args.smoke:
        output = result_path(args.output, "lanet_memory_study", smoke=True)  # refuses a committed path before training
        paths = [smoke_checkpoint()]
    elif args.ckpt:
        paths = [Path(c) for c in args.ckpt]
        if not args.output:
            p.error("--ckpt needs --output (the default name comes from a suite and run)")
        output = Path(args.output)
    elif args.suite and args.run:
        paths = run_checkpoints(Path(args.work_dir), args.suite, args.run)
        output = Path(args.output) if args.output else OUT_DIR / f"{args.suite}__{args.run}.json"
    else:
        p.error("give SUITE RUN, --ckpt PATH or --smoke")
    studies = []
    for path in paths:
        study = study_checkpoint(path, args.root)
        if studies and study["global_step"] == studies[-1]["global_step"]:
            continue  # the last checkpoint is the chosen one
        studies.append(study)
    for s in studies:
        a = s["all"]
        print(f"epoch {s['epoch']}: flipped {a['flipped']} of {a['samples']}; memory ranks the given label first for "
              f"{100 * a['flipped_ranks_given_first']:.1f} % of the flipped and {100 * a['correct_ranks_given_first']:.1f} % "
              f"of the correct labels, the clean label first for {100 * a['flipped_ranks_clean_first']:.1f} % of the "
              f"flipped; AUROC {a['flip_auroc']:.3f}; labels right {100 * a['given_label_accuracy']:.1f} % given, "
              f"{100 * a['memory_label_accuracy']:.1f} % by the memory's arg-max")
    given, clean, names = studies[0].pop("_labels")
    for st in studies[1:]:
        st.pop("_labels")
    curve, png = [], None
    if args.suite and args.run and not args.smoke:
        curve = per_epoch(Path(args.work_dir) / args.suite / args.run, given, clean, names)
        if curve:
            png = plot_per_epoch(curve, RESULTS / "plots" / f"{args.suite}_{args.run}_memory.png",
                                 f"{args.suite}/{args.run}: LA-Net's label memory against the true labels",
                                 class_counts(clean, names))
            print(f"per-epoch memory: epochs {curve[0]['epoch']}-{curve[-1]['epoch']} ({len(curve)} snapshots); plot {png}")
    command = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--watch"]
    record = {"benchmark": "LA-Net's label memory against the clean labels, read from checkpoints (no forward pass)",
              "command": "python benchmarks/lanet_memory_study.py " + " ".join(command),
              "smoke": args.smoke, "suite": args.suite, "run": args.run, "checkpoints": studies,
              "per_epoch": curve, "plot": str(png.relative_to(RESULTS.parent.parent)) if png else None,
              "environment": environment()}
    write_results(output, record)
    return record


if __name__ == "__main__":
    main()
