"""TriRegularization against a slow per-sample reference written here in plain loops."""
from __future__ import annotations

import math

import pytest
import torch

from ferkit.losses import TriRegularization, mutual_kl, ramp_weight
from ferkit.miners import SampleSplit


def _softmax(v: list[float]) -> list[float]:
    m = max(v)
    e = [math.exp(x - m) for x in v]
    s = sum(e)
    return [x / s for x in e]


def _ce(v: list[float], y: int) -> float:
    return -math.log(_softmax(v)[y])


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))


def reference(z1, z2, z1s, z2s, y, ids, epoch, max_epochs, omega=0.6, gamma=1.0, lmax=0.9, beta=0.65, frac=0.9) -> float:
    """The Tri-Regularization equations (ASM, PRCV 2023) written sample by sample (z*s are full-batch strong logits)."""
    lam = lmax * math.exp(-beta * (1 - epoch / (frac * max_epochs)) ** 2)
    clean, amb, noisy = [], [], []
    for i in range(len(y)):
        a, b = z1[i].tolist(), z2[i].tolist()
        ce = 0.5 * (_ce(a, int(y[i])) + _ce(b, int(y[i])))
        if ids[i] in (0, -1):
            clean.append(ce)
        elif ids[i] == 1:
            pa, pb = _softmax(a), _softmax(b)
            amb.append((1 - lam) * ce + lam * 0.5 * (_kl(pb, pa) + _kl(pa, pb)))
        else:
            c = len(a)
            mse1 = sum((u - v) ** 2 for u, v in zip(_softmax(a), _softmax(z1s[i].tolist()))) / c
            mse2 = sum((u - v) ** 2 for u, v in zip(_softmax(b), _softmax(z2s[i].tolist()))) / c
            noisy.append(0.5 * (mse1 + mse2))
    mean = lambda v: sum(v) / len(v) if v else 0.0  # noqa: E731
    return mean(clean) + omega * mean(amb) + gamma * mean(noisy)


