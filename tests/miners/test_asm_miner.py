"""ASMMiner and SampleSplit on hand-made probabilities."""
from __future__ import annotations

import pytest
import torch

from ferkit.miners import ASMMiner, BaseMiner, MANMiner, SampleSplit, Subset, detection_scores, \
    detection_scores_per_class


def _probs(rows: list[list[float]]) -> torch.Tensor:
    """[M, C] probabilities used for both networks -> [M, 2, C]."""
    p = torch.tensor(rows)
    return torch.stack([p, p], dim=1)


def test_asm_rule_on_hand_made_probabilities() -> None:
    # two classes; class-0 samples are confident, class-1 samples less so
    probs = _probs([
        [0.95, 0.05],  # 0: y=0, s=0.95
        [0.85, 0.15],  # 1: y=0, s=0.85
        [0.10, 0.90],  # 2: y=0, s=0.10 -> noisy
        [0.30, 0.70],  # 3: y=1, s=0.70
        [0.60, 0.40],  # 4: y=1, s=0.40
        [0.95, 0.05],  # 5: y=1, s=0.05 -> noisy
    ])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    miner = ASMMiner(num_classes=2, num_samples=6, momentum=0.0)
    miner.accumulate(torch.arange(6), probs, labels)
    split = miner.mine(epoch=3)
    mean0, mean1 = (0.95 + 0.85 + 0.10) / 3, (0.70 + 0.40 + 0.05) / 3
    tau1 = mean1 / mean0
    torch.testing.assert_close(miner.thresholds.clean, torch.tensor([0.8, 0.8 * tau1]))
    torch.testing.assert_close(miner.thresholds.noisy, torch.tensor([0.2, 0.2 * tau1]))
    # by hand: T_c = [0.8, 0.484], T_n = [0.2, 0.121]
    assert split.subset_id.tolist() == [0, 0, 2, 0, 1, 2]
    torch.testing.assert_close(miner.confidence.values, torch.tensor([0.95, 0.85, 0.10, 0.70, 0.40, 0.05]))
    assert int(miner.mined_epoch) == 3
    assert miner.split_for(torch.tensor([5, 0, 4])).subset_id.tolist() == [2, 0, 1]


def test_two_networks_are_averaged_and_man_rule() -> None:
    p1 = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8]])
    p2 = torch.tensor([[0.7, 0.3], [0.3, 0.7], [0.4, 0.6]])
    probs = torch.stack([p1, p2], 1)
    labels = torch.tensor([0, 0, 0])
    asm = ASMMiner(2, 3, momentum=0.0)
    asm.accumulate(torch.arange(3), probs, labels)
    asm.mine()
    torch.testing.assert_close(asm.confidence.values, torch.tensor([0.8, 0.6, 0.3]))
    man = MANMiner(2, 3)
    man.accumulate(torch.arange(3), probs, labels)
    assert man.mine().subset_id.tolist() == [0, 1, 2]  # both right / one right / none right
    # the thresholds do not decide MAN's split, but they are still updated (and logged)
    assert int(man.thresholds.num_updates) == 1
    # the same probabilities under ASM's rule give another split: the rule is the only difference
    assert asm.split.subset_id.tolist() != man.split.subset_id.tolist()


def test_forward_judges_without_touching_state() -> None:
    miner = ASMMiner(2, 3, momentum=0.0)
    before = {k: v.clone() for k, v in miner.state_dict().items()}
    split = miner(_probs([[0.9, 0.1], [0.5, 0.5], [0.05, 0.95]]), torch.tensor([0, 0, 0]))
    assert isinstance(split, SampleSplit)
    assert split.subset_id.tolist() == [Subset.CLEAN, Subset.AMBIGUOUS, Subset.NOISY]  # base thresholds 0.8 / 0.2
    after = miner.state_dict()
    assert all(torch.equal(before[k], after[k]) or (before[k].isnan().all() and after[k].isnan().all()) for k in before)


def test_reset_observations_clears_only_the_accumulator() -> None:
    miner = ASMMiner(2, 2, momentum=0.0)
    miner.accumulate(torch.arange(2), _probs([[0.9, 0.1], [0.1, 0.9]]), torch.tensor([0, 0]))
    miner.mine()
    subset = miner.subset.values.clone()
    miner.accumulate(torch.arange(2), _probs([[0.1, 0.9], [0.9, 0.1]]), torch.tensor([0, 0]))
    assert int(miner.acc_count.values.sum()) == 2
    miner.reset_observations()
    assert int(miner.acc_count.values.sum()) == 0 and float(miner.acc_sum.values.abs().sum()) == 0.0
    assert torch.equal(miner.subset.values, subset)  # the split and probabilities are kept
    miner.mine()  # nothing observed since the reset: the previous probabilities decide again
    assert torch.equal(miner.subset.values, subset)


