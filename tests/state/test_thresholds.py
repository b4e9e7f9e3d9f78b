"""ClassThresholds (ASM's adaptive per-class thresholds) and PerSampleBank, against hand computations."""
from __future__ import annotations

import math

import pytest
import torch

from ferkit.state.bank import PerSampleBank
from ferkit.state.thresholds import ClassThresholds, max_normalised_thresholds


def test_thresholds_match_hand_computation() -> None:
    # class 0: mean 0.9, class 1: mean 0.45, class 2: mean 0.6
    conf = torch.tensor([0.8, 1.0, 0.4, 0.5, 0.6])
    labels = torch.tensor([0, 0, 1, 1, 2])
    t = ClassThresholds(3, t_clean=0.8, t_noisy=0.2, momentum=0.0)
    t.update(conf, labels)
    tau = torch.tensor([1.0, 0.45 / 0.9, 0.6 / 0.9])
    torch.testing.assert_close(t.class_mean, torch.tensor([0.9, 0.45, 0.6]))
    torch.testing.assert_close(t.clean, 0.8 * tau)
    torch.testing.assert_close(t.noisy, 0.2 * tau)
    assert int(t.num_updates) == 1


def test_first_update_is_not_biased_by_the_ema_then_ema_applies() -> None:
    t = ClassThresholds(2, momentum=0.9)
    t.update(torch.tensor([0.5, 1.0]), torch.tensor([0, 1]))
    torch.testing.assert_close(t.class_mean, torch.tensor([0.5, 1.0]))  # first epoch: taken as is
    t.update(torch.tensor([1.0, 1.0]), torch.tensor([0, 1]))
    torch.testing.assert_close(t.class_mean, torch.tensor([0.9 * 0.5 + 0.1 * 1.0, 1.0]))
    torch.testing.assert_close(t.clean, 0.8 * t.class_mean / t.class_mean.max())


def test_unseen_class_keeps_base_thresholds_and_is_not_in_the_max() -> None:
    t = ClassThresholds(3, momentum=0.0)
    t.update(torch.tensor([0.5, 0.25]), torch.tensor([0, 2]))
    assert math.isnan(float(t.class_mean[1]))
    torch.testing.assert_close(t.clean, torch.tensor([0.8, 0.8, 0.4]))
    torch.testing.assert_close(t.noisy, torch.tensor([0.2, 0.2, 0.1]))
    # a later epoch without class 0 keeps class 0's previous mean
    t.update(torch.tensor([0.4]), torch.tensor([2]))
    torch.testing.assert_close(t.class_mean[[0, 2]], torch.tensor([0.5, 0.4]))


@pytest.mark.parametrize("norm,expected_tau", [("fixed", [1.0, 1.0]), ("none", [0.5, 0.25]), ("max", [1.0, 0.5])])
def test_norm_options(norm: str, expected_tau: list[float]) -> None:
    clean, noisy = max_normalised_thresholds(torch.tensor([0.5, 0.25]), 0.8, 0.2, norm=norm)
    torch.testing.assert_close(clean, 0.8 * torch.tensor(expected_tau))
    torch.testing.assert_close(noisy, 0.2 * torch.tensor(expected_tau))


def test_threshold_fn_replaces_the_rule() -> None:
    calls = []

    def rule(mean: torch.Tensor, t_c: float, t_n: float):
        calls.append(mean.clone())
        return torch.full_like(mean, 0.7), mean * 0.1

    t = ClassThresholds(2, momentum=0.0, threshold_fn=rule)
    t.update(torch.tensor([0.6, 0.3]), torch.tensor([0, 1]))
    torch.testing.assert_close(calls[0], torch.tensor([0.6, 0.3]))
    torch.testing.assert_close(t.clean, torch.tensor([0.7, 0.7]))
    torch.testing.assert_close(t.noisy, torch.tensor([0.06, 0.03]))

    bad = ClassThresholds(2, threshold_fn=lambda m, c, n: (m[:1], m))
    with pytest.raises(ValueError, match="2 values"):
        bad.update(torch.tensor([0.6, 0.3]), torch.tensor([0, 1]))


def test_thresholds_are_buffers_restored_by_state_dict() -> None:
    t = ClassThresholds(3)
    t.update(torch.tensor([0.9, 0.3, 0.5]), torch.tensor([0, 1, 2]))
    assert {"class_mean", "clean", "noisy", "num_updates"} <= set(t.state_dict())
    u = ClassThresholds(3)
    u.load_state_dict(t.state_dict())
    for k in ("class_mean", "clean", "noisy", "num_updates"):
        torch.testing.assert_close(getattr(u, k), getattr(t, k))


def test_threshold_argument_errors() -> None:
    with pytest.raises(ValueError, match="t_noisy <= t_clean"):
        ClassThresholds(3, t_clean=0.2, t_noisy=0.8)
    with pytest.raises(ValueError, match="norm"):
        ClassThresholds(3, norm="l2")
    with pytest.raises(ValueError, match="labels must lie"):
        ClassThresholds(2).update(torch.tensor([0.5]), torch.tensor([2]))


# -- PerSampleBank ------------------------------------------------------------------------------------------
def test_bank_write_read_and_duplicates() -> None:
    bank = PerSampleBank(5, (2,), torch.float32, float("nan"))
    bank.write(torch.tensor([3, 1, 3]), torch.tensor([[1.0, 2.0], [5.0, 5.0], [3.0, 4.0]]))
    torch.testing.assert_close(bank.read(torch.tensor([3, 1])), torch.tensor([[2.0, 3.0], [5.0, 5.0]]))  # mean of duplicates
    assert torch.isnan(bank.values[[0, 2, 4]]).all()
    ids = PerSampleBank(4, (), torch.int8, -1)
    ids.write(torch.tensor([2, 2, 0]), torch.tensor([1, 2, 0], dtype=torch.int8), reduce="last")
    assert ids.values.tolist() == [0, -1, 2, -1]
    with pytest.raises(IndexError, match="outside 0..3"):
        ids.read(torch.tensor([4]))


def test_empty_bank_takes_the_checkpoint_size() -> None:
    src = PerSampleBank(6, (), torch.int8, -1)
    src.write(torch.arange(6), torch.arange(6).to(torch.int8) % 3)
    dst = PerSampleBank(0, (), torch.int8, -1)
    dst.load_state_dict(src.state_dict())
    assert torch.equal(dst.values, src.values)
    wrong = PerSampleBank(4, (), torch.int8, -1)
    with pytest.raises(RuntimeError, match="size mismatch"):
        wrong.load_state_dict(src.state_dict())
