"""LA-Net's label-distribution estimator and its memory: hand-checkable cases, the kNN/all-pairs equivalence,
the momentum memory, and where gradients go."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ferkit.losses.label_distribution import LabelDistributionEstimator, PairScorer, knn_adjacency
from ferkit.state.label_distribution_bank import LabelDistributionBank


def _constant_scorer(scorer: PairScorer, s: float) -> None:
    """Make s_ij = s for every pair: zero last layer, bias giving softmax()[0] = s."""
    last = scorer.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([torch.logit(torch.tensor(s)), 0.0]))


def _bank(labels: list[int], c: int = 3, m: float = 0.9) -> LabelDistributionBank:
    bank = LabelDistributionBank(0, c, momentum=m)
    bank.init_from_labels(torch.tensor(labels))
    return bank


def test_knn_adjacency_by_hand() -> None:
    h = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert knn_adjacency(h, 1).flatten().tolist() == [1, 0, 3, 2]
    assert knn_adjacency(h, 10).shape == (4, 3)  # k capped at M - 1, never itself
    assert all(i not in row for i, row in enumerate(knn_adjacency(h, 3).tolist()))


def test_aggregation_with_constant_scores_by_hand() -> None:
    # expression space: pairs (0,1), (2,3); landmark space: pairs (0,2), (1,3)
    h_e = torch.tensor([[1.0, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 0, 1.0, 0], [0, 0, 0.9, 0.1]])
    h_l = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0.9, 0.1, 0, 0], [0, 0, 0.9, 0.1]])
    lde = LabelDistributionEstimator(4, 4, k=1, eps=1e-8)
    _constant_scorer(lde.scorer_expr, 0.5)
    _constant_scorer(lde.scorer_lmk, 0.5)
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])
    q = lde.aggregate(h_e, h_l, probs)
    eps, m = 1e-8, 4
    nb_e, nb_l = [1, 0, 3, 2], [2, 3, 0, 1]
    for i in range(4):
        expect = 0.0
        for nb in (nb_e, nb_l):
            expect = expect + 0.5 * (0.5 * probs[nb[i]] + eps / m * probs.sum(0)) / (0.5 + eps)
        torch.testing.assert_close(q[i], expect)
    torch.testing.assert_close(q.sum(1), torch.ones(4))  # rows stay distributions


def test_knn_pairs_equal_all_pairs_values_and_gradients() -> None:
    torch.manual_seed(0)
    m, c = 12, 5
    h_e, h_l, logits = torch.randn(m, 16, requires_grad=True), torch.randn(m, 8, requires_grad=True), torch.randn(m, c, requires_grad=True)
    index = torch.arange(m)
    a = LabelDistributionEstimator(16, 8, k=3, pairs="knn")
    b = LabelDistributionEstimator(16, 8, k=3, pairs="all")
    b.load_state_dict(a.state_dict())
    outs, grads = [], []
    for est in (a, b):
        bank = _bank(torch.randint(0, c, (m,), generator=torch.Generator().manual_seed(1)).tolist(), c)
        out = est(h_e, h_l, logits, index, bank)
        g = torch.autograd.grad(out.total, [h_e, h_l, logits, *est.parameters()])
        outs.append((out, bank.memory.clone()))
        grads.append(g)
    torch.testing.assert_close(outs[0][0].target, outs[1][0].target)
    torch.testing.assert_close(outs[0][1], outs[1][1])
    for ga, gb in zip(*grads):
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)


def test_memory_blend_update_and_decay() -> None:
    bank = _bank([0, 2], c=3, m=0.9)
    q = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    for t in range(1, 4):
        q_t = bank.blend(torch.tensor([0, 1]), q)
        bank.update(torch.tensor([0, 1]), q_t)
        # the given label decays as 0.9^t, the rest moves to q
        torch.testing.assert_close(bank.memory[0], torch.tensor([0.9**t, 1 - 0.9**t, 0.0]))
        torch.testing.assert_close(bank.memory[1], torch.tensor([0.0, 1 - 0.9**t, 0.9**t]))


def test_duplicate_indices_store_their_mean_and_the_bank_checks_indices() -> None:
    bank = _bank([0, 1, 2], c=3)
    bank.update(torch.tensor([1, 1]), torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]))
    torch.testing.assert_close(bank.memory[1], torch.tensor([0.5, 0, 0.5]))
    with pytest.raises(IndexError, match="outside"):
        bank.read(torch.tensor([3]))
    with pytest.raises(ValueError, match="labels must lie"):
        bank.init_from_labels(torch.tensor([0, 5]))


def test_uninitialised_bank_is_refused() -> None:
    lde = LabelDistributionEstimator(4, 4, k=1)
    with pytest.raises(RuntimeError, match="init_from_labels"):
        lde(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 3), torch.arange(3), LabelDistributionBank(3, 3))


def test_forward_loss_is_kl_of_target_and_prediction() -> None:
    torch.manual_seed(1)
    lde = LabelDistributionEstimator(8, 8, k=2)
    bank = _bank([0, 1, 2, 0, 1], c=3)
    logits = torch.randn(5, 3)
    out = lde(torch.randn(5, 8), torch.randn(5, 8), logits, torch.arange(5), bank)
    expect = F.kl_div(F.log_softmax(logits, 1), out.target, reduction="batchmean")
    torch.testing.assert_close(out.total, expect)
    torch.testing.assert_close(out.target, 0.9 * F.one_hot(torch.tensor([0, 1, 2, 0, 1]), 3).float() + 0.1 * out.aggregated)
    torch.testing.assert_close(bank.memory, out.target.detach())  # training mode: written back


def test_gradients_reach_scorers_and_neighbours_unless_detached() -> None:
    torch.manual_seed(2)
    h_e, h_l = torch.randn(6, 8), torch.randn(6, 8)
    logits = torch.randn(6, 3, requires_grad=True)
    lde = LabelDistributionEstimator(8, 8, k=2)
    out = lde(h_e, h_l, logits, torch.arange(6), _bank([0, 1, 2] * 2))
    # the loss of sample 0 alone reaches the logits of its neighbours through q_tilde
    loss0 = (torch.special.xlogy(out.target[0], out.target[0]) - out.target[0] * F.log_softmax(logits[0], 0)).sum()
    g = torch.autograd.grad(loss0, logits, retain_graph=True)[0]
    assert g[1:].abs().sum() > 0
    out.total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lde.scorer_expr.mlp.parameters())
    det = LabelDistributionEstimator(8, 8, k=2, detach_target=True)
    out = det(h_e, h_l, logits, torch.arange(6), _bank([0, 1, 2] * 2))
    out.total.backward()
    assert all(p.grad is None for p in det.parameters())


def test_eval_mode_leaves_the_memory_alone_and_state_dict_round_trip() -> None:
    bank = _bank([0, 1, 2, 1])
    lde = LabelDistributionEstimator(4, 4, k=1).eval()
    before = bank.memory.clone()
    lde(torch.randn(4, 4), torch.randn(4, 4), torch.randn(4, 3), torch.arange(4), bank)
    torch.testing.assert_close(bank.memory, before)
    bank.update(torch.tensor([2]), torch.tensor([[0.2, 0.3, 0.5]]))
    fresh = LabelDistributionBank(0, 3)  # size unknown, as in load_from_checkpoint
    fresh.load_state_dict(bank.state_dict())
    torch.testing.assert_close(fresh.memory, bank.memory)
    assert bool(fresh.initialized)


def test_alignment_gives_the_estimate_the_given_labels_class_shares() -> None:
    """Every sample predicted as class 0 and neighbours that agree: unaligned, the memory moves every sample towards
    class 0; aligned, the estimate of identical rows becomes the given labels' class shares (1/3 each)."""
    labels = [0, 1, 2, 0, 1, 2]
    logits = torch.tensor([[4.0, 0.0, 0.0]]).repeat(6, 1)
    h = torch.randn(6, 4)
    plain = LabelDistributionEstimator(4, 4, k=2)
    aligned = LabelDistributionEstimator(4, 4, k=2, align="given", num_classes=3)
    aligned.load_state_dict(plain.state_dict(), strict=False)  # same scorers; the alignment buffers stay fresh
    out_plain = plain(h, h, logits, torch.arange(6), _bank(labels))
    bank = _bank(labels)
    out = aligned(h, h, logits, torch.arange(6), bank)
    assert float(out_plain.aggregated.detach()[:, 0].min()) > 0.9
    # exact up to the factor's delta (1e-4 added to the prior and to the moving average)
    torch.testing.assert_close(out.aggregated.detach(), torch.full((6, 3), 1 / 3), atol=2e-3, rtol=0)
    torch.testing.assert_close(aligned.align_prior, torch.full((3,), 1 / 3))
    assert bool(aligned.align_ready)
    torch.testing.assert_close(bank.memory.mean(0), torch.full((3,), 1 / 3), atol=2e-4, rtol=0)  # marginal kept


