"""The base LightningModule: training, evaluation hygiene, checkpoints, NaN handling, optimisers and schedules,
the network factory and ARM's geometry."""
import copy
import functools
import warnings
from types import SimpleNamespace

import pytest
import torch

from ferkit.core.errors import NonFiniteLossError
from ferkit.methods import ARMClassifier, FERClassifier, LinearDecay, OneCycle
from ferkit.models import FERNet, FERNetConfig

ARM_32 = {"shuffle": 16, "kernel_size": 16, "stride": 8}  # 32 px + small_input -> 2x2 map -> 32x32 -> 3x3


def test_fit_test_and_checkpoint_carries_label_names(tmp_path, synthetic_dm, tiny_module, tiny_trainer):
    dm = synthetic_dm()
    model = tiny_module(ARMClassifier, dm, net={"pool": "arm", "pool_kwargs": ARM_32}, output_dir=str(tmp_path / "out"))
    trainer = tiny_trainer(enable_checkpointing=True)
    trainer.fit(model, dm)
    trainer.test(model, dm, verbose=False)
    res = model.last_results["test"]
    assert int(res["num_samples"]) == 32 and int(res["confusion_matrix"].sum()) == 32
    assert (tmp_path / "out" / "confusion_matrix_test.png").exists()
    assert (tmp_path / "out" / "metrics_test.json").exists()
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["ferkit"]["class_names"] == dm.class_names
    assert ckpt["ferkit"]["class_path"] == "ferkit.methods.arm.lightning_model.ARMClassifier"
    assert "model.pool.g_ema" in ckpt["state_dict"]
    assert ckpt["hyper_parameters"]["net"]["pool_kwargs"] == ARM_32  # plain data: readable with weights_only=True
    torch.load(path, weights_only=True)
    restored = ARMClassifier.load_from_checkpoint(path)
    restored.eval(), model.eval()
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(restored(x), model(x))


@pytest.mark.parametrize("pool,kw,independent", [("avg", None, True), ("arm", dict(ARM_32, affinity="ema"), True),
                                                 ("arm", dict(ARM_32, affinity="none"), True), ("arm", dict(ARM_32, affinity="batch"), False)])
def test_eval_output_does_not_depend_on_batch_companions(pool, kw, independent, synthetic_dm, tiny_module):
    torch.manual_seed(0)
    model = tiny_module(FERClassifier, synthetic_dm(), net={"pool": pool, "pool_kwargs": kw})
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


def test_nan_loss_raises_or_is_skipped_and_counted(synthetic_dm, tiny_module, tiny_trainer):
    dm = synthetic_dm()
    model = tiny_module(FERClassifier, dm)
    model.classification_loss = lambda logits, batch: logits.sum() * float("nan")
    with pytest.raises(NonFiniteLossError, match="nan_policy skip"):
        tiny_trainer(max_steps=1).fit(model, dm)
    model = tiny_module(FERClassifier, dm, nan_policy="skip")
    model.classification_loss = lambda logits, batch: logits.sum() * float("nan")
    tiny_trainer(limit_val_batches=0).fit(model, dm)
    assert int(model.skipped_nonfinite) == 4  # one epoch of 64 samples / 16 = 4 batches, all skipped


def test_checkpoint_with_other_classes_is_refused(tmp_path, synthetic_dm, tiny_module, tiny_trainer):
    dm = synthetic_dm()
    model = tiny_module(FERClassifier, dm)
    trainer = tiny_trainer(max_steps=1)
    trainer.fit(model, dm)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    ckpt = torch.load(tmp_path / "m.ckpt", weights_only=False)
    ckpt["ferkit"]["class_names"] = list(reversed(ckpt["ferkit"]["class_names"]))
    with pytest.raises(ValueError, match="trained with classes"):
        model.on_load_checkpoint(ckpt)


