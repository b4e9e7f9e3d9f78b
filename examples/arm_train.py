"""Train ARM with the Python API, on the embedded synthetic faces or on FER+.

    python examples/arm_train.py                                   # synthetic faces, ~3 min on a 2-core CPU
    python examples/arm_train.py --data ferplus --root ../shared/data/fer2013 --epochs 3
    python examples/arm_train.py --tiny                            # a smoke run (used by the tests)

The command-line counterpart is `ferkit fit --config arm_synthetic` (or `--config arm_ferplus`, whose FER+ network
differs: output stride 8 and ARM kernel 32, 81 features, where this script uses the stem without max-pool and
kernel 16, 25 features).
"""
from __future__ import annotations

import argparse
import functools

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from ferkit import ARM, ARMClassifier, FERDataModule, FERNetConfig, OneCycle
from ferkit.data import FERPlusSource, SyntheticSource


def make_data(a) -> FERDataModule:
    if a.data == "synthetic":
        sizes = {"num_train": 64, "num_val": 32, "num_test": 32} if a.tiny else {"num_train": 3000, "num_val": 1000, "num_test": 1000}
        return FERDataModule(dataset=SyntheticSource(**sizes, image_size=48), img_size=48, channels=3, batch_size=32 if a.tiny else 64)
    tiny = {"train_limit": 64, "val_limit": 64, "test_limit": 64} if a.tiny else {}
    return FERDataModule(dataset=FERPlusSource(a.root, label_mode="majority", num_classes=8), img_size=48, channels=1,
                         batch_size=64, eval_batch_size=256, train_preset="shift", **tiny)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=["synthetic", "ferplus"], default="synthetic")
    p.add_argument("--root", default="../shared/data/fer2013", help="FER+ folder (fer2013.csv(.gz) + fer2013new.csv)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--affinity", choices=["ema", "batch", "none"], default="ema")
    p.add_argument("--out", default="runs/examples")
    p.add_argument("--tiny", action="store_true", help="a few batches only (smoke test)")
    a = p.parse_args(argv)

    L.seed_everything(0, verbose=False)
    dm = make_data(a)

    # The ARM layer on its own: it replaces global pooling, B x C x H x W -> B x out_features.
    # With small_input a 48 px face gives a 3 x 3 map of 512 channels: pixel shuffle 16 -> 2 x 48 x 48,
    # one shared 16 x 16 de-albino kernel with stride 8 -> 5 x 5 = 25 features.
    arm = ARM(in_channels=512, feat_size=3, shuffle=16, kernel_size=16, stride=8, affinity=a.affinity)
    print(arm, "->", arm.out_features, "features")
    assert arm(torch.randn(2, 512, 3, 3)).shape == (2, arm.out_features)

    net = FERNetConfig(backbone="resnet18", pool="arm", small_input=True,
                       pool_kwargs={"shuffle": 16, "kernel_size": 16, "stride": 8, "affinity": a.affinity})
    model = ARMClassifier(net=net, img_size=48, in_chans=dm.hparams.channels, num_classes=dm.num_classes,
                          class_names=dm.class_names,
                          optimizer=functools.partial(torch.optim.AdamW, lr=2e-3, weight_decay=5e-4),
                          scheduler=functools.partial(OneCycle, pct_start=0.15))  # sized to the run by the module
    trainer = L.Trainer(max_epochs=1 if a.tiny else a.epochs, accelerator="auto", devices=1,
                        limit_train_batches=2 if a.tiny else None, logger=CSVLogger(a.out, name=f"arm_{a.data}"),
                        callbacks=[ModelCheckpoint(monitor="val/acc", mode="max"), TQDMProgressBar(refresh_rate=10)],
                        enable_progress_bar=True)
    trainer.fit(model, dm)
    trainer.test(model, datamodule=dm, ckpt_path="best", verbose=False)
    res = model.last_results["test"]
    out = {"overall_acc": float(res["acc"]), "mean_class_acc": float(res["mean_class_acc"]), "log_dir": trainer.logger.log_dir,
           "test_samples": int(res["num_samples"]), "arm_features": model.model.num_features}
    print(f"test overall accuracy {100 * out['overall_acc']:.2f} %, mean-class accuracy {100 * out['mean_class_acc']:.2f} %")
    return out


if __name__ == "__main__":
    main()
