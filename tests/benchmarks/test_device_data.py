"""benchmarks.device_data: the packed FER+ rows unpack into files that give identical FER+ datasets."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import device_data  # noqa: E402
from ferkit.data.ferplus import FERPlus  # noqa: E402

USAGES = ["Training", "Training", "Training", "PublicTest", "PublicTest", "PrivateTest", "Training"]
# neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
VOTES = [
    [8, 1, 1, 0, 0, 0, 0, 0, 0, 0],  # neutral
    [0, 9, 1, 0, 0, 0, 0, 0, 0, 0],  # happy
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face: FER+ drops it, so its pixels are not packed
    [0, 0, 7, 3, 0, 0, 0, 0, 0, 0],  # surprise
    [0, 0, 0, 0, 6, 4, 0, 0, 0, 0],  # anger
    [0, 0, 0, 6, 0, 0, 4, 0, 0, 0],  # sadness
    [0, 0, 0, 0, 0, 0, 0, 9, 1, 0],  # contempt (8 classes only)
]


@pytest.fixture
def root(fake_ferplus) -> Path:
    return fake_ferplus(USAGES, VOTES)


def test_pack_keeps_only_ferplus_rows_and_unpacks_identical_datasets(root: Path, tmp_path: Path) -> None:
    packed = tmp_path / "packed"
    device_data.pack(root, packed)  # checks every split / mode / class count itself, and raises if any differs
    assert device_data.used_rows(root).tolist() == [0, 1, 3, 4, 5, 6]
    out = device_data.unpack(packed, tmp_path / "unpacked")
    lines = (out / "fer2013.csv").read_text().splitlines()
    assert len(lines) == 1 + len(USAGES)
    assert lines[3].split(",")[1] == " ".join(["0"] * 2304)  # the dropped row is left black
    for split in ("train", "val", "test"):
        a = FERPlus(root / "fer2013.csv", root / "fer2013new.csv", split=split)
        b = FERPlus(out / "fer2013.csv", out / "fer2013new.csv", split=split)
        assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels) and len(a) > 0


def test_pack_refuses_a_folder_without_the_files(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="fer2013new.csv"):
        device_data.pack(tmp_path, tmp_path / "out")


def test_pack_of_one_label_mode_keeps_only_its_rows(root: Path, tmp_path: Path) -> None:
    # 7 classes drop the contempt row, which 8 classes keep
    assert device_data.used_rows(root, ("majority",), (7,)).tolist() == [0, 1, 3, 4, 5]
    packed = tmp_path / "packed"
    device_data.pack(root, packed, ("majority",), (7,))  # checks the majority / 7-class datasets identical
    out = device_data.unpack(packed, tmp_path / "unpacked")
    lines = (out / "fer2013.csv").read_text().splitlines()
    assert lines[7].split(",")[1] == " ".join(["0"] * 2304)  # the contempt row was not packed
    a = FERPlus(root / "fer2013.csv", root / "fer2013new.csv", split="train", label_mode="majority", num_classes=7)
    b = FERPlus(out / "fer2013.csv", out / "fer2013new.csv", split="train", label_mode="majority", num_classes=7)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels) and len(a) == 2
