"""ferkit's LightningCLI: ``ferkit fit|validate|test|predict --config NAME_OR_PATH``.

What it adds to Lightning's CLI:

* the label space and input geometry are linked from the data module to the model (one source of truth);
* ``--config arm_ferplus`` names a config packaged in ``ferkit/configs`` (any folder works; a path works too);
* the progress bar and model summary are chosen explicitly (:class:`TQDMProgressBar`, :class:`ModelSummary`), so
  runs look the same with or without ``rich``;
* ``--ckpt_path .../version_N/checkpoints/last.ckpt`` logs into the same ``version_N`` folder (one ``metrics.csv``,
  best-checkpoint tracking restored); ``test`` / ``predict`` of a run's checkpoint write into that run's folder
  instead of opening a new ``version_M``;
* a warning lists the ``--model.*`` command-line arguments that the checkpoint's hyper-parameters override; the
  evaluation options (``eval_flip``, ``channels_last``) given on the command line win over the checkpoint's.
"""
from __future__ import annotations

import logging
import re
import sys
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelSummary, ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger

from ferkit.callbacks import PredictionCSVWriter
from ferkit.data.datamodule import FERDataModule
from ferkit.methods.base import FERModule

log = logging.getLogger(__name__)

__all__ = ["FerkitCLI", "build_cli", "packaged_configs", "resolve_config_args", "SUBCOMMANDS", "EVALUATION_OPTIONS"]

SUBCOMMANDS = ("fit", "validate", "test", "predict")
#: model arguments that a ``--ckpt_path`` run takes from the command line rather than from the checkpoint: they change
#: how the network is evaluated (flip averaging) or laid out in memory, not the function it was trained to compute
EVALUATION_OPTIONS = ("eval_flip", "channels_last")
_RUN_FOLDER = re.compile(r"^version_(\d+)$")


def packaged_configs() -> dict[str, Path]:
    """Config name -> path of every YAML shipped in ``ferkit/configs``."""
    root = resources.files("ferkit") / "configs"
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith(".yaml")}