def test_soft_labels_are_used_whenever_the_batch_carries_them(synthetic_dm, tiny_module):
    model = tiny_module(FERClassifier, synthetic_dm())
    logits = torch.randn(4, 7)
    hard = {"label": torch.tensor([0, 1, 2, 3])}
    soft = dict(hard, soft_label=torch.softmax(torch.randn(4, 7), 1))
    expected = -(soft["soft_label"] * torch.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(model.classification_loss(logits, soft), expected)
    torch.testing.assert_close(model.classification_loss(logits, hard), torch.nn.functional.cross_entropy(logits, hard["label"]))


def test_optimiser_and_scheduler_callables(synthetic_dm, tiny_module):
    dm = synthetic_dm()
    model = tiny_module(FERClassifier, dm, optimizer=functools.partial(torch.optim.SGD, lr=0.1, weight_decay=1e-3),
                        scheduler=OneCycle)
    model._trainer = SimpleNamespace(estimated_stepping_batches=40)  # what configure_optimizers reads
    out = model.configure_optimizers()
    opt, sched = out["optimizer"], out["lr_scheduler"]
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["weight_decay"] == 1e-3
    assert opt.param_groups[1]["weight_decay"] == 0.0  # norms, biases and ARM's alpha carry no weight decay
    assert sched["interval"] == "step" and sched["scheduler"].total_steps == 40  # sized to the run
    # a one-cycle plan cannot be silently extended
    for _ in range(40):
        opt.step(), sched["scheduler"].step()
    with pytest.raises(RuntimeError, match="one-cycle"):
        model.lr_scheduler_step(sched["scheduler"], None)
    model = tiny_module(FERClassifier, dm, scheduler=LinearDecay)
    model._trainer = SimpleNamespace(estimated_stepping_batches=10)
    out = model.configure_optimizers()
    sched = out["lr_scheduler"]["scheduler"]
    assert out["lr_scheduler"]["interval"] == "step" and sched.total_iters == 10
    for _ in range(10):
        out["optimizer"].step(), sched.step()
    assert out["optimizer"].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    model = tiny_module(FERClassifier, dm, scheduler=functools.partial(torch.optim.lr_scheduler.ExponentialLR, gamma=0.5))
    model._trainer = SimpleNamespace(estimated_stepping_batches=10)
    assert model.configure_optimizers()["lr_scheduler"]["interval"] == "epoch"
    assert isinstance(tiny_module(FERClassifier, dm, scheduler=None).configure_optimizers(), torch.optim.AdamW)


def test_a_subclass_argument_is_available_in_build_model(synthetic_dm):
    """The network is built after every __init__ has run, so a new argument needs no hparams look-up."""

    class Wider(FERClassifier):
        def __init__(self, hidden: int = 32, **kwargs):
            super().__init__(**kwargs)
            self.hidden = hidden

        def build_model(self):
            net = super().build_model()
            net.head = torch.nn.Sequential(torch.nn.Linear(net.num_features, self.hidden), torch.nn.ReLU(),
                                           torch.nn.Linear(self.hidden, net.num_classes))
            return net

    dm = synthetic_dm()
    model = Wider(hidden=5, net=FERNetConfig(backbone="resnet10t", small_input=True), num_classes=7, img_size=32)
    assert model.model.head[0].out_features == 5 and model.hparams.hidden == 5
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_one_network_config_builds_every_network():
    cfg = FERNetConfig(backbone="resnet10t", pool="avg", small_input=True, dropout=0.1)
    net = cfg.build(num_classes=5, in_chans=1, img_size=32)
    assert isinstance(net, FERNet) and net.config == cfg and net.num_classes == 5 and net.in_chans == 1
    assert FERNetConfig.coerce(cfg.to_dict()) == cfg
    # keyword shorthand: the same fields, still listed only by FERNetConfig
    assert FERNet(backbone="resnet10t", small_input=True, dropout=0.1, num_classes=5, img_size=32).config == cfg
    with pytest.raises(TypeError, match="unknown argument.*'widht'"):
        FERNetConfig.coerce({"widht": 3})


def test_arm_geometry_follows_the_real_map_and_refuses_degenerate_ones():
    # no ARM geometry given: chosen for the real map (64 px without small_input: ResNet map 2x2 -> 3x3 = 9 features)
    model = ARMClassifier(net=FERNetConfig(backbone="resnet10t", pool="arm"), num_classes=7, img_size=64)
    assert model.model.pool.out_features == 9
    # a geometry that leaves fewer than 4 features is an error that names the fix
    bad = FERNetConfig(backbone="resnet10t", pool="arm", small_input=True, pool_kwargs={"shuffle": 16, "kernel_size": 32, "stride": 16})
    with pytest.raises(ValueError, match="fewer than 4.*remove net.pool_kwargs"):
        bad.build(num_classes=7, in_chans=3, img_size=32)
    # far fewer features than average pooling would give: a warning
    with pytest.warns(UserWarning, match="ARM gives 9 features where average pooling would give 512"):
        FERNetConfig(backbone="resnet10t", pool="arm").build(num_classes=7, in_chans=3, img_size=64)
    with pytest.raises(ValueError, match="net.pool must be 'arm'"):
        ARMClassifier(net=FERNetConfig(pool="avg"))


def test_eval_flip_averages_the_softmax_of_the_image_and_its_mirror(synthetic_dm, tiny_module, tiny_trainer):
    dm = synthetic_dm()
    plain = tiny_module(FERClassifier, dm)
    flip = tiny_module(FERClassifier, dm, eval_flip=True)
    plain.configure_model(), flip.configure_model()   # the networks are built lazily
    flip.load_state_dict(plain.state_dict())
    plain.eval(), flip.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(plain.evaluation_logits(x), plain(x))   # off: the network's own logits
        expected = 0.5 * (torch.softmax(plain(x), 1) + torch.softmax(plain(x.flip(-1)), 1))
        got = flip.evaluation_logits(x)
        torch.testing.assert_close(got.exp(), expected)
        assert not torch.allclose(got.exp(), torch.softmax(plain(x), 1))   # a random network is not mirror-symmetric
        # a mirror-symmetric input gives the plain prediction back
        sym = torch.cat([x[..., :16], x[..., :16].flip(-1)], dim=-1)
        torch.testing.assert_close(flip.evaluation_logits(sym).exp(), torch.softmax(plain(sym), 1))
        batch = {"image": x, "index": torch.arange(4), "label": torch.zeros(4, dtype=torch.long)}
        torch.testing.assert_close(flip.predict_step(batch, 0)["probs"], expected)
    # the evaluation loop scores the flip-averaged predictions, and the setting survives a checkpoint
    trainer = tiny_trainer()
    trainer.test(flip, dm, verbose=False)
    assert int(flip.last_results["test"]["num_samples"]) == 32
    assert flip.hparams.eval_flip is True


@pytest.mark.parametrize("precision,expected", [("bf16-mixed", True), ("32-true", False)])
def test_channels_last_by_default_where_the_cpu_trains_in_bf16(synthetic_dm, tiny_module, tiny_trainer, precision,
                                                               expected) -> None:
    """``channels_last=None`` (the default) chooses the layout from the trainer: channels-last on the CPU in bf16
    (measured x1.37 per step on the Intel Xeon, x1.02-1.09 on the AMD EPYC), contiguous in fp32."""
    dm = synthetic_dm()
    model = tiny_module(FERClassifier, dm)
    assert model.hparams.channels_last is None and model.uses_channels_last is False  # no trainer yet
    seen = []
    step = model.training_step

    def spy(batch, batch_idx):
        seen.append(batch["image"].is_contiguous(memory_format=torch.channels_last))
        return step(batch, batch_idx)

    model.training_step = spy
    tiny_trainer(max_steps=2, precision=precision).fit(model, dm)
    assert model.uses_channels_last is expected and seen == [expected] * 2
    convs = [p for p in model.parameters() if p.ndim == 4 and p.shape[-1] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) == expected for p in convs)


