"""Input checks of the state components (banks, queues) and the old import paths that still work."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ferkit.layers.landmark_contrastive_head import LandmarkContrastiveHead, make_momentum_copy, momentum_update
from ferkit.state import EMPTY_LABEL, LabelDistributionBank, MemoryBank, PerSampleBank


def test_per_sample_bank_refuses_float_indices_and_row_mismatch() -> None:
    bank = PerSampleBank(4, (2,))
    with pytest.raises(TypeError, match="integer tensor"):
        bank.read(torch.tensor([0.0, 1.0]))  # would silently truncate 1.7 to 1 otherwise
    with pytest.raises(ValueError, match="2 indices but 3 value rows"):
        bank.write(torch.tensor([0, 1]), torch.zeros(3, 2), sync=False)
    with pytest.raises(IndexError, match="outside 0..3"):
        bank.write(torch.tensor([4]), torch.zeros(1, 2), sync=False)


def test_memory_bank_refuses_nan_keys_and_float_labels() -> None:
    bank = MemoryBank(size=4, dim=2)
    before = bank.keys.clone()
    with pytest.raises(ValueError, match="MemoryBank.enqueue: keys holds 1 NaN/inf"):
        bank.enqueue(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
    with pytest.raises(TypeError, match="integer ids"):
        bank.enqueue(torch.zeros(1, 2), torch.tensor([0.5]))
    assert torch.equal(bank.keys, before) and int(bank.ptr) == 0
    assert bool((bank.labels == EMPTY_LABEL).all())


def test_label_distribution_bank_checks() -> None:
    bank = LabelDistributionBank(3, 2)
    bank.init_from_labels(torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="q_tilde holds 1 NaN"):
        bank.update(torch.tensor([0]), torch.tensor([[float("nan"), 1.0]]))
    assert torch.equal(bank.memory[0], torch.tensor([1.0, 0.0]))  # untouched
    with pytest.raises(ValueError, match=r"q must be \[B, 2\]"):
        bank.blend(torch.tensor([0]), torch.rand(1, 3))
    with pytest.raises(ValueError, match=r"row 1 is \[0.0, 0.0\]"):
        bank.init_from_labels(None, soft_labels=torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="non-negative"):
        bank.init_from_labels(None, soft_labels=torch.tensor([[1.5, -0.5]]))


def test_contrastive_head_and_momentum_checks() -> None:
    head = LandmarkContrastiveHead(expr_dim=8, lmk_dim=4, dim=3)
    with pytest.raises(ValueError, match=r"h_lmk must be \[B, 4\], got \(2, 5\)"):
        head(torch.randn(2, 8), torch.randn(2, 5))
    with pytest.raises(ValueError, match="batch sizes differ"):
        head.keys(torch.randn(2, 8), torch.randn(3, 4))
    with pytest.raises(ValueError, match="momentum must be in"):
        momentum_update(make_momentum_copy(nn.Linear(2, 2)), nn.Linear(2, 2), 1.5)
    with pytest.raises(ValueError, match="shapes differ"):
        momentum_update(nn.Linear(2, 3), nn.Linear(2, 2), 0.9)


def test_momentum_copy_restores_on_resume() -> None:
    """The key heads are plain submodules: a state-dict round trip restores them exactly."""
    head = LandmarkContrastiveHead(expr_dim=8, lmk_dim=4, dim=3)
    with torch.no_grad():
        for p in head.expr_proj.parameters():
            p.add_(1.0)
    head.momentum_update(0.5)
    fresh = LandmarkContrastiveHead(expr_dim=8, lmk_dim=4, dim=3)
    fresh.load_state_dict(head.state_dict())
    for a, b in zip(fresh.key_expr_proj.parameters(), head.key_expr_proj.parameters()):
        assert torch.equal(a, b)


def test_old_import_paths_still_work() -> None:
    from ferkit.layers.memory_bank import MemoryBank as OldBank
    from ferkit.miners.split import SampleSplit as OldSplit
    from ferkit.state.split import SampleSplit

    assert OldBank is MemoryBank and OldSplit is SampleSplit


def test_class_thresholds_refuse_confidences_that_are_not_probabilities() -> None:
    from ferkit.state import ClassThresholds

    t = ClassThresholds(2)
    with pytest.raises(ValueError, match=r"in \[0, 1\].*got values in \[-2, 3\]"):
        t.update(torch.tensor([-2.0, 3.0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        t.update(torch.tensor([0.5, float("nan")]), torch.tensor([0, 1]))
    assert int(t.num_updates) == 0 and torch.isnan(t.class_mean).all()