def _batch(b: int = 12, c: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = [torch.randn(b, c, generator=g, dtype=torch.float64) * 2 for _ in range(4)]
    y = torch.randint(0, c, (b,), generator=g)
    return z, y


@pytest.mark.parametrize("ids", [
    [0, 1, 2, 0, 1, 2, 2, 0, -1, 1, 0, 2],
    [0] * 12,
    [2] * 12,
    [1, 1, 2, 2, 1, 2, 1, 1, 2, 2, 1, 1],
])
def test_loss_matches_per_sample_reference(ids: list[int]) -> None:
    (z1, z2, z1s, z2s), y = _batch()
    split = SampleSplit(torch.tensor(ids))
    loss = TriRegularization()
    noisy = split.noisy
    out = loss(z1, z2, z1s[noisy], z2s[noisy], y, split, epoch=23, max_epochs=40)
    ref = reference(z1, z2, z1s, z2s, y, ids, 23, 40)
    assert float(out.total) == pytest.approx(ref, rel=1e-10, abs=1e-12)
    # full-batch strong logits give the same value
    full = loss(z1, z2, z1s, z2s, y, split, epoch=23, max_epochs=40)
    assert float(full.total) == pytest.approx(ref, rel=1e-10, abs=1e-12)
    assert out.counts == tuple(int(v) for v in [(split.clean | split.unknown).sum(), split.ambiguous.sum(), split.noisy.sum()])


def test_gradient_matches_reference_autograd() -> None:
    (z1, z2, z1s, z2s), y = _batch(seed=1)
    ids = [0, 1, 2, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    split = SampleSplit(torch.tensor(ids))
    leaves = [t.clone().requires_grad_(True) for t in (z1, z2, z1s, z2s)]
    TriRegularization()(leaves[0], leaves[1], leaves[2], leaves[3], y, split, 5, 10).total.backward()
    # finite differences of the plain-loop reference on a few coordinates
    eps = 1e-6
    for k, (i, j) in enumerate([(0, 0), (1, 3), (2, 1), (4, 4)]):
        t = [z1, z2, z1s, z2s][k]
        plus, minus = t.clone(), t.clone()
        plus[i, j] += eps
        minus[i, j] -= eps
        args = [z1, z2, z1s, z2s]
        args_p, args_m = list(args), list(args)
        args_p[k], args_m[k] = plus, minus
        num = (reference(*args_p, y, ids, 5, 10) - reference(*args_m, y, ids, 5, 10)) / (2 * eps)
        assert float(leaves[k].grad[i, j]) == pytest.approx(num, rel=1e-5, abs=1e-8)
    # the noisy term reaches the strong view and the ambiguous term reaches both networks (nothing detached)
    assert leaves[2].grad[split.noisy].abs().sum() > 0 and leaves[3].grad[split.noisy].abs().sum() > 0
    assert leaves[0].grad[split.ambiguous].abs().sum() > 0 and leaves[1].grad[split.ambiguous].abs().sum() > 0


def test_mutual_term_is_symmetric_and_zero_for_equal_logits() -> None:
    (z1, z2, _, _), _ = _batch(seed=2)
    torch.testing.assert_close(mutual_kl(z1, z2), mutual_kl(z2, z1))
    assert (mutual_kl(z1, z2) > 0).all()
    torch.testing.assert_close(mutual_kl(z1, z1), torch.zeros(z1.shape[0], dtype=z1.dtype))
    # with z1 == z2 on an all-ambiguous batch the loss is (1 - lambda) CE
    y = torch.zeros(z1.shape[0], dtype=torch.long)
    split = SampleSplit(torch.ones(z1.shape[0], dtype=torch.int8))
    out = TriRegularization(omega=1.0)(z1, z1.clone(), None, None, y, split, 11, 100)
    ce = torch.nn.functional.cross_entropy(z1, y)
    torch.testing.assert_close(out.total, (1 - out.lambda_) * ce)


def test_lambda_closed_form() -> None:
    assert ramp_weight(11, 100) == pytest.approx(0.9 * math.exp(-0.65 * (1 - 11 / 90) ** 2))
    assert ramp_weight(11, 100) == pytest.approx(0.545, abs=5e-3)
    assert ramp_weight(90, 100) == pytest.approx(0.9)
    assert ramp_weight(100, 100) == pytest.approx(0.893, abs=1e-3)  # not clamped after e_r
    assert TriRegularization(lambda_max=0.5, beta=1.0, ramp_end_frac=0.5).ramp(10, 40) == pytest.approx(0.5 * math.exp(-0.25))


def test_empty_subsets_give_finite_zero_terms() -> None:
    (z1, z2, _, _), y = _batch(seed=3)
    z1 = z1.clone().requires_grad_(True)
    out = TriRegularization()(z1, z2, None, None, y, SampleSplit.all_clean(len(y)), 12, 20)
    assert torch.isfinite(out.total) and float(out.ambiguous) == 0.0 and float(out.noisy) == 0.0
    out.total.backward()
    assert torch.isfinite(z1.grad).all()
    empty = TriRegularization()(z1[:0], z2[:0], None, None, y[:0], SampleSplit(torch.zeros(0, dtype=torch.int8)), 12, 20)
    assert float(empty.total.detach()) == 0.0 and empty.total.requires_grad


def test_missing_strong_logits_is_an_error() -> None:
    (z1, z2, _, _), y = _batch(seed=4)
    split = SampleSplit(torch.full((len(y),), 2, dtype=torch.int8))
    with pytest.raises(ValueError, match="strong-view logits"):
        TriRegularization()(z1, z2, None, None, y, split, 12, 20)
    with pytest.raises(ValueError, match="rows"):
        TriRegularization()(z1, z2, z1[:3], z2[:3], y, SampleSplit(torch.tensor([2, 2] + [0] * (len(y) - 2))), 12, 20)
