"""Dataset loaders on tiny fake files written in each dataset's real on-disk layout."""
from __future__ import annotations

import gzip
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ferkit.data import fer2013 as fer2013_module
from ferkit.data import ferplus as ferplus_module
from ferkit.data.affectnet import AffectNet
from ferkit.core.errors import DataError
from ferkit.data.fer2013 import FER2013, read_fer2013_csv
from ferkit.data.ferplus import FERPlus, ferplus_vote_target
from ferkit.data.folder import ImageFolderFER
from ferkit.data.io import cache_dir, read_image
from ferkit.core.labels import CANONICAL_CLASSES
from ferkit.data.rafdb import RAFDB

CID = {name: i for i, name in enumerate(CANONICAL_CLASSES)}  # canonical ids by name


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Each test gets its own parse cache, and no in-process memo leaks between tests."""
    monkeypatch.setenv("FERKIT_CACHE", str(tmp_path / "cache"))
    fer2013_module._MEMO.clear()
    ferplus_module._MEMO.clear()
    yield
    fer2013_module._MEMO.clear()
    ferplus_module._MEMO.clear()


# --------------------------------------------------------------------------------------------------------
# FER2013 / FER+ fakes: 6 rows, row r has emotion r and pixels (r * 40 + i) % 256
# --------------------------------------------------------------------------------------------------------
USAGES = ["Training", "Training", "Training", "PublicTest", "PublicTest", "PrivateTest"]


def row_pixels(r: int) -> np.ndarray:
    return ((r * 40 + np.arange(2304)) % 256).astype(np.uint8)


def fer_text(rows=None, header="emotion,pixels,Usage") -> str:
    if rows is None:
        rows = [(r, " ".join(map(str, row_pixels(r))), USAGES[r]) for r in range(6)]
    return header + "\n" + "".join(f"{e},{p},{u}\n" for e, p, u in rows)


@pytest.fixture
def fer_csv(tmp_path) -> Path:
    path = tmp_path / "data" / "fer2013.csv"
    path.parent.mkdir()
    path.write_text(fer_text())
    return path


# neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
FERPLUS_VOTES = [
    [5, 1, 1, 1, 1, 1, 0, 0, 0, 0],  # r0: five single-vote outliers; without removing them, no majority
    [4, 4, 2, 0, 0, 0, 0, 0, 0, 0],  # r1: no majority; probability keeps neutral + happiness
    [0, 0, 0, 0, 0, 0, 0, 8, 2, 0],  # r2: contempt
    [0, 2, 0, 0, 0, 0, 0, 0, 0, 8],  # r3: not a face
    [0, 10, 0, 0, 0, 0, 0, 0, 0, 0],  # r4: empty image name -> dropped by FER+
    [0, 0, 0, 0, 6, 4, 0, 0, 0, 0],  # r5: anger 6 / disgust 4
]


def ferplus_text(votes=FERPLUS_VOTES, usages=USAGES) -> str:
    head = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
    lines = [
        f"{u},{'' if r == 4 else f'fer{r:07d}.png'},{','.join(map(str, v))}\n"
        for r, (u, v) in enumerate(zip(usages, votes))
    ]
    return head + "".join(lines)


@pytest.fixture
def ferplus_csv(tmp_path) -> Path:
    path = tmp_path / "data" / "fer2013new.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text(ferplus_text())
    return path


def test_fer2013_splits_labels_pixels_and_ids(fer_csv):
    train, val, test = (FER2013(fer_csv, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (3, 2, 1)
    assert val.rows.tolist() == [3, 4] and val.ids == ["fer2013.csv:row=3", "fer2013.csv:row=4"]
    assert train.labels.dtype == np.int64
    assert test.labels.tolist() == [CID["surprise"]]  # FER2013 5 = surprise
    assert train.labels.tolist() == [CID["angry"], CID["disgust"], CID["fear"]]
    image = val.load_image(1)
    assert image.dtype == np.uint8 and image.shape == (48, 48)
    np.testing.assert_array_equal(image.ravel(), row_pixels(4))
    item = val[1]
    assert item["index"] == 1 and item["label"] == CID["sad"]
    assert isinstance(item["image"], torch.Tensor) and item["image"].shape == (48, 48)


def test_fer2013_gz_matches_plain_and_is_cached_outside_the_data(fer_csv, tmp_path, monkeypatch):
    gz = fer_csv.with_suffix(".csv.gz")
    gz.write_bytes(gzip.compress(fer_csv.read_bytes()))
    plain, zipped = read_fer2013_csv(fer_csv), read_fer2013_csv(gz)
    np.testing.assert_array_equal(plain.pixels, zipped.pixels)
    np.testing.assert_array_equal(plain.emotion, zipped.emotion)
    np.testing.assert_array_equal(plain.split, zipped.split)
    assert FER2013(gz, "test").ids == ["fer2013.csv.gz:row=5"]
    assert len(list((tmp_path / "cache" / "fer2013").glob("*.npz"))) == 2
    assert sorted(p.name for p in fer_csv.parent.iterdir()) == ["fer2013.csv", "fer2013.csv.gz"]  # nothing added
    # A second read (new process: empty memo) comes from the disk cache, without parsing.
    fer2013_module._MEMO.clear()
    monkeypatch.setattr(fer2013_module, "_parse", lambda path: pytest.fail("parsed again despite the cache"))
    np.testing.assert_array_equal(read_fer2013_csv(fer_csv).pixels, plain.pixels)


def test_fer2013_reads_the_icml_face_data_variant(tmp_path):
    # Kaggle's icml_face_data.csv: other column order, spaces after the commas, CRLF line ends.
    path = tmp_path / "icml_face_data.csv"
    rows = "".join(f"{r}, {USAGES[r]}, {' '.join(map(str, row_pixels(r)))}\r\n" for r in range(6))
    path.write_text("emotion, Usage, pixels\r\n" + rows, newline="")
    table = read_fer2013_csv(path)
    assert table.emotion.tolist() == list(range(6)) and table.split.tolist() == [0, 0, 0, 1, 1, 2]
    np.testing.assert_array_equal(table.pixels[5].ravel(), row_pixels(5))


def test_fer2013_cache_follows_file_changes(fer_csv):
    assert read_fer2013_csv(fer_csv).emotion.tolist() == [0, 1, 2, 3, 4, 5]
    rows = [(6, " ".join(["7"] * 2304), "Training")] * 2
    fer_csv.write_text(fer_text(rows))
    table = read_fer2013_csv(fer_csv)
    assert table.emotion.tolist() == [6, 6] and (table.pixels == 7).all()


@pytest.mark.parametrize(
    "rows, header, expected",
    [
        ([(0, "1 " * 2304, "Training"), (1, "1 " * 2303, "PublicTest")], None, ["row 1", "2303 pixel values", "2304"]),
        ([(0, "1 " * 2304, "Training"), (7, "1 " * 2304, "PublicTest")], None, ["row 1", "emotion 7", "0..6"]),
        ([(0, "1 " * 2303 + "256", "Training")], None, ["row 0", "256", "0..255"]),
        ([(0, "1 " * 2303 + "x", "Training")], None, ["row 0", "'x'"]),
        ([(0, "1 " * 2304, "Train")], None, ["row 0", "'Train'", "PublicTest"]),
        ([(0, "1 " * 2304, "Training")], "emotion,pix,Usage", ["bad header", "'pixels'", "'emotion'", "'Usage'"]),
    ],
    ids=["pixel-count", "label-range", "pixel-range", "pixel-char", "usage", "header"],
)
def test_fer2013_bad_input_names_file_and_row(tmp_path, rows, header, expected):
    path = tmp_path / "fer2013.csv"
    path.write_text(fer_text(rows, header or "emotion,pixels,Usage"))
    with pytest.raises(DataError) as info:
        read_fer2013_csv(path)
    message = str(info.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def test_fer2013_missing_file(tmp_path):
    with pytest.raises(DataError, match="fer2013.csv: FER2013 csv not found"):
        FER2013(tmp_path / "fer2013.csv")


# --- FER+ label rules, one image at a time ---------------------------------------------------------------
def test_ferplus_outliers_are_removed_before_any_rule():
    # 5 of 10 raw votes is not a majority; after the five single votes go, 5 of 5 is.
    kept, reason = ferplus_vote_target([5, 1, 1, 1, 1, 1, 0, 0, 0, 0], "majority")
    assert reason == "kept" and kept[0] == 5 and sum(kept) == 5
    kept, reason = ferplus_vote_target([5, 1, 1, 1, 1, 1, 0, 0, 0, 0], "soft")
    assert kept == [5.0] + [0.0] * 9
    assert ferplus_vote_target([1] * 10, "majority") == (None, "no_votes")


def test_ferplus_majority_needs_more_than_half_and_an_emotion():
    assert ferplus_vote_target([4, 4, 2, 0, 0, 0, 0, 0, 0, 0], "majority") == (None, "no_majority")
    assert ferplus_vote_target([5, 3, 2, 0, 0, 0, 0, 0, 0, 0], "majority") == (None, "no_majority")  # exactly half
    assert ferplus_vote_target([0, 0, 0, 0, 0, 0, 0, 0, 7, 3], "majority") == (None, "unknown_or_nf")
    assert ferplus_vote_target([0, 2, 0, 0, 0, 0, 0, 0, 0, 8], "majority") == (None, "unknown_or_nf")
    kept, reason = ferplus_vote_target([0, 6, 0, 0, 0, 0, 0, 0, 4, 0], "majority")
    assert reason == "kept" and kept == [0, 6, 0, 0, 0, 0, 0, 0, 0, 0]  # unknown votes are not part of the label


def test_ferplus_soft_accumulates_to_75_percent():
    # 5 (50 %) is not enough, 5 + 3 (80 %) is; the third group (2) is never taken.
    kept, reason = ferplus_vote_target([5, 3, 2, 0, 0, 0, 0, 0, 0, 0], "soft")
    assert reason == "kept" and kept == [5, 3, 0, 0, 0, 0, 0, 0, 0, 0]
    # a tie is taken as a group: 4 + 4 = 80 %
    assert ferplus_vote_target([4, 4, 2, 0, 0, 0, 0, 0, 0, 0], "soft")[0] == [4, 4, 0, 0, 0, 0, 0, 0, 0, 0]
    # a tie group that makes more than 3 kept emotions drops the image
    assert ferplus_vote_target([2, 2, 2, 2, 2, 0, 0, 0, 0, 0], "soft") == (None, "too_many_classes")


def test_ferplus_soft_unknown_stops_accumulation_or_dominates():
    # unknown comes after happiness: accumulation stops, unknown is not kept, 6 of 10 > half -> kept
    assert ferplus_vote_target([0, 6, 0, 0, 0, 0, 0, 0, 4, 0], "soft")[0] == [0, 6, 0, 0, 0, 0, 0, 0, 0, 0]
    # unknown stops accumulation at 4 of 10 votes: no more than half -> dropped
    assert ferplus_vote_target([4, 0, 0, 0, 0, 0, 0, 0, 3, 3], "soft") == (None, "too_few_votes_kept")
    # NF comes first: it dominates -> dropped
    assert ferplus_vote_target([0, 2, 0, 0, 0, 0, 0, 0, 0, 8], "soft") == (None, "unknown_or_nf")


# --- FER+ dataset ----------------------------------------------------------------------------------------
def test_ferplus_majority_dataset(fer_csv, ferplus_csv):
    train = FERPlus(fer_csv, ferplus_csv, "train", "majority")
    assert train.rows.tolist() == [0, 2]  # r1: no majority
    assert train.labels.tolist() == [CID["neutral"], CID["contempt"]]
    assert train.soft_labels is None  # one switch: majority mode carries no soft label
    assert train.drop_counts == {"no_majority": 1}
    np.testing.assert_array_equal(train.load_image(1).ravel(), row_pixels(2))  # pixels from fer2013.csv row 2
    assert train.ids[1] == "fer2013.csv:row=2"
    item = train[1]
    assert item["index"] == 1 and "soft_label" not in item
    val = FERPlus(fer_csv, ferplus_csv, "val", "majority")
    assert len(val) == 0 and val.drop_counts == {"unknown_or_nf": 1, "no_image_name": 1}
    test = FERPlus(fer_csv, ferplus_csv, "test", "majority")
    assert test.labels.tolist() == [CID["angry"]]
    soft = FERPlus(fer_csv, ferplus_csv, "test", "soft")
    assert soft.labels.tolist() == [CID["angry"]] and soft[0]["soft_label"].shape == (8,)
    np.testing.assert_allclose(soft.soft_labels[0][[CID["angry"], CID["disgust"]]], [0.6, 0.4])


def test_ferplus_soft_dataset_and_seven_classes(fer_csv, ferplus_csv):
    train = FERPlus(fer_csv, ferplus_csv, "train", "soft")
    assert train.rows.tolist() == [0, 1, 2]
    assert train.labels[1] == CID["neutral"]  # 4/4 tie: FER+ column order puts neutral first
    expected = np.zeros(8)
    expected[[CID["neutral"], CID["happy"]]] = 0.5
    np.testing.assert_allclose(train.soft_labels[1], expected)
    np.testing.assert_allclose(train.soft_labels.sum(axis=1), 1.0, rtol=1e-6)
    seven = FERPlus(fer_csv, ferplus_csv, "train", "soft", num_classes=7)
    assert seven.rows.tolist() == [0, 1] and seven.drop_counts == {"contempt": 1}
    assert seven.soft_labels.shape == (2, 7) and seven.num_classes == 7


def test_ferplus_contempt_votes_are_renormalised_away_with_seven_classes(tmp_path, fer_csv):
    votes = [list(v) for v in FERPLUS_VOTES]
    votes[5] = [0, 0, 0, 0, 6, 0, 0, 4, 0, 0]  # anger 6, contempt 4
    path = tmp_path / "plus.csv"
    path.write_text(ferplus_text(votes))
    eight = FERPlus(fer_csv, path, "test", "soft", num_classes=8)
    np.testing.assert_allclose(eight.soft_labels[0][[CID["angry"], CID["contempt"]]], [0.6, 0.4])
    seven = FERPlus(fer_csv, path, "test", "soft", num_classes=7)
    np.testing.assert_allclose(seven.soft_labels[0], np.eye(7)[CID["angry"]])


def test_ferplus_files_must_align(tmp_path, fer_csv):
    short = tmp_path / "short.csv"
    short.write_text(ferplus_text(FERPLUS_VOTES[:5], USAGES[:5]))
    with pytest.raises(DataError, match=r"short.csv has 5 rows but .*fer2013.csv has 6"):
        FERPlus(fer_csv, short, "train")
    swapped = tmp_path / "swapped.csv"
    swapped.write_text(ferplus_text(FERPLUS_VOTES, USAGES[::-1]))
    with pytest.raises(DataError, match="swapped.csv: row 0 has Usage 'test'"):
        FERPlus(fer_csv, swapped, "train")
    bad = tmp_path / "bad.csv"
    bad.write_text(ferplus_text().replace("4,4,2", "4,x,2"))
    with pytest.raises(DataError, match=r"bad.csv: row 1 \(line 3\)"):
        FERPlus(fer_csv, bad, "train")
    with pytest.raises(DataError, match="nothere.csv: FER\\+ label file not found"):
        FERPlus(fer_csv, tmp_path / "nothere.csv", "train")


# --------------------------------------------------------------------------------------------------------
# RAF-DB
# --------------------------------------------------------------------------------------------------------
RAF_LIST = {"train_00001.jpg": 4, "train_00002.jpg": 1, "test_0001.jpg": 7, "test_0002.jpg": 6}


def write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image[..., ::-1] if image.ndim == 3 else image)


@pytest.fixture
def raf_root(tmp_path) -> Path:
    root = tmp_path / "basic"
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("".join(f"{n} {l}\n" for n, l in RAF_LIST.items()))
    for k, name in enumerate(RAF_LIST):
        image = np.full((100, 100, 3), 40 * k, np.uint8)
        write_image(root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg"), image)
    return root


def test_rafdb_labels_splits_and_images(raf_root):
    train, test = RAFDB(raf_root, "train"), RAFDB(raf_root, "test")
    assert train.ids == ["train_00001.jpg", "train_00002.jpg"] and len(test) == 2
    assert train.labels.tolist() == [CID["happy"], CID["surprise"]]  # RAF-DB 4 happiness, 1 surprise
    assert test.labels.tolist() == [CID["neutral"], CID["angry"]]  # 7 neutral, 6 anger
    image = test.load_image(1)
    assert image.shape == (100, 100, 3) and image.dtype == np.uint8
    assert abs(int(image.mean()) - 120) <= 2  # the 4th image (jpeg: nearly exact)
    assert test[1]["index"] == 1 and test[1]["label"] == CID["angry"]


def test_rafdb_missing_list_and_images(raf_root, tmp_path):
    with pytest.raises(DataError, match=r"EmoLabel/list_patition_label.txt: RAF-DB label list not found"):
        RAFDB(tmp_path / "elsewhere")
    (raf_root / "Image" / "aligned" / "train_00002_aligned.jpg").unlink()
    with pytest.raises(DataError, match=r"1 of the 2 train images .* missing, e.g. train_00002_aligned.jpg"):
        RAFDB(raf_root, "train")
    assert len(RAFDB(raf_root, "test")) == 2


def test_rafdb_corrupt_image_and_bad_label(raf_root):
    corrupt = raf_root / "Image" / "aligned" / "test_0001_aligned.jpg"
    corrupt.write_bytes(b"this is not a jpeg")
    dataset = RAFDB(raf_root, "test")
    with pytest.raises(DataError, match=f"{corrupt}: not a readable image"):
        dataset[0]
    lst = raf_root / "EmoLabel" / "list_patition_label.txt"
    lst.write_text("train_00001.jpg 4\ntrain_00002.jpg 8\n")
    with pytest.raises(DataError, match=r"list_patition_label.txt: line 2: label 8 is outside 1..7"):
        RAFDB(raf_root, "train")


# --------------------------------------------------------------------------------------------------------
# AffectNet
# --------------------------------------------------------------------------------------------------------
AFFECT_HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"


def landmark_points(x0: float, y0: float) -> np.ndarray:
    """68 distinct points inside a 30x40 box at (x0, y0)."""
    k = np.arange(68)
    return np.stack([x0 + 2 + (k % 13) * 2, y0 + 2 + (k // 13) * 6], axis=1).astype(np.float32)


def affect_row(file, box, points, expression) -> str:
    lms = ";".join(f"{v:.2f}" for v in np.asarray(points).ravel()) if points is not None else ""
    return f"{file},{box[0]},{box[1]},{box[2]},{box[3]},{lms},{expression},0.5,-0.25\n"


@pytest.fixture
def affect_root(tmp_path) -> Path:
    root = tmp_path / "AffectNet"
    rng = np.random.default_rng(0)
    images = {"1/a.png": (10, 5), "2/b.png": (-4, 3)}  # box corners; b's box sticks out on the left
    rows = []
    for (name, (x, y)), expression in zip(images.items(), (1, 7)):
        image = rng.integers(0, 200, size=(60, 80, 3), dtype=np.uint8)
        points = landmark_points(max(x, 0), y)
        image[int(points[30, 1]), int(points[30, 0])] = 255  # mark point 30 so the crop can be checked
        write_image(root / "Manually_Annotated_Images" / name, image)
        rows.append(affect_row(name, (x, y, 30, 40), points, expression))
    rows.insert(1, affect_row("3/none.png", (0, 0, 10, 10), None, 9))  # uncertain: dropped, image absent
    rows.append(affect_row("4/noface.png", (0, 0, 10, 10), None, 10))  # no-face
    (root / "training.csv").write_text(AFFECT_HEADER + "\n" + "".join(rows))
    (root / "validation.csv").write_text(rows[0])  # headerless, as some copies are
    return root


def test_affectnet_labels_drops_and_attributes(affect_root):
    seven = AffectNet(affect_root, "train", num_classes=7)
    assert seven.labels.tolist() == [CID["happy"]] and seven.rows.tolist() == [0]
    assert seven.drop_counts == {"uncertain": 1, "no-face": 1, "contempt": 1}
    eight = AffectNet(affect_root, "train", num_classes=8)
    assert eight.labels.tolist() == [CID["happy"], CID["contempt"]]
    assert eight.landmarks.shape == (2, 68, 2) and eight.landmarks.dtype == np.float32
    np.testing.assert_allclose(eight.valence, 0.5)
    np.testing.assert_allclose(eight.arousal, -0.25)
    assert eight.ids == ["1/a.png", "2/b.png"]
    val = AffectNet(affect_root, "val")
    assert val.ids == ["1/a.png"] and val.labels.tolist() == [CID["happy"]]


def test_affectnet_crop_shifts_landmarks_with_the_image(affect_root):
    full = AffectNet(affect_root, "train", num_classes=8, crop_faces=False)
    crop = AffectNet(affect_root, "train", num_classes=8, crop_faces=True)
    for i, (x, y) in enumerate([(10, 5), (0, 3)]):  # b's box starts at x=-4, clipped to 0
        raw = full.load_image(i)
        image = crop.load_image(i)
        assert raw.shape == (60, 80, 3)
        np.testing.assert_array_equal(image, raw[y : y + 40, x : x + 30 - (4 if i else 0)])
        np.testing.assert_allclose(crop.landmarks[i], full.landmarks[i] - [x, y])
        px, py = crop.landmarks[i][30].astype(int)
        assert (image[py, px] == 255).all()  # the marked landmark pixel is where the landmark says
    item = crop[1]
    assert item["index"] == 1 and isinstance(item["landmarks"], torch.Tensor)
    torch.testing.assert_close(item["landmarks"], torch.from_numpy(crop.landmarks[1]))


def test_affectnet_bad_landmarks_and_missing_image(affect_root):
    csv_path = affect_root / "training.csv"
    lines = csv_path.read_text().splitlines(keepends=True)
    good = lines[3]
    lines[3] = good.replace(good.split(",")[5], good.split(",")[5].rsplit(";", 1)[0])  # 135 numbers
    csv_path.write_text("".join(lines))
    with pytest.raises(DataError, match=r"training.csv: row 2 \(line 4\): facial_landmarks .* 136 numbers"):
        AffectNet(affect_root, "train")
    lines[3] = good.replace(good.split(",")[5], "x;" * 135 + "1")
    csv_path.write_text("".join(lines))
    with pytest.raises(DataError, match=r"row 2 \(line 4\): facial_landmarks"):
        AffectNet(affect_root, "train")
    lines[3] = good.replace(good.split(",")[5], "")  # no landmarks: allowed, NaN
    csv_path.write_text("".join(lines))
    dataset = AffectNet(affect_root, "train", num_classes=8)
    assert np.isnan(dataset.landmarks[1]).all() and not np.isnan(dataset.landmarks[0]).any()
    lines[3] = good
    csv_path.write_text("".join(lines))
    (affect_root / "Manually_Annotated_Images" / "2" / "b.png").unlink()
    with pytest.raises(DataError, match="1 of the 2 images .* missing, e.g. .*2/b.png"):
        AffectNet(affect_root, "train", num_classes=8)
    with pytest.raises(DataError, match="b.png: image file not found"):
        AffectNet(affect_root, "train", num_classes=8, check_files=False)[1]
    (affect_root / "validation.csv").write_text("path,x\n")
    with pytest.raises(DataError, match="validation.csv: bad header"):
        AffectNet(affect_root, "val")


# --------------------------------------------------------------------------------------------------------
# Class-per-folder datasets
# --------------------------------------------------------------------------------------------------------
def make_tree(root: Path, folders: dict[str, int], ext: str = ".png") -> None:
    for folder, count in folders.items():
        for k in range(count):
            write_image(root / folder / f"img{k}{ext}", np.full((12, 10, 3), 30 * k, np.uint8))


def test_image_folder_maps_folder_names_and_splits(tmp_path):
    make_tree(tmp_path / "train", {"Happy": 2, "anger": 1, "surprised": 1, "sadness": 1})
    make_tree(tmp_path / "test", {"happiness": 1, "angry": 1})
    (tmp_path / "train" / "Happy" / "notes.txt").write_text("ignored")
    train = ImageFolderFER(tmp_path, split="train")
    assert train.num_classes == 7
    assert sorted(zip(train.ids, train.labels.tolist())) == [
        ("Happy/img0.png", CID["happy"]), ("Happy/img1.png", CID["happy"]), ("anger/img0.png", CID["angry"]),
        ("sadness/img0.png", CID["sad"]), ("surprised/img0.png", CID["surprise"]),
    ]
    test = ImageFolderFER(tmp_path, split="test", grayscale=True)
    assert test.load_image(0).shape == (12, 10) and len(test) == 2
    assert train.load_image(0).shape == (12, 10, 3)
    assert train[3]["index"] == 3


def test_image_folder_contempt_and_overrides(tmp_path):
    make_tree(tmp_path, {"contempt": 1, "HA": 2, "neutral": 1}, ext=".jpg")
    with pytest.raises(DataError) as info:
        ImageFolderFER(tmp_path)
    message = str(info.value)
    assert "['HA']" in message and "class_names=" in message and "'happiness'" in message and str(tmp_path) in message
    eight = ImageFolderFER(tmp_path, class_names={"HA": "happiness"})
    assert eight.num_classes == 8 and sorted(eight.class_counts().tolist()) == [0] * 5 + [1, 1, 2]
    assert eight.class_counts()[CID["contempt"]] == 1
    seven = ImageFolderFER(tmp_path, class_names={"HA": "happy"}, num_classes=7)
    assert len(seven) == 3 and seven.num_classes == 7


def test_image_folder_errors(tmp_path):
    make_tree(tmp_path / "train", {"happy": 1})
    with pytest.raises(DataError, match=r"\['train'\].*pass split="):
        ImageFolderFER(tmp_path)
    (tmp_path / "train" / "fear").mkdir()
    with pytest.raises(DataError, match=r"train/fear: class folder has no images"):
        ImageFolderFER(tmp_path, split="train")
    with pytest.raises(DataError, match="dataset folder not found"):
        ImageFolderFER(tmp_path, split="val")


# --------------------------------------------------------------------------------------------------------
# io helpers
# --------------------------------------------------------------------------------------------------------
def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.png: image file not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match="empty.png: image file is empty"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(DataError, match="bad.jpg: not a readable image"):
        read_image(tmp_path / "bad.jpg")
    write_image(tmp_path / "ok.png", np.dstack([np.full((4, 5), 200, np.uint8), np.zeros((4, 5, 2), np.uint8)]))
    rgb = read_image(tmp_path / "ok.png")
    assert rgb.shape == (4, 5, 3) and rgb[0, 0].tolist() == [200, 0, 0]  # RGB order, not OpenCV's BGR
    assert read_image(tmp_path / "ok.png", grayscale=True).shape == (4, 5)


def test_cache_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FERKIT_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir("x") == tmp_path / "elsewhere" / "x" and (tmp_path / "elsewhere" / "x").is_dir()
