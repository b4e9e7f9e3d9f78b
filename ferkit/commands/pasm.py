"""``ferkit pasm --config NAME --generations G --out DIR [LightningCLI overrides]``: PASM's self-mining generations.

Generation 0 trains the config's network with plain CE. For ``g = 1..G`` the previous generation's last checkpoint
is the frozen teacher: it locates every training image's informative centre once (one file per generation,
``DIR/centres_gen_<g>.pt``, through Lightning's predict), then student ``g`` trains on images erased around those
centres with CE + distillation from the teacher (:class:`ferkit.methods.PASMClassifier`).

``ferkit pasm locate --config NAME --teacher CKPT --out FILE [overrides]`` runs only the centre pass: the training
set of the config (with the overrides) located with the teacher checkpoint and the config's locator settings, written
to ``FILE`` with a report ``FILE.json`` (images, seconds). The benchmark harness chains generations with it.

Each generation logs to ``DIR/gen_<g>/version_0`` (CSV metrics, checkpoints, test report); ``DIR/summary.json``
records every finished generation (checkpoint, centre file, validation / test metrics, seconds spent training and
locating). Killed in generation ``g``, the same command resumes there: finished generations and existing centre
files are kept, and generation ``g`` continues from its ``last.ckpt``.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

from ferkit.commands.lightning_cli import build_cli
from ferkit.methods.pasm import precompute_centres

log = logging.getLogger(__name__)

__all__ = ["main", "run_generations", "locate"]


def _trainer_kwargs(cli) -> dict[str, Any]:
    """The accelerator / devices / strategy of the config's trainer, for the centre pass."""
    cfg = cli.config["trainer"]  # a CLI built with run=False has no subcommand level
    out = {k: cfg[k] for k in ("accelerator", "devices", "num_nodes") if cfg.get(k) is not None}
    if isinstance(cfg.get("strategy"), str):
        out["strategy"] = cfg["strategy"]
    return out


def _metrics(trainer, prefix: str) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}


def locate(config: str, teacher: str | Path, out: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any] | None:
    """The centre pass alone: locate the config's training set with ``teacher`` into ``out``. Returns the report
    (``images``, ``locate_seconds``, also written to ``<out>.json``), or ``None`` when the config's model erases
    around random positions (nothing to locate)."""
    probe = build_cli(["--config", str(config), *overrides, "--trainer.logger=false"], run=False)
    if probe.model.hparams.random_centres:
        return None
    start = time.perf_counter()
    precompute_centres(teacher, probe.datamodule, out, trainer_kwargs=_trainer_kwargs(probe),
                       **{k: probe.model.hparams[k] for k in ("attack", "max_points", "points_per_step", "window", "stride")})
    report = {"teacher": str(teacher), "centres": str(out), "images": len(probe.datamodule.train_set),
              "attack": probe.model.hparams.attack, "locate_seconds": round(time.perf_counter() - start, 3)}
    if probe.trainer.is_global_zero:
        Path(str(out) + ".json").write_text(json.dumps(report, indent=2))
    return report