def test_channels_last_trains_the_same_network_in_the_other_memory_format(synthetic_dm, tiny_module, tiny_trainer):
    """``channels_last=True`` changes where the numbers sit in memory, not the function: the same weights give the
    same predictions; training runs on channels-last batches and weights and ends near the contiguous run (Adam's
    steps amplify the convolutions' rounding differences up to about the learning rate)."""
    from ferkit.methods.base import _to_channels_last

    results = {}
    for on in (False, True):
        dm = synthetic_dm()
        model = tiny_module(FERClassifier, dm, channels_last=on)
        seen = []
        step = model.training_step

        def spy(batch, batch_idx, _step=step, _seen=seen):
            _seen.append(batch["image"].is_contiguous(memory_format=torch.channels_last))
            return _step(batch, batch_idx)

        model.training_step = spy
        torch.manual_seed(0)
        tiny_trainer(max_steps=3).fit(model, dm)
        convs = [p for p in model.parameters() if p.ndim == 4 and p.shape[-1] > 1]  # a 1x1 kernel is both formats
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) == on for p in convs)
        assert seen and all(s == on for s in seen)
        results[on] = {k: v.float() for k, v in model.state_dict().items() if v.is_floating_point()}
    for k, v in results[False].items():
        assert (results[True][k] - v).abs().max() < 1e-2, k
    assert model.hparams.channels_last is True
    # the same weights, evaluated: the same predictions
    dm = synthetic_dm()
    plain, cl = tiny_module(FERClassifier, dm), tiny_module(FERClassifier, dm, channels_last=True)
    plain.configure_model(), cl.configure_model()
    cl.load_state_dict(plain.state_dict())
    plain.eval(), cl.eval()
    x = torch.randn(4, 3, 32, 32)
    batch = {"image": x.clone(), "index": torch.arange(4), "label": torch.zeros(4, dtype=torch.long)}
    cl.on_predict_batch_start(batch, 0)
    assert batch["image"].is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(cl.predict_step(batch, 0)["probs"], torch.softmax(plain(x), 1), rtol=1e-4, atol=1e-5)
    # the batch helper: 4-D floating tensors only, in any nesting
    b = _to_channels_last({"image": torch.randn(2, 3, 4, 4), "label": torch.zeros(2), "views": [torch.randn(2, 1, 4, 4)]})
    assert b["image"].is_contiguous(memory_format=torch.channels_last) and b["label"].ndim == 1
    assert b["views"][0].is_contiguous(memory_format=torch.channels_last)


