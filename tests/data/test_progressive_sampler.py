"""LA-Net's progressively class-balanced sampler: per-epoch class counts, drawing rules, DDP split."""
from __future__ import annotations

import numpy as np
import pytest

from ferkit.data.progressive_sampler import ProgressivelyBalancedSampler

LABELS = np.array([0] * 12 + [1] * 6 + [2] * 2)  # N = 20, C = 3


def _epoch(sampler: ProgressivelyBalancedSampler, epoch: int) -> np.ndarray:
    sampler.set_epoch(epoch)
    return np.fromiter(iter(sampler), dtype=np.int64)


def test_first_epoch_is_the_dataset_itself() -> None:
    s = ProgressivelyBalancedSampler(LABELS, max_epochs=4, seed=0)
    idx = _epoch(s, 0)
    assert sorted(idx.tolist()) == list(range(20))  # natural distribution: every sample exactly once


def test_class_counts_by_hand() -> None:
    s = ProgressivelyBalancedSampler(LABELS, max_epochs=4, seed=0)
    # t = 2 of 4: p = 0.5 * n_k / 20 + 0.5 / 3 -> (0.4667, 0.3167, 0.2167); ceil(p * 20) = 10, 7; last = 20 - 17 = 3
    np.testing.assert_allclose(s.class_probs(2), [0.5 * 12 / 20 + 0.5 / 3, 0.5 * 6 / 20 + 0.5 / 3, 0.5 * 2 / 20 + 0.5 / 3])
    assert s.class_targets(2).tolist() == [10, 7, 3]
    idx = _epoch(s, 2)
    assert len(idx) == 20 and np.bincount(LABELS[idx], minlength=3).tolist() == [10, 7, 3]
    # class 0 undersampled without replacement; class 2 (n = 2, m = 3): one full copy plus one more
    assert len(set(idx[LABELS[idx] == 0].tolist())) == 10
    counts2 = np.bincount(idx[LABELS[idx] == 2], minlength=20)[18:]
    assert sorted(counts2.tolist()) == [1, 2]


def test_shares_move_towards_uniform() -> None:
    s = ProgressivelyBalancedSampler(LABELS, max_epochs=10, seed=0)
    share0 = [s.class_targets(t)[0] for t in range(10)]
    assert share0 == sorted(share0, reverse=True) and share0[0] == 12 and share0[-1] == 8
    # the last class takes the remainder of the ceilings (official rule): 1 at t = 1, then growing to 5
    assert [s.class_targets(t)[2] for t in (0, 1, 9)] == [2, 1, 5]
    assert all(s.class_targets(t).sum() == 20 for t in range(10))


def test_deterministic_per_epoch_and_shards_for_ddp() -> None:
    a = ProgressivelyBalancedSampler(LABELS, max_epochs=5, seed=3)
    b = ProgressivelyBalancedSampler(LABELS, max_epochs=5, seed=3)
    assert _epoch(a, 1).tolist() == _epoch(b, 1).tolist()
    assert _epoch(a, 1).tolist() != _epoch(a, 2).tolist()
    full = _epoch(ProgressivelyBalancedSampler(LABELS, max_epochs=5, seed=3), 3)
    ranks = [_epoch(ProgressivelyBalancedSampler(LABELS, max_epochs=5, seed=3, num_replicas=3, rank=r), 3) for r in range(3)]
    assert [len(r) for r in ranks] == [7, 7, 7]  # 20 padded to 21 by wrapping
    merged = np.empty(21, dtype=np.int64)
    for r, part in enumerate(ranks):
        merged[r::3] = part
    assert merged[:20].tolist() == full.tolist() and merged[20] == full[0]


def test_absent_classes_tiny_sets_and_errors() -> None:
    labels = np.array([0, 0, 2])  # class 1 absent: C counts the present classes only
    s = ProgressivelyBalancedSampler(labels, max_epochs=2, seed=0)
    t = s.class_targets(1)
    assert t[1] == 0 and t.sum() == 3
    tiny = ProgressivelyBalancedSampler(np.array([0, 1, 2, 3, 3, 3, 3]), max_epochs=2, seed=0)
    assert all(tiny.class_targets(e).sum() == 7 and (tiny.class_targets(e) >= 0).all() for e in range(2))
    with pytest.raises(ValueError, match="max_epochs"):
        ProgressivelyBalancedSampler(labels, max_epochs=0)
    with pytest.raises(ValueError, match="negative"):
        ProgressivelyBalancedSampler(np.array([0, -1]), max_epochs=2)