def run_generations(config: str, generations: int, out: str | Path, overrides: Sequence[str] = (),
                    trainer_defaults: dict[str, Any] | None = None, test: bool = True) -> dict[str, Any]:
    """Train PASM generations 0..``generations`` (see the module docstring); returns the summary it writes."""
    if generations < 0:
        raise ValueError(f"--generations must be >= 0, got {generations}")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "summary.json"
    run = {"config": str(config), "overrides": list(overrides)}
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {**run, "generations": {}}
    if {k: summary.get(k) for k in run} != run:
        raise SystemExit(f"ferkit pasm: {out} holds a run of --config {summary.get('config')} with overrides "
                         f"{summary.get('overrides')}; resume with the same arguments or choose another --out")
    teacher: str | None = None
    for g in range(generations + 1):
        record = summary["generations"].get(str(g))
        if record and record.get("status") == "done":
            teacher = record["checkpoint"]
            log.info("PASM generation %d already trained: %s", g, teacher)
            continue
        logger = f"--trainer.logger={{class_path: lightning.pytorch.loggers.CSVLogger, init_args: {{save_dir: '{out}', name: gen_{g}}}}}"
        args = ["--config", str(config), *overrides]
        record = {"generation": g, "status": "running", "teacher": teacher}
        if g == 0:
            # generation 0 is plain CE, also in the random-erasing control
            args += ["--model.init_args.teacher_ckpt=null", "--model.init_args.centres_path=null",
                     "--model.init_args.random_centres=false"]
        else:
            centres = out / f"centres_gen_{g}.pt"
            if not centres.is_file():
                report = locate(config, teacher, centres, overrides)
                if report is None:
                    centres = None  # the control erases around random positions: no centres to locate
                else:
                    record["locate_seconds"] = report["locate_seconds"]
                    record["locate_images"] = report["images"]
            args += [f"--model.init_args.teacher_ckpt={teacher}", f"--model.init_args.centres_path={centres or 'null'}"]
            record["centres"] = None if centres is None else str(centres)
        last = out / f"gen_{g}" / "version_0" / "checkpoints" / "last.ckpt"
        resume = [f"--ckpt_path={last}"] if last.is_file() else []
        if resume:
            log.info("PASM generation %d: resuming from %s", g, last)
            record["resumed_from"] = str(last)
        start = time.perf_counter()
        cli = build_cli(["fit", *args, logger, *resume], trainer_defaults=trainer_defaults)
        trainer = cli.trainer
        if trainer.interrupted or not last.is_file():
            raise SystemExit(f"ferkit pasm: generation {g} did not finish (no {last}); run the same command again to resume")
        record["fit_seconds"] = round(time.perf_counter() - start, 3)
        record["epochs"] = int(trainer.current_epoch)
        record["val"] = _metrics(trainer, "val/")
        if test:
            trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
            record["test"] = _metrics(trainer, "test/")
        if "locate_seconds" in record and record["epochs"]:
            # the centre pass as a fraction of one training epoch of this generation
            record["locate_fraction_of_epoch"] = round(record["locate_seconds"] / (record["fit_seconds"] / record["epochs"]), 4)
        record.update(status="done", checkpoint=str(last))
        summary["generations"][str(g)] = record
        if trainer.is_global_zero:
            tmp = summary_path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(summary, indent=2))
            tmp.replace(summary_path)
        teacher = str(last)
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    argv = list(argv or [])
    if argv[:1] == ["locate"]:
        lp = argparse.ArgumentParser(prog="ferkit pasm locate", description="PASM's centre pass alone: locate every "
                                     "training image's informative centre with a teacher checkpoint.",
                                     epilog="Any other argument is a LightningCLI override for the config (the data "
                                            "options must match the fit that reads the centres).")
        lp.add_argument("--config", required=True, help="a PASM config (its data and locator settings are used)")
        lp.add_argument("--teacher", required=True, help="the teacher's checkpoint")
        lp.add_argument("--out", required=True, help="the centre file to write (int16 [N, 2])")
        known, rest = lp.parse_known_args(argv[1:])
        report = locate(known.config, known.teacher, known.out, rest)
        print(json.dumps(report, indent=2) if report else "the config erases around random centres: nothing to locate")
        return report
    parser = argparse.ArgumentParser(prog="ferkit pasm", description=__doc__.split("\n\n")[0],
                                     epilog="`ferkit pasm locate --help`: the centre pass alone. Any other argument is passed to every generation's `ferkit fit` "
                                            "(e.g. --trainer.max_epochs=10 --data.dataset.init_args.root=...).")
    parser.add_argument("--config", required=True, help="a PASM config (name of a packaged one, e.g. pasm_synthetic, or a path)")
    parser.add_argument("--generations", type=int, default=2, help="student generations after the CE generation 0 (default 2)")
    parser.add_argument("--out", required=True, help="folder of the run (resumed when it exists)")
    parser.add_argument("--no-test", action="store_true", help="skip the test-split evaluation after each generation")
    known, rest = parser.parse_known_args(argv)
    summary = run_generations(known.config, known.generations, known.out, rest, test=not known.no_test)
    print(json.dumps({g: {k: r.get(k) for k in ("checkpoint", "val", "test")} for g, r in summary["generations"].items()}, indent=2))
    return summary
