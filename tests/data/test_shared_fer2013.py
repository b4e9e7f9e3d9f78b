"""FER2013 and FER+ loaders on the real files in ``../shared/data/fer2013`` (skipped when absent).

The expected sizes are what these loaders measure on the unmodified files; the FER2013 split sizes are the
published ones (28,709 / 3,589 / 3,589) and FER+ dropped 173 rows (empty ``Image name``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ferkit.data.fer2013 import FER2013, read_fer2013_csv
from ferkit.data.ferplus import FERPlus
from ferkit.core.labels import CANONICAL_CLASSES

pytestmark = pytest.mark.shared_data
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def fer_dir(shared_data_dir: Path) -> Path:
    path = shared_data_dir / "fer2013"
    if not (path / "fer2013.csv.gz").is_file() or not (path / "fer2013new.csv").is_file():
        pytest.skip(f"FER2013 / FER+ files not found in {path}")
    return path


def test_fer2013_real_splits_and_labels(fer_dir):
    table = read_fer2013_csv(fer_dir / "fer2013.csv.gz")  # first call parses (seconds), later ones hit the cache
    assert table.pixels.shape == (35887, 48, 48) and table.pixels.dtype == np.uint8
    assert table.pixels[0, 0, :10].tolist() == [70, 80, 82, 72, 58, 58, 60, 63, 54, 58]  # the file's first values
    sets = {s: FER2013(fer_dir / "fer2013.csv.gz", s) for s in SPLITS}
    assert [len(sets[s]) for s in SPLITS] == [28709, 3589, 3589]
    train_counts = sets["train"].class_counts()
    assert train_counts.tolist() == [3995, 436, 4097, 7215, 4830, 3172, 4964]
    assert CANONICAL_CLASSES[int(np.argmax(train_counts))] == "happy"
    assert CANONICAL_CLASSES[int(np.argmin(train_counts))] == "disgust"
    for s in ("val", "test"):
        assert (sets[s].class_counts() > 40).all()
    assert sets["test"].rows[0] == 28709 + 3589 and sets["test"].ids[0] == "fer2013.csv.gz:row=32298"


@pytest.mark.parametrize(
    "mode, num_classes, sizes",
    [
        ("majority", 8, [25060, 3199, 3153]),
        ("majority", 7, [24941, 3186, 3137]),
        ("soft", 8, [27956, 3505, 3505]),
    ],
)
def test_ferplus_real_split_sizes(fer_dir, mode, num_classes, sizes):
    sets = [FERPlus(fer_dir / "fer2013.csv.gz", fer_dir / "fer2013new.csv", s, mode, num_classes) for s in SPLITS]
    assert [len(d) for d in sets] == sizes
    assert len(sets[0]) > 24000
    assert sum(d.drop_counts.get("no_image_name", 0) for d in sets) == 173
    for d in sets:
        if mode == "soft":
            np.testing.assert_allclose(d.soft_labels.sum(axis=1), 1.0, rtol=1e-5)
            assert (d.soft_labels[np.arange(len(d)), d.labels] == d.soft_labels.max(axis=1)).all()
        else:
            assert d.soft_labels is None
        counts = d.class_counts()
        assert counts.shape == (num_classes,) and (counts > 0).all()
        # FER+ relabelling: neutral and happy are the two largest classes in every split
        assert {CANONICAL_CLASSES[i] for i in np.argsort(counts)[-2:]} == {"neutral", "happy"}


def test_real_noise_fer2013_labels_against_the_ferplus_majority(fer_dir):
    from ferkit.data import FER2013Source

    train = FER2013Source(str(fer_dir), clean_labels="ferplus").build("train")
    assert len(train) == 24941  # the training images with a 7-class FER+ majority
    agree = train.labels == train.clean_labels
    assert abs(agree.mean() - 0.68) < 0.01
    # grouped by the (noisy) FER2013 label: 93 % of "happy" images are happy by FER+, 14 % of "fear" ones are fear
    per_class = {CANONICAL_CLASSES[c]: agree[train.labels == c].mean() for c in range(7)}
    assert per_class["happy"] > 0.9 and per_class["fear"] < 0.2  # the noise is class-dependent