def resolve_config_args(argv: list[str]) -> list[str]:
    """Replace ``--config NAME`` (no such file, a packaged config name) by the packaged config's path."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        value, joined = None, False
        if a in ("-c", "--config") and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith("--config="):
            value, joined = a.split("=", 1)[1], True
        if value is None:
            out.append(a)
            i += 1
            continue
        path = value
        if not Path(value).exists():
            configs = packaged_configs()
            name = Path(value).name.removesuffix(".yaml") if Path(value).parent in (Path("."), Path("configs")) else None
            if name in configs:
                path = str(configs[name])
            else:
                raise SystemExit(f"ferkit: --config {value}: no such file and no packaged config of that name; packaged "
                                 f"configs: {', '.join(sorted(configs))} (`ferkit info` lists them)")
        out.extend([f"--config={path}"] if joined else [a, path])
        i += 1 if joined else 2
    return out


def _run_folder(ckpt_path: str | None) -> tuple[Path, int] | None:
    """``(save_dir/name, N)`` for a checkpoint inside ``.../version_N/checkpoints/``."""
    if not ckpt_path or not Path(ckpt_path).is_file():
        return None
    parent = Path(ckpt_path).resolve().parent
    m = _RUN_FOLDER.match(parent.parent.name) if parent.name == "checkpoints" else None
    return (parent.parent.parent, int(m.group(1))) if m else None


class FerkitCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # always present (acts only in `predict`): --prediction_writer.output sets the CSV path
        parser.add_lightning_class_args(PredictionCSVWriter, "prediction_writer")
        # the label space and input geometry come from the data module: one source of truth
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.init_args.class_names", apply_on="instantiate")
        parser.link_arguments("data.img_size", "model.init_args.img_size")
        parser.link_arguments("data.channels", "model.init_args.in_chans")

    def _parse_ckpt_path(self) -> None:
        """Lightning applies a checkpoint's hyper-parameters over the command line's model arguments. ferkit keeps that
        (a checkpoint's weights belong to its architecture and loss), names every ``--model.*`` argument it overrides
        in a warning, and makes one exception: the evaluation options (:data:`EVALUATION_OPTIONS`, which change how a
        network is evaluated or laid out in memory, not what it computes when trained) take the command line's value, so
        ``ferkit validate --ckpt_path ... --model.init_args.eval_flip false`` evaluates without flip averaging even
        when the run was trained with it."""
        sub = self.config.get("subcommand")
        before = None
        if sub and self.config[sub].get("ckpt_path"):
            before = self.config[sub].get("model")
            before = before.clone() if hasattr(before, "clone") else before
        super()._parse_ckpt_path()
        if before is None:
            return
        after = self.config[sub].get("model")
        changed, kept = [], []
        for key in sorted({a.split("=", 1)[0][len("--model."):] for a in self._cli_args if a.startswith("--model.")}):
            if key not in before and f"init_args.{key}" in before:
                key = f"init_args.{key}"  # the shorthand --model.NAME of a subclass's init argument
            try:
                old, new = before[key], after[key]
            except (KeyError, TypeError):
                continue
            if old == new:
                continue
            if key.rsplit(".", 1)[-1] in EVALUATION_OPTIONS:
                after[key] = old
                kept.append(f"--model.{key} {old!r} (the checkpoint has {new!r})")
            else:
                changed.append(f"--model.{key} {old!r} -> {new!r} (the checkpoint's)")
        if kept:
            log.info("evaluation options from the command line, not from the checkpoint: %s", "; ".join(kept))
        if changed:
            warnings.warn("the checkpoint's hyper-parameters override these command-line model arguments: "
                          + "; ".join(changed) + ". To change them, start a new run from the checkpoint's weights.",
                          UserWarning, stacklevel=2)

    def before_instantiate_classes(self) -> None:
        sub = self.subcommand
        if sub is None:
            return
        cfg = self.config[sub]
        found = _run_folder(cfg.get("ckpt_path"))
        logger = cfg.trainer.get("logger")
        if found is None or not logger or isinstance(logger, bool) or not hasattr(logger, "init_args"):
            return
        args = logger.init_args
        if getattr(args, "version", None) is not None or "save_dir" not in args:
            return
        root, version = found
        expected = Path(str(args.save_dir)).resolve() / str(args.get("name") or "lightning_logs")
        if expected == root:
            args.version = version  # continue the run's folder: one metrics.csv, best checkpoint tracked
            self._continued_run = True

    def _keep_metrics(self) -> None:
        """Lightning's CSV logger deletes an existing ``metrics.csv`` when it opens a run folder: when continuing a
        run, open it now and put the earlier rows back, so the new rows are appended."""
        logger = self.trainer.logger
        if not getattr(self, "_continued_run", False) or not isinstance(logger, CSVLogger):
            return
        path = Path(logger.log_dir) / "metrics.csv"
        old = path.read_text() if path.is_file() else None
        experiment = logger.experiment  # its writer removes metrics.csv here
        if old:
            path.write_text(old)
            experiment.metrics_keys = sorted(old.splitlines()[0].split(","))

    def before_fit(self) -> None:
        self._keep_metrics()

    def before_validate(self) -> None:
        self._keep_metrics()

    def before_test(self) -> None:
        self._keep_metrics()

    def before_predict(self) -> None:
        self._keep_metrics()

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Any:
        # choose the progress bar and model summary explicitly: with `rich` installed Lightning would pick its rich ones
        listed = list(config.get("callbacks") or []) + list(callbacks)
        if config.get("enable_progress_bar", True) is not False and not any(isinstance(c, ProgressBar) for c in listed):
            callbacks = [*callbacks, TQDMProgressBar(refresh_rate=10)]
        if config.get("enable_model_summary", True) is not False and not any(isinstance(c, ModelSummary) for c in listed):
            callbacks = [*callbacks, ModelSummary(max_depth=1)]
        return super()._instantiate_trainer(config, callbacks)

    def parse_arguments(self, parser, args) -> None:
        self._cli_args = list(args) if args is not None else list(sys.argv[1:])
        super().parse_arguments(parser, args)


def build_cli(args: list[str] | None = None, run: bool = True, **kwargs: Any) -> FerkitCLI:
    """The CLI over any :class:`FERModule` subclass and :class:`FERDataModule` (``args=None``: ``sys.argv``)."""
    args = resolve_config_args(list(sys.argv[1:] if args is None else args))
    # the arguments are always given explicitly (configs resolved by name): Lightning's warning about sys.argv is moot
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    return FerkitCLI(
        FERModule,
        FERDataModule,
        subclass_mode_model=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        auto_configure_optimizers=False,
        parser_kwargs={"prog": "ferkit"},
        **kwargs,
    )
