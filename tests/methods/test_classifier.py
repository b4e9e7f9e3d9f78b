"""The base LightningModule: training, evaluation hygiene, checkpoints, NaN handling."""
import lightning as L
import pytest
import torch

from ferkit.data.datamodule import FERDataModule
from ferkit.methods.arm import ARMClassifier
from ferkit.methods.classifier import FERClassifier, NonFiniteLossError

SMALL = {"num_train": 64, "num_val": 32, "num_test": 32, "image_size": 32}
ARM_32 = {"shuffle": 16, "kernel_size": 16, "stride": 8}  # 32 px + small_input -> 2x2 map -> 32x32 -> 3x3


def _dm():
    return FERDataModule(dataset="synthetic", dataset_kwargs=SMALL, img_size=32, channels=3, batch_size=16)


def _trainer(tmp_path, **kw):
    args = dict(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=tmp_path)
    args.update(kw)
    return L.Trainer(**args)


def _model(cls=FERClassifier, **kw):
    dm = _dm()
    args = dict(backbone="resnet18", small_input=True, img_size=32, num_classes=dm.num_classes, class_names=dm.class_names)
    args.update(kw)
    return cls(**args), dm


def test_fit_test_and_checkpoint_carries_label_names(tmp_path):
    model, dm = _model(ARMClassifier, pool_kwargs=ARM_32, output_dir=str(tmp_path / "out"))
    trainer = _trainer(tmp_path, enable_checkpointing=True)
    trainer.fit(model, dm)
    trainer.test(model, dm, verbose=False)
    res = model.last_results["test"]
    assert int(res["num_samples"]) == 32 and 0.0 <= float(res["acc"]) <= 1.0
    assert (tmp_path / "out" / "confusion_matrix_test.png").exists()
    assert (tmp_path / "out" / "metrics_test.json").exists()
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["ferkit"]["class_names"] == dm.class_names
    assert "model.pool.g_ema" in ckpt["state_dict"]
    restored = ARMClassifier.load_from_checkpoint(path)
    restored.eval(), model.eval()
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(restored(x), model(x))


@pytest.mark.parametrize("pool,kw,independent", [("avg", None, True), ("arm", dict(ARM_32, affinity="ema"), True),
                                                 ("arm", dict(ARM_32, affinity="none"), True), ("arm", dict(ARM_32, affinity="batch"), False)])
def test_eval_output_does_not_depend_on_batch_companions(pool, kw, independent):
    torch.manual_seed(0)
    model, _ = _model(pool=pool, pool_kwargs=kw)
    model.train()
    model(torch.randn(8, 3, 32, 32))  # one training forward initialises running statistics / g_ema
    model.eval()
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        alone = model(x[:1])
        batch = model(x)[:1]
        other = model(torch.cat([x[:1], torch.randn(5, 3, 32, 32) * 3]))[:1]
    if independent:
        torch.testing.assert_close(alone, batch, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(alone, other, atol=1e-5, rtol=1e-4)
    else:
        assert not torch.allclose(alone, other, atol=1e-4)


def test_nan_loss_raises_or_is_skipped_and_counted(tmp_path):
    model, dm = _model()
    model.classification_loss = lambda logits, batch: logits.sum() * float("nan")
    with pytest.raises(NonFiniteLossError, match="nan_policy=skip"):
        _trainer(tmp_path, max_steps=1).fit(model, dm)
    model, dm = _model(nan_policy="skip")
    model.classification_loss = lambda logits, batch: logits.sum() * float("nan")
    _trainer(tmp_path, max_epochs=1, enable_checkpointing=False, limit_val_batches=0).fit(model, dm)
    assert int(model.skipped_nonfinite) == 4  # one epoch of 64 samples / 16 = 4 batches, all skipped


def test_checkpoint_with_other_classes_is_refused(tmp_path):
    model, dm = _model()
    trainer = _trainer(tmp_path, max_steps=1, enable_checkpointing=False)
    trainer.fit(model, dm)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    ckpt = torch.load(tmp_path / "m.ckpt", weights_only=False)
    ckpt["ferkit"]["class_names"] = list(reversed(ckpt["ferkit"]["class_names"]))
    with pytest.raises(ValueError, match="trained with classes"):
        model.on_load_checkpoint(ckpt)


def test_optimisers_and_schedulers():
    from types import SimpleNamespace

    model, _ = _model()
    model._trainer = SimpleNamespace(estimated_stepping_batches=10, max_epochs=3)  # what configure_optimizers reads
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    for opt, cls in kinds.items():
        for sched in ("none", "onecycle", "cosine", "exponential", "step"):
            model.hparams.optimizer, model.hparams.scheduler = opt, sched
            out = model.configure_optimizers()
            optimizer = out if sched == "none" else out["optimizer"]
            assert isinstance(optimizer, cls)
            # norms, biases and ARM's alpha carry no weight decay
            assert optimizer.param_groups[1]["weight_decay"] == 0.0
            if sched == "onecycle":
                assert out["lr_scheduler"]["interval"] == "step" and out["lr_scheduler"]["scheduler"].total_steps == 10
    model.hparams.optimizer = "lion"
    with pytest.raises(ValueError, match="optimizer"):
        model.configure_optimizers()
    model.hparams.optimizer, model.hparams.scheduler = "adam", "poly"
    with pytest.raises(ValueError, match="scheduler"):
        model.configure_optimizers()
