"""ARM (Amend Representation Module): shapes, the vectorised De-albino against a per-channel loop,
batch-independent evaluation, the g_ema buffer, errors, gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ferkit.layers import ARM, ARMPool, create_pool


pytestmark = pytest.mark.usefixtures("one_thread")


def _x(b: int = 4, c: int = 512, h: int = 7, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, h, h, generator=torch.Generator().manual_seed(seed))


def test_official_shape_512x7x7_gives_121() -> None:
    arm = ARM()
    assert arm.out_features == 121 and arm.out_size == 11
    assert arm.arranged_channels == 2 and arm.arranged_size == 112
    assert arm(_x()).shape == (4, 121)
    assert ARMPool is ARM
    assert "out_features=121" in repr(arm) and "affinity='ema'" in repr(arm)


def test_registered_as_pool() -> None:
    pool = create_pool("arm", in_channels=512, feat_size=4, affinity="none")
    assert isinstance(pool, ARM) and pool.out_features == 25


def _reference_de_albino(arm: ARM, x: torch.Tensor) -> torch.Tensor:
    """Slow, obviously-correct reference: explicit PixelShuffle index formula, per-channel, per-window loops."""
    b, c, h, _ = x.shape
    r = arm.shuffle
    cp = c // (r * r)
    # X[b, k, r*y + i, r*x + j] = F[b, r*r*k + r*i + j, y, x], written as one explicit index lookup
    k_, row, col = torch.meshgrid(torch.arange(cp), torch.arange(h * r), torch.arange(h * r), indexing="ij")
    arranged = x[:, r * r * k_ + r * (row % r) + (col % r), row // r, col // r]
    ks, t, n = arm.kernel_size, arm.stride, arm.out_size
    kernel = arm.kernel[0, 0]
    out = torch.stack(
        [
            torch.stack(
                [
                    torch.stack(
                        [(arranged[:, k, t * i : t * i + ks, t * j : t * j + ks] * kernel).sum(dim=(1, 2)) for j in range(n)],
                        dim=-1,
                    )
                    for i in range(n)
                ],
                dim=-2,
            )
            for k in range(cp)  # one channel at a time, the same kernel for each
        ],
        dim=1,
    )
    return arm.bn(out)


DA_CONFIGS = [
    (512, 7, {}),  # official: S=112, block-wise path (32 = 4 x 8)
    (1024, 4, {"kernel_size": 24, "stride": 4}),  # 4 arranged channels
    (512, 7, {"kernel_size": 24, "stride": 6}),  # (112 - 24) % 6 != 0: the last pixels are never covered
    (512, 4, {"kernel_size": 30, "stride": 7}),  # stride does not divide the kernel: conv2d path
]


@pytest.mark.parametrize("c,h,cfg", DA_CONFIGS)
def test_vectorised_de_albino_equals_per_channel_loop(c: int, h: int, cfg: dict) -> None:
    arm = ARM(in_channels=c, feat_size=h, **cfg).eval()
    with torch.no_grad():
        arm.bn.running_mean.uniform_(-1, 1)
        arm.bn.running_var.uniform_(0.5, 2)
        arm.bn.weight.uniform_(0.5, 2)
    x = _x(3, c, h).requires_grad_(True)
    w = torch.randn(3, arm.arranged_channels, arm.out_size, arm.out_size)
    fast = arm.de_albino(x)
    (fast * w).sum().backward()
    grads = x.grad.clone(), arm.kernel.grad.clone()
    x.grad, arm.kernel.grad = None, None
    ref = _reference_de_albino(arm, x)
    (ref * w).sum().backward()
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0], x.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], arm.kernel.grad, rtol=1e-4, atol=1e-4)


def _train_some(arm: ARM, steps: int = 3) -> None:
    arm.train()
    for s in range(steps):
        arm(_x(8, arm.in_channels, arm.feat_size, seed=100 + s))


@pytest.mark.parametrize("affinity", ["ema", "none"])
def test_eval_output_independent_of_batch_companions(affinity: str) -> None:
    torch.manual_seed(0)
    arm = ARM(affinity=affinity)
    _train_some(arm)
    arm.eval()
    img = _x(1, seed=1)
    with torch.no_grad():
        alone = arm(img)
        batch_a = arm(torch.cat([img, _x(5, seed=2)]))[:1]
        batch_b = arm(torch.cat([_x(2, seed=3), img, _x(1, seed=4) * 3]))[2:3]
    torch.testing.assert_close(batch_a, alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batch_b, alone, rtol=1e-5, atol=1e-6)


def test_batch_mode_eval_depends_on_companions() -> None:
    """Paper-faithful mode: G comes from the evaluation batch, so the same image gets different features."""
    torch.manual_seed(0)
    arm = ARM(affinity="batch")
    _train_some(arm)
    arm.eval()
    img = _x(1, seed=1)
    with torch.no_grad():
        alone = arm(img)
        in_batch = arm(torch.cat([img, _x(5, seed=2)]))[:1]
    assert (alone - in_batch).abs().max() > 1e-2
    # and bs=1 is E = (1 + alpha) U
    with torch.no_grad():
        u = arm.de_albino(img).mean(1).flatten(1)
    torch.testing.assert_close(alone, (1 + arm.alpha) * u)


def test_ema_initialised_from_first_batch_then_moving_average() -> None:
    arm = ARM(ema_momentum=0.9).train()
    assert int(arm.num_batches_tracked) == 0 and torch.all(arm.g_ema == 0)
    gs = []
    for s in range(3):
        x = _x(6, seed=10 + s)
        arm(x)
        # the batch G recomputed with the BN statistics of the same batch (BN in train mode)
        with torch.no_grad():
            arm.bn.train(False)
            d = F.conv2d(F.pixel_shuffle(x, 16).reshape(-1, 1, 112, 112), arm.kernel, stride=8).reshape(6, 2, 11, 11)
            d = F.batch_norm(d, None, None, arm.bn.weight, arm.bn.bias, training=True, eps=arm.bn.eps)
            gs.append(d.mean(dim=(0, 1)))
            arm.bn.train(True)
        if s == 0:
            torch.testing.assert_close(arm.g_ema, gs[0], rtol=1e-5, atol=1e-6)
    expected = 0.9 * (0.9 * gs[0] + 0.1 * gs[1]) + 0.1 * gs[2]
    torch.testing.assert_close(arm.g_ema, expected, rtol=1e-5, atol=1e-6)
    assert int(arm.num_batches_tracked) == 3
    # eval does not touch the buffer, and uses it
    before = arm.g_ema.clone()
    arm.eval()
    with torch.no_grad():
        out = arm(_x(2, seed=50))
        u = arm.de_albino(_x(2, seed=50)).mean(1)
    assert torch.equal(arm.g_ema, before)
    torch.testing.assert_close(out, (u + arm.alpha * before).flatten(1))


def test_ema_training_uses_batch_mean() -> None:
    arm = ARM().train()
    x = _x(4, seed=3)
    out = arm(x)
    u = arm.de_albino(x).mean(1)  # train-mode BN normalises with the same batch statistics again
    torch.testing.assert_close(out, (u + arm.alpha * u.mean(0)).flatten(1), rtol=1e-5, atol=1e-5)


def test_buffers_in_state_dict_and_restored() -> None:
    arm = ARM()
    _train_some(arm)
    sd = arm.state_dict()
    assert "g_ema" in sd and "num_batches_tracked" in sd and sd["g_ema"].shape == (11, 11)
    fresh = ARM()
    fresh.load_state_dict(sd)
    assert torch.equal(fresh.g_ema, arm.g_ema) and int(fresh.num_batches_tracked) == 3
    arm.eval(), fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(_x(2)), arm(_x(2)))


def test_none_mode_has_no_alpha_parameter() -> None:
    arm = ARM(affinity="none")
    assert arm.alpha is None
    assert "alpha" not in dict(arm.named_parameters())


@pytest.mark.parametrize(
    "kwargs,x,match",
    [
        ({}, torch.randn(2, 512, 49), "4-D"),
        ({}, torch.randn(2, 256, 7, 7), "in_channels=512 but got 256"),
        ({}, torch.randn(2, 512, 4, 4), "7x7 map but got 4x4"),
        ({}, torch.randn(2, 512, 7, 6), "supports only square feature maps, got a 7x6"),
        ({}, torch.randn(2, 512, 6, 7), "supports only square feature maps, got a 6x7"),
    ],
)
def test_input_errors(kwargs: dict, x: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ARM(**kwargs)(x)


def test_non_square_error_does_not_suggest_feat_size() -> None:
    # feat_size cannot make ARM accept a non-square map: the message must not send the user there
    with pytest.raises(ValueError) as err:
        ARM(512, 7)(torch.randn(1, 512, 7, 5))
    assert "feat_size" not in str(err.value)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"in_channels": 500}, r"not divisible by shuffle\*\*2=256"),
        ({"feat_size": 1}, r"kernel_size=32 is larger than the arranged map S .* = 16.*suggest_config"),
        ({"affinity": "mean"}, "unknown affinity 'mean'"),
        ({"ema_momentum": 1.0}, "ema_momentum"),
        ({"stride": 0}, "stride must be a positive integer"),
    ],
)
def test_constructor_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ARM(**kwargs)


def test_suggest_config() -> None:
    assert ARM.suggest_config(512, 7) == {"shuffle": 16, "kernel_size": 32, "stride": 8}
    assert ARM.suggest_config(512, 4) == {"shuffle": 16, "kernel_size": 32, "stride": 8}
    cfg = ARM.suggest_config(512, 2)
    assert ARM(512, 2, **cfg).out_size >= 3
    cfg = ARM.suggest_config(384, 7)  # 384 is not divisible by 256
    assert cfg["shuffle"] == 8 and ARM(384, 7, **cfg).out_features == 121
    with pytest.raises(ValueError, match="at least 2x2"):
        ARM.suggest_config(512, 1)
    with pytest.warns(UserWarning, match=r"1x1 output .*suggest_config\(512, 2\)"):
        ARM(512, 2)  # official geometry on a 2x2 map: S = 32 = kernel


@pytest.mark.parametrize("c,h", [(256, 4), (2048, 7), (512, 3)])
def test_other_channel_counts_and_map_sizes(c: int, h: int) -> None:
    cfg = ARM.suggest_config(c, h)
    arm = ARM(in_channels=c, feat_size=h, **cfg)
    out = arm(_x(3, c, h))
    assert out.shape == (3, arm.out_features) and torch.isfinite(out).all()


@pytest.mark.parametrize("affinity", ["ema", "batch"])
def test_gradient_flows_to_kernel_bn_alpha_and_input(affinity: str) -> None:
    arm = ARM(in_channels=256, feat_size=4, affinity=affinity).train()
    x = _x(4, 256, 4).requires_grad_(True)
    w = torch.randn(4, arm.out_features, generator=torch.Generator().manual_seed(9))
    (arm(x) * w).sum().backward()
    for name, p in [("kernel", arm.kernel), ("bn.weight", arm.bn.weight), ("bn.bias", arm.bn.bias), ("alpha", arm.alpha)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0
