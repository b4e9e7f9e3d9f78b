"""Command line: ``ferkit fit|validate|test|predict --config ...`` (LightningCLI), plus ``ferkit demo`` and ``ferkit info``.

* ``ferkit fit --config configs/arm_ferplus.yaml`` trains; the saved ``config.yaml`` next to the logs is the
  reproducibility record. ``--ckpt_path last`` resumes.
* ``ferkit test --config ... --ckpt_path path/to.ckpt`` evaluates and writes confusion matrices (CSV + PNG).
* ``ferkit predict --config ... --ckpt_path ...`` writes per-image probabilities with label names to CSV.
* ``ferkit asm-report --ckpt ... --out DIR`` writes ASM's current split to CSV and a contact sheet of suspects.
* ``ferkit landmarks extract|summary|draw ...`` builds and inspects landmark caches (see ``ferkit.landmarks``).
* ``ferkit demo`` trains ARM on the embedded synthetic faces and prints overall and mean-class accuracy.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from ferkit.data.datamodule import FERDataModule
from ferkit.methods.classifier import FERClassifier


class FerkitCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        from ferkit.callbacks import PredictionCSVWriter

        # always present (acts only in `predict`): --prediction_writer.output sets the CSV path
        parser.add_lightning_class_args(PredictionCSVWriter, "prediction_writer")
        # the label space and input geometry come from the data module: one source of truth
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.init_args.class_names", apply_on="instantiate")
        parser.link_arguments("data.img_size", "model.init_args.img_size")
        parser.link_arguments("data.channels", "model.init_args.in_chans")


def build_cli(args=None, run: bool = True) -> FerkitCLI:
    return FerkitCLI(
        FERClassifier,
        FERDataModule,
        subclass_mode_model=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


def run_demo(argv: list[str]) -> dict:
    """Train ARM (or average pooling) on the synthetic faces, test it, print and return the results."""
    p = argparse.ArgumentParser(prog="ferkit demo", description=run_demo.__doc__)
    p.add_argument("--pool", default="arm", choices=["arm", "avg"])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--num-train", type=int, default=4000)
    p.add_argument("--num-eval", type=int, default=1000, help="validation and test samples each")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--small-input", action="store_true", help="drop the stem max-pool (2x larger final map, ~2x slower)")
    p.add_argument("--preset", default="default", help="training augmentation preset")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="runs/demo")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--devices", default="1")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from ferkit.methods.arm import ARMClassifier

    L.seed_everything(a.seed, workers=True, verbose=False)
    dm = FERDataModule(dataset="synthetic",
                       dataset_kwargs={"num_train": a.num_train, "num_val": a.num_eval, "num_test": a.num_eval, "image_size": a.img_size, "seed": a.seed},
                       img_size=a.img_size, channels=3, batch_size=a.batch_size, train_preset=a.preset, hflip=0.5)
    common = dict(backbone=a.backbone, small_input=a.small_input, num_classes=dm.num_classes, class_names=dm.class_names,
                  img_size=a.img_size, in_chans=3, optimizer="adamw", lr=2e-3, weight_decay=5e-2, scheduler="onecycle")
    if a.pool == "arm":
        from ferkit import ARM, create_backbone

        # ARM's geometry follows the backbone's final map (e.g. 64 px -> 2x2 -> shuffle 16, kernel 16, stride 8 -> 3x3)
        bb = create_backbone(a.backbone, in_chans=3, small_input=a.small_input)
        model = ARMClassifier(pool_kwargs=ARM.suggest_config(bb.num_features, bb.feature_size(a.img_size)), **common)
    else:
        model = FERClassifier(pool="avg", **common)
    out = Path(a.output_dir)
    logger = CSVLogger(out, name=f"{a.pool}")
    ckpt = ModelCheckpoint(monitor="val/mean_class_acc", mode="max", save_last=True)
    trainer = L.Trainer(max_epochs=a.epochs, accelerator=a.accelerator, devices=int(a.devices) if a.devices.isdigit() else a.devices,
                        logger=logger, callbacks=[ckpt], enable_progress_bar=not a.no_progress, log_every_n_steps=10,
                        deterministic=False)
    t0 = time.perf_counter()
    trainer.fit(model, dm)
    fit_s = time.perf_counter() - t0
    trainer.test(model, datamodule=dm, ckpt_path="best", verbose=False)
    res = model.last_results["test"]
    summary = {
        "pool": a.pool, "backbone": a.backbone, "img_size": a.img_size, "epochs": a.epochs, "num_train": a.num_train,
        "test_overall_acc": round(100 * float(res["acc"]), 2), "test_mean_class_acc": round(100 * float(res["mean_class_acc"]), 2),
        "fit_seconds": round(fit_s, 1), "best_checkpoint": ckpt.best_model_path, "log_dir": logger.log_dir,
    }
    if trainer.is_global_zero:
        Path(logger.log_dir).mkdir(parents=True, exist_ok=True)
        (Path(logger.log_dir) / "demo_summary.json").write_text(json.dumps(summary, indent=2))
        print("\n" + "=" * 64)
        print(f"ferkit demo: {a.pool.upper()} on synthetic faces ({a.num_train} train, {a.num_eval} test, {a.img_size}px)")
        print(f"  test overall accuracy     {summary['test_overall_acc']:.2f} %")
        print(f"  test mean-class accuracy  {summary['test_mean_class_acc']:.2f} %")
        print(f"  training time             {fit_s:.0f} s")
        print(f"  outputs                   {logger.log_dir}")
        print("=" * 64)
    return summary


def run_info() -> None:
    from ferkit.data.registry import DATASETS
    from ferkit.data.transforms import available_presets
    from ferkit.layers.pools import available_pools

    print("datasets:")
    for name, e in sorted(DATASETS.items()):
        print(f"  {name:<10} {e.doc}")
    print("pools:     ", ", ".join(available_pools()))
    print("presets:   ", ", ".join(available_presets()))
    configs = Path(__file__).resolve().parent.parent / "configs"
    if configs.is_dir():
        print("configs:   ", ", ".join(sorted(p.name for p in configs.glob("*.yaml"))))


def main(argv: list[str] | None = None) -> None:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":
        run_demo(argv[1:])
        return
    if argv and argv[0] == "asm-report":
        from ferkit.methods.asm.report import main as asm_report_main

        asm_report_main(argv[1:])
        return
    if argv and argv[0] == "landmarks":
        from ferkit.landmarks.cli import main as landmarks_main

        landmarks_main(argv[1:])
        return
    if argv and argv[0] == "info":
        run_info()
        return
    build_cli(args=None if from_command_line else argv)


if __name__ == "__main__":
    main()
