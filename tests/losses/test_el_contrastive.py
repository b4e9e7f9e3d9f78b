"""Expression-landmark contrastive loss, its queues and heads, against a plain-loop reference."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ferkit.layers.landmark_contrastive_head import LandmarkContrastiveHead, momentum_update
from ferkit.state.memory_bank import EMPTY_LABEL, MemoryBank
from ferkit.losses.expression_landmark_contrastive import (
    ExpressionLandmarkContrastiveLoss,
    confidence_pseudo_labels,
    supervised_queue_contrast,
)


def _reference(q, k, queue, y, y_k, y_q, t) -> float:
    """Plain loops over anchors, positives and queue entries (LA-Net, ICCV 2023)."""
    total = 0.0
    for i in range(q.shape[0]):
        pos = [j for j in range(k.shape[0]) if y_k[j] == y[i]]
        neg = sum(math.exp(float(q[i] @ queue[n]) / t) for n in range(queue.shape[0]) if y_q[n] != y[i])
        acc = 0.0
        for j in pos:
            e = math.exp(float(q[i] @ k[j]) / t)
            acc += -math.log(e / (e + neg))
        total += acc / len(pos)
    return total / q.shape[0]


def _unit(*shape, seed=0) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1)


def test_pseudo_labels_are_gated_and_never_collide_with_classes() -> None:
    target = torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.75, 0.25]])
    labels = confidence_pseudo_labels(target, torch.tensor([0, 5, 9]), 0.7)
    assert labels.tolist() == [1, -6, 0]
    low = confidence_pseudo_labels(torch.tensor([[0.5, 0.5]]), torch.tensor([0]), 0.7)
    assert low.item() == -1  # sample 0 is not class 0 (the official -index bug)


def test_one_direction_matches_the_loop_reference() -> None:
    q, k, queue = _unit(5, 4, seed=1), _unit(5, 4, seed=2), _unit(7, 4, seed=3)
    y = torch.tensor([0, 1, 0, -4, 2])
    y_q = torch.tensor([0, 1, 1, 2, EMPTY_LABEL, EMPTY_LABEL, -4])
    got = supervised_queue_contrast(q, k, queue, y, y, y_q, 0.1)
    assert float(got) == pytest.approx(_reference(q, k, queue, y, y, y_q, 0.1), rel=1e-9)


def test_anchor_without_negatives_and_without_positives() -> None:
    q = _unit(2, 3)
    queue = _unit(3, 3, seed=4)
    y = torch.tensor([1, 1])
    got = supervised_queue_contrast(q, q, queue, y, y, torch.ones(3, dtype=torch.long), 0.5)
    assert float(got) == pytest.approx(_reference(q, q, queue, y, y, torch.ones(3), 0.5), rel=1e-9)  # log(e/e) terms
    with pytest.raises(ValueError, match="no positive"):
        supervised_queue_contrast(q, q, queue, y, torch.tensor([2, 2]), torch.ones(3, dtype=torch.long), 0.5)


def test_full_loss_both_directions_then_enqueue() -> None:
    crit = ExpressionLandmarkContrastiveLoss(dim=4, queue_size=6, temperature=0.2, conf_thresh=0.7).double()
    q_e, q_l, k_e, k_l = _unit(3, 4, seed=5), _unit(3, 4, seed=6), _unit(3, 4, seed=7), _unit(3, 4, seed=8)
    target = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], dtype=torch.float64)
    index = torch.tensor([0, 1, 2])
    y = torch.tensor([0, 1, -3])
    queue_e, queue_l, y_q = crit.queue.keys[0].clone(), crit.queue.keys[1].clone(), crit.queue.labels.clone()
    loss = crit(q_e, q_l, k_e, k_l, target=target, index=index)
    ref = _reference(q_e, k_l, queue_l, y, y, y_q, 0.2) + _reference(q_l, k_e, queue_e, y, y, y_q, 0.2)
    assert float(loss.total) == pytest.approx(ref, rel=1e-9)
    # after the loss, the keys and labels are in the queue (FIFO)
    torch.testing.assert_close(crit.queue.keys[0, :3], k_e)
    torch.testing.assert_close(crit.queue.keys[1, :3], k_l)
    assert crit.queue.labels[:3].tolist() == [0, 1, -3] and int(crit.queue.ptr) == 3
    # eval mode: no enqueue
    crit.eval()
    crit(q_e, q_l, k_e, k_l, labels=y)
    assert int(crit.queue.ptr) == 3


def test_gradient_reaches_queries_only() -> None:
    crit = ExpressionLandmarkContrastiveLoss(dim=4, queue_size=8)
    q_e = _unit(4, 4, seed=9).float().requires_grad_(True)
    q_l = _unit(4, 4, seed=10).float().requires_grad_(True)
    k_e = _unit(4, 4, seed=11).float().requires_grad_(True)
    loss = crit(q_e, q_l, k_e, _unit(4, 4, seed=12).float(), labels=torch.tensor([0, 0, 1, 1]))
    loss.total.backward()
    assert q_e.grad.abs().sum() > 0 and q_l.grad.abs().sum() > 0 and k_e.grad is None


def test_memory_bank_wraps_around_and_is_state() -> None:
    bank = MemoryBank(size=4, dim=2, num_queues=1, seed=0)
    assert torch.allclose(bank.keys.norm(dim=-1), torch.ones(1, 4)) and (bank.labels == EMPTY_LABEL).all()
    bank.enqueue(torch.ones(3, 2), torch.tensor([1, 2, 3]))
    bank.enqueue(2 * torch.ones(3, 2), torch.tensor([4, 5, 6]))
    assert bank.labels.tolist() == [5, 6, 3, 4] and int(bank.ptr) == 2
    bank.enqueue(torch.arange(12.0).reshape(6, 2), torch.arange(6))  # longer than the queue: the last 4 rows
    assert sorted(bank.labels.tolist()) == [2, 3, 4, 5]
    assert set(bank.state_dict()) == {"keys", "labels", "ptr"}
    with pytest.raises(ValueError, match="keys must be"):
        bank.enqueue(torch.ones(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        bank.enqueue(torch.ones(2, 2), torch.tensor([0]))


def test_head_normalises_and_momentum_update() -> None:
    torch.manual_seed(0)
    head = LandmarkContrastiveHead(expr_dim=10, lmk_dim=6, dim=4, momentum=0.5)
    q_e, q_l = head(torch.randn(3, 10), torch.randn(3, 6))
    torch.testing.assert_close(q_e.norm(dim=1), torch.ones(3))
    assert all(not p.requires_grad for p in head.key_expr_proj.parameters())
    k_e, _ = head.keys(torch.randn(3, 10), torch.randn(3, 6))
    assert not k_e.requires_grad
    with torch.no_grad():
        for p in head.expr_proj.parameters():
            p.add_(1.0)
    before = [p.clone() for p in head.key_expr_proj.parameters()]
    head.momentum_update()
    for b, k, q in zip(before, head.key_expr_proj.parameters(), head.expr_proj.parameters()):
        torch.testing.assert_close(k, 0.5 * b + 0.5 * q)


def test_momentum_update_copies_buffers() -> None:
    src, dst = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    src.train()(torch.randn(8, 3) + 5)
    momentum_update(dst, src, 0.999)
    torch.testing.assert_close(dst.running_mean, src.running_mean)
    with pytest.raises(ValueError, match="different parameters"):
        momentum_update(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2, bias=False), 0.9)
