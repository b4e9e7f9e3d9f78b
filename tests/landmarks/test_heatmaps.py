"""Point subsets (19 of 68) and heatmap targets, on small hand-checkable cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ferkit.landmarks.heatmaps import IBUG68, LANET19, HeatmapTargets, LandmarkSubset, get_subset
from ferkit.core.ibug68 import FLIP_PERMUTATION_68, flip_landmarks


def _random_points(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 47, size=(n, 68, 2)).astype(np.float32)


def test_lanet19_has_19_points_and_an_involutive_flip_permutation() -> None:
    assert LANET19.num_points == 19 and LANET19.num_source_points == 68
    perm = LANET19.flip_perm
    assert sorted(perm.tolist()) == list(range(19))
    np.testing.assert_array_equal(perm[perm], np.arange(19))
    names = LANET19.names
    pairs = {names[i]: names[perm[i]] for i in range(19)}
    assert pairs["right_brow_outer"] == "left_brow_outer"
    assert pairs["right_eye_centre"] == "left_eye_centre"
    assert pairs["mouth_right"] == "mouth_left"
    assert pairs["nose_tip"] == "nose_tip" and pairs["chin"] == "chin" and pairs["mouth_centre"] == "mouth_centre"


def test_flip_permutation_68_is_an_involution() -> None:
    np.testing.assert_array_equal(FLIP_PERMUTATION_68[FLIP_PERMUTATION_68], np.arange(68))


def test_subset_values_by_hand() -> None:
    pts = _random_points(1)[0]
    sub = LANET19(pts)
    np.testing.assert_allclose(sub[0], pts[17])
    np.testing.assert_allclose(sub[7], pts[36:42].mean(0), rtol=1e-5)
    np.testing.assert_allclose(sub[16], 0.5 * (pts[51] + pts[57]), rtol=1e-5)
    np.testing.assert_allclose(sub[18], pts[8])


def test_select_then_flip_equals_flip_then_select() -> None:
    pts = _random_points(4)
    a = LANET19(flip_landmarks(pts, 48))
    b = flip_landmarks(LANET19(pts), 48, perm=LANET19.flip_perm)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_subset_propagates_missing_points_only_where_used() -> None:
    pts = _random_points(1)
    pts[0, 37] = np.nan  # an upper-lid point: used only by the right-eye centre
    sub = LANET19(torch.from_numpy(pts))
    bad = ~torch.isfinite(sub).all(-1)[0]
    assert bad.nonzero().flatten().tolist() == [LANET19.names.index("right_eye_centre")]


def test_get_subset_from_indices_and_errors() -> None:
    s = get_subset([36, 45, 30])
    np.testing.assert_array_equal(s.flip_perm, [1, 0, 2])
    assert get_subset("ibug68") is IBUG68 and get_subset(None) is None
    with pytest.raises(ValueError, match="mirror"):
        get_subset([17, 30])  # brow end without its partner: not closed under the flip
    with pytest.raises(ValueError, match="unknown landmark subset"):
        get_subset("aflw21")
    with pytest.raises(ValueError, match="sum to 1"):
        LandmarkSubset("bad", np.full((1, 68), 0.5, np.float32), ("x",))


def test_heatmap_peak_gaussian_truncation_and_weights() -> None:
    t = HeatmapTargets(num_points=1, stride=4, sigma=1.5, fg_weight=10.0, fg_thresh=0.2)
    lm = torch.tensor([[[8.4, 12.0]]])  # -> centre round(2.1, 3.0) = (2, 3) in heatmap cells (x, y)
    heat, weight = t(lm, 20)
    assert heat.shape == weight.shape == (1, 1, 20, 20)
    assert heat[0, 0, 3, 2] == 1.0 and heat.max() == 1.0
    assert math.isclose(float(heat[0, 0, 3, 3]), math.exp(-1 / (2 * 1.5**2)), rel_tol=1e-6)
    assert math.isclose(float(heat[0, 0, 5, 4]), math.exp(-8 / (2 * 1.5**2)), rel_tol=1e-6)
    assert float(heat[0, 0, 3, 6]) > 0 and float(heat[0, 0, 3, 7]) == 0.0  # 4 cells inside 3 sigma = 4.5, 5 outside
    # weight 10 where the 3x3-dilated heatmap exceeds 0.2, else 1
    dil = torch.nn.functional.max_pool2d(heat, 3, 1, 1)
    assert torch.equal(weight, torch.where(dil > 0.2, 10.0, 1.0))
    assert weight[0, 0, 3, 2] == 10.0 and weight[0, 0, 15, 15] == 1.0


def test_heatmap_off_grid_and_missing_points() -> None:
    t = HeatmapTargets(num_points=2, stride=4)
    lm = torch.tensor([[[200.0, 10.0], [float("nan"), float("nan")]]])
    heat, weight = t(lm, 16)
    assert heat.abs().sum() == 0  # off-grid: all zeros, still supervised (weight 1)
    assert torch.all(weight[0, 0] == 1.0)
    assert torch.all(weight[0, 1] == 0.0)  # missing: not supervised at all


def test_heatmap_targets_apply_subset_and_check_counts() -> None:
    t = HeatmapTargets(19, stride=2, subset="lanet19")
    heat, _ = t(torch.from_numpy(_random_points(2)), (24, 24))
    assert heat.shape == (2, 19, 24, 24)
    with pytest.raises(ValueError, match="expects 19 points"):
        HeatmapTargets(19)(torch.zeros(1, 68, 2), 8)
    with pytest.raises(ValueError, match="num_points=5"):
        HeatmapTargets(5, subset="lanet19")


def test_heatmap_flip_matches_targets_of_flipped_points() -> None:
    t = HeatmapTargets(19, stride=1, sigma=1.0, subset="lanet19")
    pts = _random_points(2, seed=3)
    h, _ = t(torch.from_numpy(pts), 48)
    hf, _ = t(torch.from_numpy(flip_landmarks(pts, 48)), 48)
    torch.testing.assert_close(t.flip(h), hf, rtol=1e-5, atol=1e-5)  # stride 1: exact
