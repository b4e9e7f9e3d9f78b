"""Synthetic label noise: rates, targets, nesting, dataset application and persistence."""
from __future__ import annotations

import numpy as np
import pytest

from ferkit.core.errors import DataError
from ferkit.core.labels import BASIC7, BASIC8, LabelSpace
from ferkit.data.noise import (
    DEFAULT_CLASS_MAPPING,
    apply_label_noise,
    class_dependent_noise,
    load_noisy_labels,
    save_noisy_labels,
    symmetric_noise,
)
from ferkit.data.synthetic import SyntheticFaces

N = 10_000


@pytest.fixture
def labels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 7, N)


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_symmetric_rate_and_never_the_same_class(labels, rate):
    noisy = symmetric_noise(labels, rate, 7, seed=1)
    changed = noisy != labels
    # Binomial std at N=10k is <= 0.005; a same-class draw would lower the rate by rate/7 (>= 0.014).
    assert abs(changed.mean() - rate) < 0.012
    assert noisy.dtype == np.int64 and noisy.min() >= 0 and noisy.max() <= 6
    np.testing.assert_array_equal(labels, np.random.default_rng(0).integers(0, 7, N))  # input untouched
    for c in range(7):
        assert np.bincount(noisy[changed & (labels == c)], minlength=7)[c] == 0
    # The shift to the new class is uniform over 1..6 (>= 1000 flips: std of each share ~0.012).
    shift = np.bincount((noisy - labels)[changed] % 7, minlength=7)
    assert shift[0] == 0
    assert np.abs(shift[1:] / shift.sum() - 1 / 6).max() < 0.05


def test_symmetric_is_seeded_and_nested(labels):
    a = symmetric_noise(labels, 0.2, 7, seed=3)
    np.testing.assert_array_equal(a, symmetric_noise(labels, 0.2, 7, seed=3))
    assert not np.array_equal(a, symmetric_noise(labels, 0.2, 7, seed=4))
    low, high = a != labels, symmetric_noise(labels, 0.4, 7, seed=3) != labels
    assert np.all(high[low])                       # flipped at 20 % => flipped at 40 %
    np.testing.assert_array_equal(symmetric_noise(labels, 0.0, 7, seed=3), labels)


def test_class_dependent_follows_the_default_map(labels):
    noisy = class_dependent_noise(labels, 0.3, BASIC7, seed=2)
    changed = noisy != labels
    assert abs(changed.mean() - 0.3) < 0.012       # every basic class has a target other than itself
    for c, name in enumerate(BASIC7.names):
        expected = BASIC7.index(DEFAULT_CLASS_MAPPING[name])
        assert set(np.unique(noisy[changed & (labels == c)])) == {expected}


def test_class_dependent_with_custom_map_and_aliases(labels):
    noisy = class_dependent_noise(labels, 0.5, BASIC7, mapping={"Happiness": "surprised"}, seed=0)
    changed = noisy != labels
    happy, surprise = BASIC7.index("happy"), BASIC7.index("surprise")
    assert np.all(labels[changed] == happy) and np.all(noisy[changed] == surprise)
    assert abs(changed[labels == happy].mean() - 0.5) < 0.04


def test_contempt_maps_to_disgust_only_in_eight_classes():
    y = np.full(4000, 7)
    noisy = class_dependent_noise(y, 0.25, BASIC8, seed=0)
    assert set(np.unique(noisy)) == {7, BASIC8.index("disgust")}
    space = LabelSpace(("happy", "neutral", "surprise"))     # angry is absent: surprise keeps its label
    z = np.repeat([0, 1, 2], 1000)
    out = class_dependent_noise(z, 0.5, space, seed=0)
    assert np.all(out[z == 2] == 2) and np.all(out[z == 0] != 2)


def test_mapping_and_rate_errors(labels):
    with pytest.raises(ValueError, match="contempt"):
        class_dependent_noise(labels, 0.2, BASIC7, mapping={"contempt": "angry"})
    with pytest.raises(ValueError, match="'joyful'"):
        class_dependent_noise(labels, 0.2, BASIC7, mapping={"happy": "joyful"})
    for rate in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="rate"):
            symmetric_noise(labels, rate, 7, seed=0)
    with pytest.raises(ValueError, match="outside"):
        symmetric_noise(np.array([0, 7]), 0.1, 7, seed=0)


def test_apply_label_noise_keeps_clean_labels_and_is_idempotent():
    ds = SyntheticFaces(3000, seed=1)
    original = ds.labels.copy()
    mask = apply_label_noise(ds, 0.3, seed=5)
    np.testing.assert_array_equal(ds.clean_labels, original)
    np.testing.assert_array_equal(mask, ds.labels != original)
    assert abs(mask.mean() - 0.3) < 0.03
    noisy = ds.labels.copy()
    again = apply_label_noise(ds, 0.3, seed=5)       # derived from the clean labels, not compounded
    np.testing.assert_array_equal(ds.labels, noisy)
    np.testing.assert_array_equal(again, mask)
    np.testing.assert_array_equal(ds.clean_labels, original)
    item = ds[int(np.flatnonzero(mask)[0])]
    assert item["clean_label"] != item["label"]
    apply_label_noise(ds, 0.2, mode="class_dependent", seed=5)
    changed = ds.labels != original
    for c, name in enumerate(ds.class_names):
        assert np.all(ds.labels[changed & (original == c)] == ds.label_space.index(DEFAULT_CLASS_MAPPING[name]))
    apply_label_noise(ds, 0.0)
    np.testing.assert_array_equal(ds.labels, original)


def test_apply_label_noise_rejects_bad_arguments():
    ds = SyntheticFaces(20)
    with pytest.raises(ValueError, match="mode"):
        apply_label_noise(ds, 0.2, mode="pairflip")
    with pytest.raises(ValueError, match="class_dependent"):
        apply_label_noise(ds, 0.2, mode="symmetric", mapping={"happy": "sad"})
    with pytest.raises(ValueError, match="rate"):
        apply_label_noise(ds, 1.0)
    assert ds.clean_labels is None                   # nothing touched on bad input


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_save_and_load_round_trip(tmp_path, labels, suffix):
    noisy = symmetric_noise(labels[:500], 0.3, 7, seed=0)
    meta = {"rate": 0.3, "seed": 0, "mode": "symmetric", "classes": list(BASIC7.names)}
    path = save_noisy_labels(tmp_path / f"sub/noisy_r0.3_s0{suffix}", noisy, labels[:500], meta)
    got_noisy, got_clean, got_meta = load_noisy_labels(path)
    np.testing.assert_array_equal(got_noisy, noisy)
    np.testing.assert_array_equal(got_clean, labels[:500])
    assert got_meta == meta


def test_load_reports_bad_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text('# meta: {"rate": 0.1}\nindex,clean,noisy\n0,1,2\n1,x,3\n')
    with pytest.raises(DataError, match=r"bad.csv, row 4"):
        load_noisy_labels(bad)
    with pytest.raises(ValueError, match=".json"):
        save_noisy_labels(tmp_path / "x.json", np.zeros(3, int), np.zeros(3, int), {})
    with pytest.raises(FileNotFoundError):
        load_noisy_labels(tmp_path / "missing.npz")
