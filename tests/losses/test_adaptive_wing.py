"""Adaptive Wing loss: hand-computed values, continuity of value and slope at theta, weights and reductions."""
from __future__ import annotations

import math

import pytest
import torch

from ferkit.losses.adaptive_wing import AdaptiveWingLoss, adaptive_wing_loss

ALPHA, OMEGA, EPS, THETA = 2.1, 14.0, 1.0, 0.5


def _reference(y: float, y_hat: float) -> float:
    d, a = abs(y - y_hat), ALPHA - y
    if d < THETA:
        return OMEGA * math.log(1 + (d / EPS) ** a)
    big_a = OMEGA * a * (THETA / EPS) ** (a - 1) / (EPS * (1 + (THETA / EPS) ** a))
    big_c = THETA * big_a - OMEGA * math.log(1 + (THETA / EPS) ** a)
    return big_a * d - big_c


@pytest.mark.parametrize("y, y_hat", [(0.0, 0.3), (1.0, 0.0), (0.5, 0.45), (0.2, 1.4), (0.8, 0.8)])
def test_values_match_the_formula(y: float, y_hat: float) -> None:
    got = adaptive_wing_loss(torch.tensor([y_hat], dtype=torch.float64), torch.tensor([y], dtype=torch.float64))
    assert float(got) == pytest.approx(_reference(y, y_hat), rel=1e-10, abs=1e-12)


def test_a_background_example_by_hand() -> None:
    # y = 0, y_hat = 0.3: a = 2.1, delta < theta -> 14 ln(1 + 0.3^2.1)
    got = AdaptiveWingLoss()(torch.tensor([0.3]), torch.tensor([0.0]))
    assert float(got.total) == pytest.approx(14 * math.log(1 + 0.3**2.1), rel=1e-6)


@pytest.mark.parametrize("y", [0.0, 0.3, 0.7, 1.0])
def test_continuous_value_and_slope_at_theta(y: float) -> None:
    h = 1e-7
    pred = torch.tensor([y + THETA - h, y + THETA + h], dtype=torch.float64, requires_grad=True)
    target = torch.full((2,), y, dtype=torch.float64)
    loss = adaptive_wing_loss(pred, target, reduction="none")
    assert float(loss[0].detach()) == pytest.approx(float(loss[1].detach()), abs=1e-5)
    loss.sum().backward()
    assert float(pred.grad[0]) == pytest.approx(float(pred.grad[1]), rel=1e-4)


def test_zero_at_the_target_and_weights_and_reductions() -> None:
    torch.manual_seed(0)
    target = torch.rand(2, 3, 4, 4)
    assert float(adaptive_wing_loss(target.clone(), target)) == 0.0
    pred = target + 0.1 * torch.randn_like(target)
    per = adaptive_wing_loss(pred, target, reduction="none")
    w = torch.rand_like(target)
    torch.testing.assert_close(adaptive_wing_loss(pred, target, w), (per * w).mean())
    torch.testing.assert_close(adaptive_wing_loss(pred, target, w, reduction="sum"), (per * w).sum())
    zero_w = torch.zeros_like(target)
    assert float(adaptive_wing_loss(pred, target, zero_w)) == 0.0
    with pytest.raises(ValueError, match="differ"):
        adaptive_wing_loss(pred, target[:1])
    with pytest.raises(ValueError, match="reduction"):
        adaptive_wing_loss(pred, target, reduction="max")
    with pytest.raises(ValueError, match="alpha"):
        AdaptiveWingLoss(alpha=1.0)


def test_gradients_are_finite_everywhere() -> None:
    target = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.5])
    pred = torch.tensor([0.0, 2.0, 1.0, -1.0, 0.5], requires_grad=True)  # delta 0 and beyond theta
    adaptive_wing_loss(pred, target).backward()
    assert torch.isfinite(pred.grad).all()
