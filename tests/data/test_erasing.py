"""Region erasing around per-sample centres: centres follow the image through square / resize / flip / shift,
erasing is reproducible per (seed, epoch, index), and bad centre files are named."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ferkit.core.errors import DataError
from ferkit.data.erasing import (MISSING_CENTRE, InformativeRegionEraser, RegionErasingTransform, load_centres,
                                 save_centres, to_original_coordinates)
from ferkit.data.transforms import FERTransform, MultiView


def dot_image(h: int, w: int, cx: int, cy: int) -> np.ndarray:
    img = np.full((h, w), 30, np.uint8)
    img[cy - 1:cy + 2, cx - 1:cx + 2] = 255
    return img


@pytest.mark.parametrize("resize", ["squash", "center_crop", "pad"])
def test_centre_follows_the_image(resize) -> None:
    rng = np.random.default_rng(0)
    no_erase = InformativeRegionEraser(p=0.0)
    for case in range(24):
        h, w = (40, 40) if case % 3 == 0 else (36, 52)
        # keep the dot inside the part of the image that centre-cropping keeps
        cx, cy = int(rng.integers(max(3, (w - h) // 2 + 3), min(w, (w + h) // 2) - 3)), int(rng.integers(3, h - 3))
        t = FERTransform(img_size=32, channels=1, preset="shift", hflip=0.5, resize=resize, seed=case)
        t.set_epoch(case)
        wrapped = RegionErasingTransform(t, no_erase, np.array([[cx, cy]] * 3, np.int16))
        out = wrapped(dot_image(h, w, cx, cy), index=2)
        img = out["image"][0]
        if img.max() < 0.5:
            continue  # the shift moved the dot out of the image: nothing to compare
        peak = torch.nonzero(img == img.max()).float().mean(0)  # (row, col)
        moved = out["region_centre"]
        assert abs(float(moved[0]) - float(peak[1])) <= 1.0 and abs(float(moved[1]) - float(peak[0])) <= 1.0, (case, moved, peak)


def test_landmarks_and_views_are_unchanged_and_erasing_is_reproducible() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    landmarks = rng.uniform(5, 40, (68, 2)).astype(np.float32)
    centres = np.array([[10, 12], [30, 20], [24, 24]], np.int16)

    def views():
        main = FERTransform(img_size=32, preset="default", hflip=0.5, seed=3, stream="train/image")
        strong = FERTransform(img_size=32, preset="strong", hflip=0.5, seed=3, stream="train/image_strong")
        mv = MultiView({"image": main, "image_strong": strong})
        mv.set_epoch(4)
        return mv

    plain = views()(image=image, landmarks=landmarks, index=1)
    keep = RegionErasingTransform(views(), InformativeRegionEraser(p=0.0), centres)(image, landmarks, index=1)
    for key in ("image", "image_strong", "landmarks", "landmarks_strong"):
        torch.testing.assert_close(keep[key], plain[key], equal_nan=True)

    eraser = InformativeRegionEraser(area=(0.1, 0.1), aspect=(1.0, 1.0), fill=0.0, p=1.0)
    a = RegionErasingTransform(views(), eraser, centres)(image, landmarks, index=1)
    b = RegionErasingTransform(views(), eraser, centres)(image, landmarks, index=1)
    assert torch.equal(a["image"], b["image"])  # same (seed, epoch, index): same augmentation and box
    changed = (a["image"] != plain["image"]).any(0)
    assert changed.sum() > 0 and torch.equal(a["image_strong"], plain["image_strong"])
    rows, cols = torch.nonzero(changed, as_tuple=True)
    cx, cy = a["region_centre"].tolist()
    assert cols.min() - 1 <= cx <= cols.max() + 1 and rows.min() - 1 <= cy <= rows.max() + 1  # the box covers the centre


def test_random_centres_and_missing_centres() -> None:
    image = np.full((32, 32), 100, np.uint8)
    t = FERTransform(img_size=32, channels=1, seed=0)
    t.set_epoch(0)
    missing = np.full((2, 2), MISSING_CENTRE, np.int16)
    out = RegionErasingTransform(t, InformativeRegionEraser(p=1.0, fill=0.0), missing)(image, index=0)
    assert torch.isnan(out["region_centre"]).all() and (out["image"] != 0).all()  # no centre: not erased
    rand = RegionErasingTransform(t, InformativeRegionEraser(p=1.0, fill=0.0, random_centres=True))
    assert (rand(image, index=0)["image"] == 0).any()
    with pytest.raises(ValueError, match="needs centres"):
        RegionErasingTransform(t, InformativeRegionEraser())
    with pytest.raises(DataError, match="covers 2 samples"):
        RegionErasingTransform(t, InformativeRegionEraser(), missing)(image, index=5)
    with pytest.raises(ValueError, match="area must be"):
        InformativeRegionEraser(area=(0.5, 0.1))


def test_original_coordinates_invert_the_input_mapping() -> None:
    sizes = torch.tensor([[40, 40], [30, 60], [60, 30]])
    raw = torch.tensor([[10.0, 20.0], [35.0, 12.0], [7.0, 41.0]])
    for resize in ("squash", "center_crop", "pad"):
        t = FERTransform(img_size=32, channels=1, resize=resize)
        moved = []
        for (h, w), p in zip(sizes.tolist(), raw):
            moved.append(t(np.zeros((h, w), np.uint8), landmarks=p[None].numpy(), index=None)["landmarks"][0])
        back = to_original_coordinates(torch.stack(moved), sizes, 32, resize)
        torch.testing.assert_close(back.float(), raw, atol=1e-3, rtol=0)


def test_centre_file_roundtrip(tmp_path) -> None:
    c = torch.tensor([[1, 2], [MISSING_CENTRE, MISSING_CENTRE]], dtype=torch.int16)
    path = save_centres(tmp_path / "c.pt", c, generation=1)
    blob = load_centres(path)
    assert blob["centres"].dtype == np.int16 and np.array_equal(blob["centres"], c.numpy()) and blob["meta"] == {"generation": 1}
    with pytest.raises(DataError, match="does not exist"):
        load_centres(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_text("x")
    with pytest.raises(DataError, match="not a centre file"):
        load_centres(tmp_path / "bad.pt")