def test_subset_ids_are_a_named_enum() -> None:
    assert [int(s) for s in Subset] == [-1, 0, 1, 2]
    split = SampleSplit(torch.tensor([Subset.NOISY, Subset.CLEAN], dtype=torch.int8))
    assert split.noisy.tolist() == [True, False]


def test_a_new_miner_must_implement_assign() -> None:
    class NoRule(BaseMiner):
        pass

    with pytest.raises(TypeError, match="assign"):
        NoRule(2, 3)

    class AllNoisy(BaseMiner):
        def assign(self, probs, labels, confidence=None):
            return torch.full((labels.numel(),), int(Subset.NOISY), dtype=torch.int8)

    m = AllNoisy(2, 2)
    m.accumulate(torch.arange(2), _probs([[0.5, 0.5], [0.5, 0.5]]), torch.tensor([0, 1]))
    assert m.mine().noisy.all()


def test_deprecated_rule_argument() -> None:
    with pytest.warns(DeprecationWarning, match="MANMiner"):
        ASMMiner(2, 3, rule="asm")
    with pytest.raises(ValueError, match="MANMiner"):
        ASMMiner(2, 3, rule="man")


def test_unobserved_samples_are_unknown_and_duplicates_are_averaged() -> None:
    miner = ASMMiner(2, 5, momentum=0.0)
    idx = torch.tensor([0, 1, 1, 3])
    probs = _probs([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
    miner.accumulate(idx, probs, torch.tensor([0, 0, 0, 1]))
    split = miner.mine()
    assert split.unknown.tolist() == [False, False, True, False, True]
    torch.testing.assert_close(miner.probs.values[1, 0], torch.tensor([0.4, 0.6]))  # mean of the two views of sample 1
    # a later epoch that observes only sample 2 keeps the others' probabilities
    miner.accumulate(torch.tensor([2]), _probs([[0.5, 0.5]]), torch.tensor([1]))
    split = miner.mine()
    assert split.unknown.tolist() == [False, False, False, False, True]
    torch.testing.assert_close(miner.probs.values[0, 0], torch.tensor([0.9, 0.1]))


def test_result_does_not_depend_on_observation_order_or_batching() -> None:
    g = torch.Generator().manual_seed(0)
    n, c = 50, 4
    probs = torch.softmax(torch.randn(n, 2, c, generator=g) * 2, dim=2)
    labels = torch.randint(0, c, (n,), generator=g)
    a = ASMMiner(c, n)
    a.accumulate(torch.arange(n), probs, labels)
    sa = a.mine()
    b = ASMMiner(c, n)
    perm = torch.randperm(n, generator=g)
    for chunk in perm.split(7):
        b.accumulate(chunk, probs[chunk], labels[chunk])
    b.accumulate(perm[:3], probs[perm[:3]], labels[perm[:3]])  # padding duplicates
    sb = b.mine()
    assert torch.equal(sa.subset_id, sb.subset_id)
    torch.testing.assert_close(a.thresholds.clean, b.thresholds.clean)
    assert (sa.counts() > 0).sum() >= 2  # a real split: the equalities above are not about one subset


def test_miner_state_dict_roundtrip_and_empty_miner_loads_size() -> None:
    miner = ASMMiner(3, 8)
    miner.accumulate(torch.arange(8), torch.softmax(torch.randn(8, 2, 3), 2), torch.arange(8) % 3)
    miner.mine(epoch=2)
    fresh = ASMMiner(3, 0)
    fresh.load_state_dict(miner.state_dict())
    assert torch.equal(fresh.subset.values, miner.subset.values)
    assert int(fresh.mined_epoch) == 2
    torch.testing.assert_close(fresh.thresholds.noisy, miner.thresholds.noisy)


def _soft(*shape: int) -> torch.Tensor:
    return torch.softmax(torch.randn(*shape), dim=-1)


def test_miner_errors() -> None:
    with pytest.raises(ValueError, match="rule"):
        ASMMiner(3, 4, rule="other")
    m = ASMMiner(3, 4)
    with pytest.raises(ValueError, match=r"\[B, 2, 3\]"):
        m.accumulate(torch.arange(2), _soft(2, 3, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(IndexError, match="outside 0..3"):
        m.accumulate(torch.tensor([4]), _soft(1, 2, 3), torch.zeros(1, dtype=torch.long))
    with pytest.raises(RuntimeError, match="resize"):
        ASMMiner(3, 0).accumulate(torch.tensor([0]), _soft(1, 2, 3), torch.zeros(1, dtype=torch.long))


@pytest.mark.parametrize("bad,match", [
    (torch.randn(6, 2, 3) * 5, "softmax probabilities.*not the logits"),            # logits
    (torch.full((6, 2, 3), 0.5), r"row sums off by up to 0\.5"),                   # in [0, 1] but not summing to 1
    (torch.tensor([[1.2, -0.1, -0.1]]).expand(6, 2, 3), r"values in \[-0\.1, 1\.2\]"),  # sums to 1, out of range
])
def test_accumulate_refuses_what_is_not_a_probability(bad: torch.Tensor, match: str) -> None:
    m = ASMMiner(3, 6)
    with pytest.raises(ValueError, match=match):
        m.accumulate(torch.arange(6), bad, torch.zeros(6, dtype=torch.long))
    assert int(m.acc_count.values.sum()) == 0  # nothing was stored


def test_accumulate_input_checks() -> None:
    m = ASMMiner(3, 6)
    p = _soft(2, 2, 3)
    with pytest.raises(ValueError, match="NaN"):
        m.accumulate(torch.arange(2), torch.full((2, 2, 3), float("nan")), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must lie in 0..2, got 0..3"):
        m.accumulate(torch.arange(2), p, torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="integer class ids"):
        m.accumulate(torch.arange(2), p, torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="integer tensor"):
        m.accumulate(torch.tensor([0.0, 1.0]), p, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="3 indices for 2 labels"):
        m.accumulate(torch.arange(3), p, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="1 labels for 2 probability rows"):
        m.accumulate(torch.arange(2), p, torch.tensor([0]))
    with pytest.raises(ValueError, match="softmax"):
        m(torch.randn(2, 2, 3) * 5, torch.tensor([0, 1]))  # forward checks too
    # a softmax computed in half precision (rows off by a few 1e-3), as such or cast to float, is accepted
    half = torch.softmax(torch.randn(2, 2, 3).to(torch.bfloat16) * 3, dim=-1)
    m.accumulate(torch.arange(2), half, torch.tensor([0, 1]))
    m.accumulate(torch.arange(2), half.float(), torch.tensor([0, 1]))


# -- SampleSplit -------------------------------------------------------------------------------------------
def test_sample_split_views() -> None:
    split = SampleSplit(torch.tensor([0, 2, 1, -1, 2, 0]))
    idx = split.to_indices()
    assert idx.clean.tolist() == [0, 5] and idx.ambiguous.tolist() == [2] and idx.noisy.tolist() == [1, 4]
    assert split.counts().tolist() == [2, 1, 2]
    assert split.to_weights().tolist() == [1.0, 0.0, 0.5, 1.0, 0.0, 1.0]
    assert split.to_weights({"noisy": 0.25, "unknown": 0.0}).tolist() == [1.0, 0.25, 0.5, 0.0, 0.25, 1.0]
    assert split[torch.tensor([4, 0])].subset_id.tolist() == [2, 0]
    assert split.counts_per_class(torch.tensor([0, 0, 1, 1, 1, 1]), 2).tolist() == [[1, 1], [0, 1], [1, 1]]
    rebuilt = SampleSplit.from_masks(split.clean, split.ambiguous, split.noisy)
    assert torch.equal(rebuilt.subset_id, split.subset_id)
    with pytest.raises(ValueError, match="overlap"):
        SampleSplit.from_masks(torch.tensor([True]), torch.tensor([True]), torch.tensor([False]))
    with pytest.raises(ValueError, match="-1..2"):
        SampleSplit(torch.tensor([3]))


def test_detection_scores() -> None:
    split = SampleSplit(torch.tensor([2, 2, 1, 0, 0, -1]))
    flipped = torch.tensor([True, False, True, False, True, True])
    s = detection_scores(split, flipped)
    assert s["noisy_precision"] == pytest.approx(0.5)
    assert s["noisy_recall"] == pytest.approx(1 / 3)  # the unknown sample is ignored
    assert s["suspect_recall"] == pytest.approx(2 / 3)
    assert s["clean_purity"] == pytest.approx(0.5)
    # restricted to given classes: the two classes' counts add up to the whole
    labels = torch.tensor([0, 0, 1, 1, 0, 1])
    per = detection_scores_per_class(split, flipped, labels, ["a", "b"])
    assert per["a"]["noisy_precision"] == pytest.approx(0.5)   # samples 0, 1 noisy; 0 flipped
    assert per["a"]["noisy_recall"] == pytest.approx(1 / 2)    # flipped in "a": 0 and 4
    assert per["a"]["clean_purity"] == pytest.approx(0.0)      # clean in "a": 4, flipped
    assert per["b"]["noisy_recall"] == pytest.approx(0.0)      # flipped in "b": 2 (ambiguous); 5 is unknown
    assert per["b"]["clean_purity"] == pytest.approx(1.0) and per["b"]["flip_rate"] == pytest.approx(0.5)
    assert per["b"]["noisy_precision"] != per["b"]["noisy_precision"]   # nothing noisy in "b": NaN
    assert s == detection_scores(split, flipped, within=torch.ones(6, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        detection_scores(split, flipped, within=torch.ones(5, dtype=torch.bool))


def _toy_run(asm: bool, x, y_noisy, x_test, y_test, epochs: int = 20, warmup: int = 5):
    """Two MLPs on a separable Gaussian mixture: plain CE, or ASM (miner + Tri-Regularization) after warm-up."""
    import torch.nn.functional as F
    from torch import nn

    from ferkit.losses import TriRegularization

    n, c = len(x), int(y_noisy.max()) + 1
    torch.manual_seed(1)
    f1, f2 = (nn.Sequential(nn.Linear(x.shape[1], 128), nn.ReLU(), nn.Linear(128, c)) for _ in range(2))
    opt = torch.optim.Adam([*f1.parameters(), *f2.parameters()], 1e-3)
    miner, tri = ASMMiner(c, n), TriRegularization()
    g = torch.Generator().manual_seed(2)
    for epoch in range(1, epochs + 1):
        if asm and epoch > warmup:
            with torch.no_grad():
                miner.accumulate(torch.arange(n), torch.stack([f1(x).softmax(1), f2(x).softmax(1)], 1), y_noisy)
            miner.mine(epoch)
        for idx in torch.randperm(n, generator=g).split(64):
            xb, yb = x[idx], y_noisy[idx]
            xw, xs = xb + 0.1 * torch.randn(xb.shape, generator=g), xb + 0.5 * torch.randn(xb.shape, generator=g)
            z1, z2 = f1(xw), f2(xw)
            if asm and epoch > warmup:
                s = miner.split_for(idx)
                loss = tri(z1, z2, f1(xs[s.noisy]), f2(xs[s.noisy]), yb, s, epoch, epochs).total
            else:
                loss = 0.5 * (F.cross_entropy(z1, yb) + F.cross_entropy(z2, yb))
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = float(((f1(x_test) + f2(x_test)).argmax(1) == y_test).float().mean())
    return acc, miner


def test_miner_and_loss_recover_flipped_labels_on_separable_data() -> None:
    """When the warm-up leaves the networks confident, the noisy subset is (almost) exactly the flipped labels and
    ASM beats CE on clean test labels (30 % symmetric noise)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        c, d, n = 6, 20, 1500
        centres = torch.randn(c, d, generator=g) * 1.2
        y, y_test = torch.randint(0, c, (n,), generator=g), torch.randint(0, c, (2000,), generator=g)
        x, x_test = centres[y] + torch.randn(n, d, generator=g), centres[y_test] + torch.randn(2000, d, generator=g)
        flipped = torch.rand(n, generator=g) < 0.3
        y_noisy = torch.where(flipped, (y + torch.randint(1, c, (n,), generator=g)) % c, y)
        acc_ce, _ = _toy_run(False, x, y_noisy, x_test, y_test)
        acc_asm, miner = _toy_run(True, x, y_noisy, x_test, y_test)
    finally:
        torch.set_num_threads(old)
    s = detection_scores(miner.split, flipped)
    assert s["noisy_precision"] > 0.9 and s["noisy_recall"] > 0.9, s
    assert s["clean_purity"] > 0.95, s
    assert acc_asm > acc_ce, (acc_asm, acc_ce)
