"""DistillationLoss against a plain reference; alpha=0 is exactly CE; no gradient reaches the teacher."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ferkit.losses import DistillationLoss, LossOutput


def reference(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, T: float, alpha: float) -> float:
    """Loops over samples and classes: CE + alpha * T^2 * sum_c p_t log(p_t / p_s), averaged over the batch."""
    total = 0.0
    for s, t, label in zip(student.tolist(), teacher.tolist(), y.tolist()):
        lse = math.log(sum(math.exp(v) for v in s))
        ce = lse - s[label]
        zs, zt = sum(math.exp(v / T) for v in s), sum(math.exp(v / T) for v in t)
        kl = sum((math.exp(b / T) / zt) * math.log((math.exp(b / T) / zt) / (math.exp(a / T) / zs)) for a, b in zip(s, t))
        total += ce + alpha * T * T * kl
    return total / len(y)


def test_matches_reference() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 5, generator=g) * 2, torch.randn(6, 5, generator=g) * 2
    y = torch.randint(0, 5, (6,), generator=g)
    out = DistillationLoss(T=4.0, alpha=0.5)(s, t, y)
    assert isinstance(out, LossOutput) and set(out.terms) == {"ce", "kd"}
    assert float(out.total) == pytest.approx(reference(s, t, y, 4.0, 0.5), rel=1e-5)
    assert float(out.terms["ce"]) == pytest.approx(float(F.cross_entropy(s, y)), rel=1e-6)


def test_alpha_zero_is_exactly_cross_entropy() -> None:
    g = torch.Generator().manual_seed(1)
    s = torch.randn(8, 7, generator=g, requires_grad=True)
    t = torch.randn(8, 7, generator=g)
    y = torch.randint(0, 7, (8,), generator=g)
    out = DistillationLoss(T=3.0, alpha=0.0)(s, t, y)
    ce = F.cross_entropy(s, y)
    assert torch.equal(out.total, ce)
    (g1,) = torch.autograd.grad(out.total, s)
    (g2,) = torch.autograd.grad(ce, s)
    assert torch.equal(g1, g2)
    assert torch.equal(DistillationLoss(alpha=0.0)(s, None, y).total, ce)  # no teacher needed then


def test_soft_targets_and_no_gradient_to_teacher() -> None:
    g = torch.Generator().manual_seed(2)
    teacher = torch.nn.Linear(4, 3)
    student = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4, generator=g)
    soft = torch.softmax(torch.randn(5, 3, generator=g), 1)
    out = DistillationLoss(T=2.0, alpha=1.0)(student(x), teacher(x), soft)  # the teacher's graph is passed on purpose
    out.total.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert float(out.terms["kd"]) > 0


def test_bad_input_is_named() -> None:
    loss = DistillationLoss()
    with pytest.raises(ValueError, match="T must be > 0"):
        DistillationLoss(T=0)
    with pytest.raises(ValueError, match="needs the teacher's logits"):
        loss(torch.zeros(2, 3), None, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="same label space|share the student's classes"):
        loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 3]))