def test_alignment_moving_average_state_and_checkpoints() -> None:
    bank = _bank([0, 0, 0, 1], c=2)
    lde = LabelDistributionEstimator(4, 4, k=1, align="given", num_classes=2, align_momentum=0.5)
    h = torch.randn(4, 4)
    for _ in range(3):
        lde(h, h, torch.randn(4, 2), torch.arange(4), bank)
    torch.testing.assert_close(lde.align_prior, torch.tensor([0.75, 0.25]))  # read once, at the first step
    running = lde.align_running.clone()
    assert torch.isclose(running.sum(), torch.tensor(1.0))
    lde.eval()
    lde(h, h, torch.randn(4, 2), torch.arange(4), bank)
    torch.testing.assert_close(lde.align_running, running)  # evaluation leaves the average alone
    fresh = LabelDistributionEstimator(4, 4, k=1, align="given", num_classes=2)
    fresh.load_state_dict(lde.state_dict())
    torch.testing.assert_close(fresh.align_running, running)
    assert bool(fresh.align_ready)
    assert "align_running" not in LabelDistributionEstimator(4, 4).state_dict()  # LA-Net's own checkpoints unchanged
    with pytest.raises(ValueError, match="needs num_classes"):
        LabelDistributionEstimator(4, 4, align="given")
    with pytest.raises(ValueError, match="align must be"):
        LabelDistributionEstimator(4, 4, align="uniform", num_classes=2)