def test_predictions_agree_with_the_scored_argmax_under_bf16_autocast(synthetic_dm, tiny_module):
    """Two logits that bf16 keeps apart but whose bf16 softmax rounds to one value: the predicted class is still the
    logits' arg-max, the class that test accuracy counts (a bf16 softmax gave the lower class of the tie)."""
    dm = synthetic_dm()
    module = tiny_module(FERClassifier, dm)
    module.configure_model()
    logits = torch.tensor([[0.1001, 0.1006, -3.0, -3.0, -3.0, -3.0, -3.0]])
    assert torch.softmax(logits.bfloat16(), 1)[0, 0] == torch.softmax(logits.bfloat16(), 1)[0, 1]  # the tie exists
    module.evaluation_logits = lambda x: logits.bfloat16().expand(x.shape[0], -1)
    batch = {"image": torch.randn(2, 3, 32, 32), "index": torch.arange(2), "label": torch.zeros(2, dtype=torch.long)}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = module.predict_step(batch, 0)
    assert out["probs"].dtype == torch.float32
    assert out["probs"].argmax(1).tolist() == [1, 1] == logits.bfloat16().argmax(1).expand(2).tolist()


def test_the_optimiser_takes_the_fused_kernel_unless_the_config_says_otherwise(synthetic_dm, tiny_module):
    dm = synthetic_dm()
    model = tiny_module(FERClassifier, dm, optimizer=functools.partial(torch.optim.AdamW, lr=1e-3, fused=None))
    assert model.configure_optimizers().defaults["fused"] is True
    model = tiny_module(FERClassifier, dm, optimizer=functools.partial(torch.optim.AdamW, lr=1e-3, fused=False))
    assert model.configure_optimizers().defaults["fused"] is False  # the config's word stands

    class NoKernelHere(torch.optim.SGD):  # an optimiser whose fused kernel this device lacks
        def __init__(self, params, lr=0.1, fused=None):
            if fused:
                raise RuntimeError("fused=True requires all the params to be on a supported device")
            super().__init__(params, lr=lr)

    model = tiny_module(FERClassifier, dm, optimizer=NoKernelHere)
    assert isinstance(model.configure_optimizers(), NoKernelHere)  # the loop, not an error
    model = tiny_module(FERClassifier, dm, optimizer=functools.partial(torch.optim.RMSprop, lr=1e-3))
    assert isinstance(model.configure_optimizers(), torch.optim.RMSprop)  # no fused kernel in its signature: as given


def test_the_fused_kernel_continues_a_run_saved_with_the_loop(synthetic_dm, tiny_module):
    """A checkpoint written by the per-parameter loop brings its choice back with the optimiser's state; training
    continues with the fused kernel chosen now, and the update is the loop's to float rounding."""
    dm = synthetic_dm()
    loop = tiny_module(FERClassifier, dm, optimizer=functools.partial(torch.optim.Adam, lr=1e-2, fused=False))
    opt = loop.configure_optimizers()
    params = list(loop.parameters())

    def step(o):
        for p in params:
            p.grad = torch.ones_like(p) * 0.3
        o.step()

    for _ in range(3):
        step(opt)
    saved = copy.deepcopy(opt.state_dict())
    before = [p.detach().clone() for p in params]
    step(opt)
    expected = [p.detach().clone() for p in params]

    with torch.no_grad():
        for p, b in zip(params, before):
            p.copy_(b)
    fused = torch.optim.Adam(loop.parameter_groups(), lr=1e-2, fused=True)  # what configure_optimizers builds now
    fused.load_state_dict(saved)
    assert fused.param_groups[0]["fused"] is False  # what the checkpoint said
    loop._trainer = SimpleNamespace(optimizers=[fused])
    loop.on_train_start()
    assert all(g["fused"] is True for g in fused.param_groups)
    step(fused)
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-6, atol=1e-7)
