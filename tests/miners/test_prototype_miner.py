"""PrototypeMiner on class-conditional Gaussians: prototypes recovered, precision rising with tau_sim, chunking
and capping exact, errors that name the fix."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ferkit.miners import MinedSet, PrototypeMiner

C, D = 5, 32


def _gaussians(n_per_class: int, noise: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(C, D, generator=torch.Generator().manual_seed(0)), dim=1)
    labels = torch.arange(C).repeat_interleave(n_per_class)
    feats = 3.0 * centres[labels] + noise * torch.randn(len(labels), D, generator=g)
    perm = torch.randperm(len(labels), generator=g)
    return feats[perm], labels[perm], centres


def _precision(mined: MinedSet, truth: torch.Tensor) -> float:
    return float((mined.pseudo_labels == truth[mined.indices]).float().mean())


def test_fit_recovers_the_class_centres():
    feats, labels, centres = _gaussians(400, noise=0.5, seed=1)
    miner = PrototypeMiner(C).fit(feats, labels)
    cos = (miner.prototypes.float() * centres).sum(1)
    assert cos.min() > 0.99, cos
    assert miner.class_counts.tolist() == [400] * C
    # streaming fit (chunks of (features, labels)) gives the same prototypes
    again = PrototypeMiner(C).fit(zip(feats.split(97), labels.split(97)))
    torch.testing.assert_close(again.prototypes, miner.prototypes)


def test_precision_rises_with_tau_sim_and_recall_falls():
    feats, labels, _ = _gaussians(300, noise=2.0, seed=2)   # hard: overlapping classes
    pool, truth, _ = _gaussians(600, noise=2.0, seed=3)
    precisions, sizes = [], []
    for tau in (-1.0, 0.3, 0.5, 0.6):
        miner = PrototypeMiner(C, tau_sim=tau, tau_conf=0.0, margin=0.0).fit(feats, labels)
        mined = miner.mine(pool)
        precisions.append(_precision(mined, truth))
        sizes.append(len(mined))
    assert sizes[0] == len(pool) and sizes == sorted(sizes, reverse=True) and sizes[-1] > 0, sizes
    assert all(b > a for a, b in zip(precisions, precisions[1:])), precisions
    assert precisions[0] < 0.9 < precisions[-1], precisions


def test_each_rule_filters_what_it_names():
    miner = PrototypeMiner(2, tau_sim=[0.5, 0.9], tau_conf=0.8, margin=0.2)
    miner.fit(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))
    pool = torch.tensor([[1.0, 0.1],    # class 0, cos 0.995, margin 0.9 -> kept
                         [0.1, 1.0],    # class 1, cos 0.995 >= 0.9 -> kept
                         [0.6, 1.0],    # class 1, cos 0.857 < 0.9 (class 1's own threshold) -> dropped
                         [1.0, 0.8],    # class 0, margin 0.16 < 0.2 -> dropped
                         [1.0, 0.0]])   # class 0, but the classifier is unsure -> dropped by tau_conf
    probs = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.9, 0.1], [0.6, 0.4]])
    mined = miner.mine(pool, probs)
    assert mined.indices.tolist() == [0, 1] and mined.pseudo_labels.tolist() == [0, 1]
    torch.testing.assert_close(mined.confidence, torch.tensor([0.9, 0.9]))
    assert torch.isnan(miner.mine(pool).confidence).all()  # no probabilities: no confidence test
    assert miner.mine(pool).indices.tolist() == [0, 1, 4]


@pytest.mark.parametrize("cap", [None, 7])
def test_chunked_selection_equals_unchunked_exactly(cap):
    feats, labels, _ = _gaussians(200, noise=1.5, seed=4)
    pool, _, _ = _gaussians(500, noise=1.5, seed=5)
    probs = torch.softmax(torch.randn(len(pool), C, generator=torch.Generator().manual_seed(6)) * 4, dim=1)
    miner = PrototypeMiner(C, tau_sim=0.3, tau_conf=0.3, margin=0.02, max_per_class=cap).fit(feats, labels)
    whole = miner.mine(pool, probs, chunk_size=len(pool))
    assert len(whole) > 20
    pool16 = pool.half().numpy()    # an on-disk float16 pool, read as a NumPy array in chunks
    ref16 = miner.mine(pool16, probs.numpy(), chunk_size=len(pool))
    for chunk in (1, 7, 64, 333):
        got = miner.mine(pool, probs, chunk_size=chunk)
        for a, b in zip(vars(got).values(), vars(whole).values()):
            assert torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))
        got16 = miner.mine(pool16, probs.numpy(), chunk_size=chunk)
        for a, b in zip(vars(got16).values(), vars(ref16).values()):
            assert torch.equal(a, b)
    if cap is not None:
        counts = whole.per_class_counts(C)
        assert counts.max() == cap
        # the cap keeps the most similar of each class
        uncapped = PrototypeMiner(C, tau_sim=0.3, tau_conf=0.3, margin=0.02).fit(feats, labels).mine(pool, probs)
        for c in range(C):
            sims = uncapped.similarity[uncapped.pseudo_labels == c].sort(descending=True).values[:cap]
            torch.testing.assert_close(whole.similarity[whole.pseudo_labels == c].sort(descending=True).values, sims)


def test_state_dict_round_trip_and_errors():
    feats, labels, _ = _gaussians(20, noise=0.5, seed=7)
    miner = PrototypeMiner(C, tau_sim=0.4).fit(feats, labels)
    fresh = PrototypeMiner(C, tau_sim=0.4)
    fresh.load_state_dict(miner.state_dict())
    torch.testing.assert_close(fresh.prototypes, miner.prototypes)
    with pytest.raises(ValueError, match="one float or one per class"):
        PrototypeMiner(C, tau_sim=[0.5, 0.5])
    with pytest.raises(RuntimeError, match="fit the prototypes"):
        PrototypeMiner(C).mine(feats)
    with pytest.raises(ValueError, match=r"classes \[4\] have no labelled samples"):
        PrototypeMiner(C).fit(feats[labels < 4], labels[labels < 4])
    with pytest.raises(ValueError, match=r"must be \[B, 32\]"):
        miner.mine(torch.randn(3, 8))
    bad = feats.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="pool row 3"):
        miner.mine(bad)


def test_calibrated_tau_sim_keeps_that_quantile_of_each_labelled_class():
    feats, labels, _ = _gaussians(200, noise=0.8, seed=3)
    miner = PrototypeMiner(int(labels.max()) + 1, tau_sim=1.0, tau_conf=0.0, margin=0.0).fit(feats, labels)
    with pytest.raises(ValueError, match="quantile"):
        miner.calibrate_tau_sim(feats, labels, 1.5)
    taus = miner.calibrate_tau_sim(feats, labels, 0.5)
    assert torch.equal(taus, miner.tau_sim) and (taus < 1.0).all()
    own = (F.normalize(feats.double(), dim=1) @ miner.prototypes.T).gather(1, labels[:, None].long()).squeeze(1)
    for k in range(miner.num_classes):
        kept = (own[labels == k] >= taus[k]).double().mean()
        assert 0.45 <= kept <= 0.55   # the median: about half of each class's labelled samples pass
    # a stricter quantile gives higher thresholds; a class absent from the calibration samples keeps its threshold
    strict = miner.calibrate_tau_sim(feats, labels, 0.9)
    assert (strict > taus).all()
    rest = labels != 0
    again = miner.calibrate_tau_sim(feats[rest], labels[rest], 0.5)
    assert again[0] == strict[0] and torch.allclose(again[1:], taus[1:])
    with pytest.raises(RuntimeError, match="fit the prototypes first"):
        PrototypeMiner(3).calibrate_tau_sim(feats, labels, 0.5)
