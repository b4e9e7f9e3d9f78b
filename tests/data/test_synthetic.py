"""SyntheticFaces: determinism, splits, shapes, landmark/image consistency, classes, grayscale, base contract."""
from __future__ import annotations

import itertools
import pickle

import cv2
import numpy as np
import pytest
import torch

from ferkit.data.base import FERDataset
from ferkit.core.labels import CANONICAL_CLASSES
from ferkit.data.synthetic import ACTION_UNITS, EXPRESSION_PROTOTYPES, SyntheticFaces
from ferkit.data.visual import contact_sheet

SIZE = 64


def _pixels(images: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Grey values of images [N, H, W] at the nearest pixel of points [N, K, 2]."""
    p = np.rint(points).astype(int)
    return images[np.arange(len(images))[:, None], p[..., 1], p[..., 0]].astype(np.float64)


def test_same_arguments_give_bit_identical_data():
    a = SyntheticFaces(60, split="train", seed=5)
    b = SyntheticFaces(60, split="train", seed=5)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    first = {i: a.load_image(i) for i in (0, 17, 59, 3)}
    for i in (0, 17, 59):
        np.testing.assert_array_equal(first[i], b.load_image(i))
    # Random access in any order renders the same bits (no hidden state between calls): a fresh object read in
    # another order, and the first object read again, give the first renders.
    c = SyntheticFaces(60, split="train", seed=5)
    for i in (59, 3, 0, 17):
        np.testing.assert_array_equal(c.load_image(i), first[i])
        np.testing.assert_array_equal(a.load_image(i), first[i])


def test_splits_and_seeds_are_disjoint_streams():
    train = SyntheticFaces(200, split="train", seed=0)
    val = SyntheticFaces(200, split="val", seed=0)
    test = SyntheticFaces(200, split="test", seed=0)
    other_seed = SyntheticFaces(200, split="train", seed=1)
    for x, y in itertools.combinations([train, val, test, other_seed], 2):
        assert not np.array_equal(x.labels, y.labels)
        # No face (landmark configuration) is shared between the two sets.
        d = np.abs(x.landmarks[:, None] - y.landmarks[None]).max(axis=(2, 3))
        assert d.min() > 1e-3
        assert not np.array_equal(x.load_image(0), y.load_image(0))


def test_shapes_dtypes_and_ids():
    ds = SyntheticFaces(30, split="val", num_classes=8)
    assert len(ds) == 30 and ds.num_classes == 8
    assert ds.class_names == CANONICAL_CLASSES
    assert ds.labels.dtype == np.int64 and ds.labels.shape == (30,)
    assert ds.landmarks.dtype == np.float32 and ds.landmarks.shape == (30, 68, 2)
    assert ds.action_units.shape == (30, len(ACTION_UNITS)) and ds.action_units.dtype == np.float32
    assert ds.ids[17] == "synthetic:val:17" and len(ds.ids) == 30
    img = ds.load_image(3)
    assert img.dtype == np.uint8 and img.shape == (SIZE, SIZE, 3)
    big = SyntheticFaces(4, image_size=96)
    assert big.load_image(1).shape == (96, 96, 3)
    assert big.landmarks.max() <= 95


def test_getitem_through_base_contract():
    ds = SyntheticFaces(10)
    assert isinstance(ds, FERDataset)
    item = ds[4]
    assert isinstance(item["image"], torch.Tensor) and item["image"].dtype == torch.uint8
    assert tuple(item["image"].shape) == (SIZE, SIZE, 3)
    assert item["label"] == int(ds.labels[4]) and item["index"] == 4
    assert item["landmarks"].dtype == torch.float32 and tuple(item["landmarks"].shape) == (68, 2)
    np.testing.assert_array_equal(item["image"].numpy(), ds.load_image(4))

    seen = {}

    def transform(image, landmarks):
        seen["shape"] = image.shape
        return {"image": torch.zeros(1)}

    ds_t = SyntheticFaces(10, transform=transform)
    assert ds_t[2]["image"].shape == (1,) and seen["shape"] == (SIZE, SIZE, 3)


def test_landmarks_inside_image_and_face():
    ds = SyntheticFaces(300, difficulty=1.0, seed=2)
    lm = ds.landmarks
    assert np.isfinite(lm).all()
    assert lm.min() >= 0 and lm.max() <= SIZE - 1
    inner = [k for k in range(28, 68) if k not in (37, 38, 43, 44)]  # upper lids may rise above the jaw's ends
    for i in range(len(ds)):
        jaw = lm[i, :17].reshape(-1, 1, 2)
        assert all(cv2.pointPolygonTest(jaw, (float(x), float(y)), False) >= 0 for x, y in lm[i, inner]), i


@pytest.mark.parametrize("difficulty", [0.0, 1.0])
def test_image_is_drawn_from_the_landmarks(difficulty):
    ds = SyntheticFaces(140, difficulty=difficulty, grayscale=True, seed=3)
    images = np.stack([ds.load_image(i) for i in range(len(ds))])
    lm = ds.landmarks
    lids = _pixels(images, lm[:, [37, 38, 43, 44]]).mean(1)            # dark upper-lid lines
    brows = _pixels(images, 0.5 * (lm[:, [18, 19, 24, 25]] + lm[:, [19, 20, 23, 24]])).mean(1)
    cheeks = _pixels(images, np.stack([0.5 * (lm[:, 2] + lm[:, 48]), 0.5 * (lm[:, 14] + lm[:, 54])], 1)).mean(1)
    assert np.mean(lids < cheeks - 10) > 0.95
    assert np.mean(brows < cheeks) > 0.8
    # Where the lips are far apart the mouth cavity (dark) is drawn between them.
    gap = np.linalg.norm(lm[:, 66] - lm[:, 62], axis=1)
    wide = gap > 3
    assert wide.sum() >= 5
    t = np.linspace(0.45, 0.95, 6)[None, :, None]                       # teeth fill the upper 40 %
    mouth = _pixels(images, lm[:, None, 62] + t * (lm[:, None, 66] - lm[:, None, 62])).min(1)
    assert np.mean(mouth[wide] < cheeks[wide] - 10) > 0.9


def test_classes_are_balanced_or_follow_weights():
    ds = SyntheticFaces(703, num_classes=7)
    counts = ds.class_counts()
    assert counts.sum() == 703 and counts.max() - counts.min() <= 1
    w = [4, 1, 1, 2, 1, 1, 2]
    skew = SyntheticFaces(1200, class_weights=w)
    np.testing.assert_array_equal(skew.class_counts(), np.array(w) * 100)
    with pytest.raises(ValueError, match="class_weights"):
        SyntheticFaces(10, class_weights=[1, 1])
    with pytest.raises(ValueError, match="class_weights"):
        SyntheticFaces(10, class_weights=[1, -1, 1, 1, 1, 1, 1])


def test_every_class_is_rendered_differently():
    # Labels have their own random stream: one-class sets share identities, poses and lighting, so the
    # images differ only through the expression.
    n = 12
    per_class = []
    for c in range(8):
        w = np.zeros(8)
        w[c] = 1
        ds = SyntheticFaces(n, num_classes=8, class_weights=w, ambiguity=0.0, grayscale=True, seed=4)
        assert (ds.labels == c).all()
        per_class.append((ds.landmarks, np.stack([ds.load_image(i) for i in range(n)]).astype(np.float64)))
    for a, b in itertools.combinations(range(8), 2):
        (lm_a, img_a), (lm_b, img_b) = per_class[a], per_class[b]
        assert np.abs(lm_a - lm_b).max(axis=(1, 2)).min() > 0.5, (a, b)
        changed = (np.abs(img_a - img_b) > 16).sum(axis=(1, 2))        # pixels visibly changed per face
        assert changed.min() >= 3 and np.median(changed) >= 8, (CANONICAL_CLASSES[a], CANONICAL_CLASSES[b], changed)


def test_expression_geometry_is_learnable_but_ambiguity_blurs_it():
    def centroid_accuracy(ambiguity: float) -> float:
        tr = SyntheticFaces(1400, split="train", difficulty=0.0, ambiguity=ambiguity)
        te = SyntheticFaces(700, split="test", difficulty=0.0, ambiguity=ambiguity)

        def feats(ds):
            x = ds.landmarks - ds.landmarks.mean(axis=1, keepdims=True)
            return (x / np.linalg.norm(x, axis=(1, 2), keepdims=True)).reshape(len(ds), -1)

        xtr, xte = feats(tr), feats(te)
        cent = np.stack([xtr[tr.labels == c].mean(0) for c in range(7)])
        pred = np.argmin(((xte[:, None] - cent[None]) ** 2).sum(-1), axis=1)
        return float((pred == te.labels).mean())

    clean, ambiguous = centroid_accuracy(0.0), centroid_accuracy(1.0)
    assert clean > 0.9
    assert 1 / 7 + 0.2 < ambiguous < clean - 0.05


def test_contempt_is_an_asymmetric_mouth():
    w = np.zeros(8)
    w[CANONICAL_CLASSES.index("contempt")] = 1
    contempt = SyntheticFaces(50, num_classes=8, class_weights=w, difficulty=0.0, ambiguity=0.0)
    w[:] = 0
    w[CANONICAL_CLASSES.index("neutral")] = 1
    neutral = SyntheticFaces(50, num_classes=8, class_weights=w, difficulty=0.0, ambiguity=0.0)

    def corner_tilt(ds):
        return np.abs(ds.landmarks[:, 48, 1] - ds.landmarks[:, 54, 1])

    assert np.median(corner_tilt(contempt)) > 3 * np.median(corner_tilt(neutral))
    assert np.mean(corner_tilt(contempt) > 1.5) > 0.9
    assert "contempt" in EXPRESSION_PROTOTYPES


def test_grayscale_matches_rgb():
    rgb = SyntheticFaces(5, seed=9)
    gray = SyntheticFaces(5, seed=9, grayscale=True)
    g = gray.load_image(2)
    assert g.shape == (SIZE, SIZE) and g.dtype == np.uint8
    np.testing.assert_array_equal(g, cv2.cvtColor(rgb.load_image(2), cv2.COLOR_RGB2GRAY))
    assert tuple(gray[2]["image"].shape) == (SIZE, SIZE)


def test_cache_and_pickling_preserve_images():
    plain = SyntheticFaces(6, seed=11)
    cached = SyntheticFaces(6, seed=11, cache=True)
    first = cached.load_image(1)
    first[:] = 0                                   # callers may modify what they get back
    np.testing.assert_array_equal(cached.load_image(1), plain.load_image(1))
    clone = pickle.loads(pickle.dumps(plain))      # what a DataLoader worker receives
    np.testing.assert_array_equal(clone.load_image(5), plain.load_image(5))


def test_difficulty_zero_is_frontal_and_centred():
    ds = SyntheticFaces(40, difficulty=0.0)
    lm = ds.landmarks
    # No roll or yaw: eye corners level, nose on the face's vertical midline.
    np.testing.assert_allclose(lm[:, 39, 1], lm[:, 42, 1], atol=1e-3)
    np.testing.assert_allclose(lm[:, 30, 0], 0.5 * (lm[:, 0, 0] + lm[:, 16, 0]), atol=1e-3)
    assert np.abs(0.5 * (lm[:, 0, 0] + lm[:, 16, 0]) - (SIZE - 1) / 2).max() < 1e-3


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="split"):
        SyntheticFaces(10, split="valid")
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticFaces(10, num_classes=6)
    with pytest.raises(ValueError, match="difficulty"):
        SyntheticFaces(10, difficulty=-1)
    with pytest.raises(IndexError):
        SyntheticFaces(10).load_image(10)


def test_contact_sheet_and_description():
    ds = SyntheticFaces(40, num_classes=8)
    sheet = contact_sheet(ds, per_class=3, upscale=2)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3
    assert sheet.shape[0] == 8 * (2 * SIZE + 4) + 4
    plain = contact_sheet(ds, per_class=3, upscale=2, draw_landmarks=False)
    both = contact_sheet(ds, per_class=3, upscale=2, draw_landmarks="both")
    assert both.shape[1] - 90 - 4 == 2 * (plain.shape[1] - 90 - 4)
    assert not np.array_equal(sheet, plain)           # the dots are drawn
    assert "68-point" in SyntheticFaces.describe()


def test_contact_sheet_rows_captions_frames_and_save(tmp_path):
    from ferkit.data.visual import save_rgb

    ds = SyntheticFaces(21, image_size=32)
    chosen = [np.flatnonzero(ds.labels == c)[::-1][:2].tolist() for c in range(7)]  # last two of each class
    first = chosen[0][0]
    sheet = contact_sheet(ds, per_class=2, upscale=2, draw_landmarks=False, rows=chosen,
                          captions={first: "noisy 0.12"}, frames={first: (255, 0, 0)})
    assert sheet.shape[0] == 7 * (64 + 16 + 4) + 4  # caption strip under every row
    x0, y0 = 90 + 4, 4
    np.testing.assert_array_equal(sheet[y0 + 10, x0], [255, 0, 0])  # the red frame of the first tile
    inner = cv2.resize(ds.load_image(first), (64, 64), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(sheet[y0 + 4 : y0 + 60, x0 + 4 : x0 + 60], inner[4:60, 4:60])  # the chosen sample
    assert (sheet[y0 + 64 : y0 + 80, x0 : x0 + 64] < 128).any()  # caption text
    with pytest.raises(ValueError, match="one index list per class"):
        contact_sheet(ds, rows=chosen[:3])
    out = save_rgb(tmp_path / "figs" / "sheet.png", sheet)
    np.testing.assert_array_equal(cv2.imread(str(out))[..., ::-1], sheet)