def test_alignment_never_zeroes_a_class_and_its_gradients_stay_finite() -> None:
    """A class missing from the given labels gets a small positive mass (an exact 0 in the target would make the
    KL's gradient NaN), and a class the estimate has lost is raised by a bounded factor."""
    bank = _bank([0, 0, 1, 1], c=3)  # class 2 never given
    lde = LabelDistributionEstimator(4, 4, k=1, align="given", num_classes=3)
    logits = torch.tensor([[0.0, -3.0, 0.0]]).repeat(4, 1).requires_grad_(True)  # class 1 under-predicted (2.4 %)
    out = lde(torch.randn(4, 4), torch.randn(4, 4), logits, torch.arange(4), bank)
    out.total.backward()
    assert bool((out.target > 0).all()) and bool(torch.isfinite(logits.grad).all())
    assert float(out.aggregated[:, 2].max()) < 1e-3  # never given: damped to almost nothing, not to 0
    torch.testing.assert_close(out.aggregated[:, 1].detach(), torch.full((4,), 0.5), atol=2e-3, rtol=0)
    lost = lde(torch.randn(4, 4), torch.randn(4, 4), torch.tensor([[0.0, -40.0, 0.0]]).repeat(4, 1), torch.arange(4),
               _bank([0, 0, 1, 1], c=3))
    assert float(lost.aggregated[:, 1].max()) < 1e-6  # a class at ~0 stays lost: the factor is at most ~5000
