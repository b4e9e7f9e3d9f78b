"""``ferkit.metrics.label_memory_stats`` on hand-made memories whose answers are known, and ``rank_auroc``."""
from __future__ import annotations

import math

import pytest
import torch

from ferkit.metrics import label_memory_stats, rank_auroc

GIVEN = torch.tensor([0, 0, 1, 1, 2, 2])
CLEAN = torch.tensor([0, 1, 1, 1, 2, 0])  # samples 1 and 5 are flipped


def test_a_memory_still_at_its_one_hot_start_ranks_the_given_labels() -> None:
    s = label_memory_stats(torch.nn.functional.one_hot(GIVEN, 3).float(), GIVEN, CLEAN)
    assert (s["samples"], s["flipped"]) == (6, 2) and s["flip_rate"] == pytest.approx(2 / 6)
    assert s["flipped_ranks_given_first"] == s["correct_ranks_given_first"] == 1.0
    assert s["flipped_ranks_clean_first"] == 0.0
    assert s["memory_label_accuracy"] == s["given_label_accuracy"] == pytest.approx(4 / 6)
    assert s["flip_auroc"] == 0.5  # every label has mass 1: ties, no information


def test_a_memory_that_found_the_clean_labels() -> None:
    memory = 0.8 * torch.nn.functional.one_hot(CLEAN, 3).float() + 0.2 / 3
    s = label_memory_stats(memory, GIVEN, CLEAN)
    assert s["flipped_ranks_given_first"] == 0.0 and s["flipped_ranks_clean_first"] == 1.0
    assert s["correct_ranks_given_first"] == 1.0 and s["memory_label_accuracy"] == 1.0
    assert s["flip_auroc"] == 1.0
    assert s["flipped_mass_on_clean"] == pytest.approx(0.8 + 0.2 / 3)
    assert s["memory_max_mass"] == pytest.approx(0.8 + 0.2 / 3)


def test_samples_without_a_known_clean_label_are_left_out() -> None:
    clean = CLEAN.clone()
    clean[1] = -1  # one of the two flipped samples has no known truth
    s = label_memory_stats(torch.nn.functional.one_hot(GIVEN, 3).float(), GIVEN, clean)
    assert (s["samples"], s["flipped"]) == (5, 1)
    assert s["given_label_accuracy"] == pytest.approx(4 / 5)


def test_empty_groups_give_none_and_bad_input_is_refused() -> None:
    s = label_memory_stats(torch.eye(3), torch.arange(3), torch.arange(3))
    assert s["flipped"] == 0 and s["flipped_ranks_given_first"] is None and math.isnan(s["flip_auroc"])
    with pytest.raises(ValueError, match="N x C"):
        label_memory_stats(torch.eye(3), torch.arange(4), torch.arange(4))
    with pytest.raises(ValueError, match="non-finite"):
        label_memory_stats(torch.full((3, 3), float("nan")), torch.arange(3), torch.arange(3))


def test_rank_auroc_counts_ties_as_one_half() -> None:
    assert rank_auroc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert rank_auroc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert rank_auroc([1.0, 2.0], [1.0, 0.0]) == pytest.approx(3.5 / 4)  # one tie among four pairs
    assert math.isnan(rank_auroc([], [1.0]))
