import numpy as np
import pytest
import torch

from ferkit.data.transforms import FERTransform, MultiView, available_presets
from ferkit.core.ibug68 import FLIP_PERMUTATION_68, flip_landmarks


def _dot_image(points, size=48):
    img = np.zeros((size, size), np.uint8)
    for x, y in points:
        img[int(y), int(x)] = 255
    return img


def test_flip_permutation_is_involution_and_swaps_sides():
    perm = FLIP_PERMUTATION_68
    np.testing.assert_array_equal(perm[perm], np.arange(68))
    assert perm[36] == 45 and perm[48] == 54 and perm[30] == 30 and perm[8] == 8
    pts = np.random.default_rng(0).random((68, 2)).astype(np.float32) * 47
    np.testing.assert_allclose(flip_landmarks(flip_landmarks(pts, 48), 48), pts, atol=1e-5)


@pytest.mark.parametrize("size", [48, 96])
def test_flip_moves_landmarks_with_pixels_and_swaps_identities(size):
    rng = np.random.default_rng(1)
    pts = np.stack([rng.integers(2, 46, 68), rng.integers(2, 46, 68)], 1).astype(np.float32)
    img = _dot_image(pts)
    t = FERTransform(img_size=size, channels=1, preset="eval", hflip=1.0, mean=[0.0], std=[1.0])
    out = t(image=img, landmarks=pts)
    lm = out["landmarks"].numpy()
    image = out["image"][0].numpy()
    # every transformed landmark sits on a bright pixel of the transformed image
    for x, y in lm:
        xi, yi = int(round(x)), int(round(y))
        assert image[max(yi - 1, 0): yi + 2, max(xi - 1, 0): xi + 2].max() > 0.2
    # identities swapped: the new right-eye corner (36) is the mirrored old left-eye corner (45)
    scale = size / 48
    expected36 = ((size - 1) - ((pts[45, 0] + 0.5) * scale - 0.5), (pts[45, 1] + 0.5) * scale - 0.5)
    np.testing.assert_allclose(lm[36], expected36, atol=1e-4)


def test_every_preset_keeps_landmark_count_and_shape():
    rng = np.random.default_rng(2)
    img = (rng.random((48, 48, 3)) * 255).astype(np.uint8)
    pts = rng.random((68, 2)).astype(np.float32) * 47
    pts[3] = np.nan
    for preset in available_presets():
        t = FERTransform(img_size=64, channels=3, preset=preset, hflip=0.5, seed=0)
        out = t(image=img, landmarks=pts)
        assert out["image"].shape == (3, 64, 64) and out["image"].dtype == torch.float32
        assert out["landmarks"].shape == (68, 2)
        # a missing point stays missing wherever the flip moved it
        assert torch.isnan(out["landmarks"]).any(dim=1).sum() == 1


def test_channels_normalisation_and_errors():
    rgb = np.full((10, 10, 3), 255, np.uint8)
    out = FERTransform(img_size=8, channels=1, preset="eval")(image=rgb)
    assert out["image"].shape == (1, 8, 8) and torch.allclose(out["image"], torch.ones(1, 8, 8))  # (1-0.5)/0.5
    gray = np.zeros((10, 10), np.uint8)
    assert FERTransform(img_size=8, channels=3)(image=gray)["image"].shape == (3, 8, 8)
    with pytest.raises(ValueError, match="unknown transform preset"):
        FERTransform(preset="nope")
    with pytest.raises(ValueError, match="channels"):
        FERTransform(channels=2)
    with pytest.raises(ValueError, match="flip_perm"):
        FERTransform(img_size=8, hflip=1.0)(image=gray, landmarks=np.zeros((5, 2), np.float32))


def test_multiview_gives_independent_views():
    img = (np.random.default_rng(3).random((48, 48)) * 255).astype(np.uint8)
    mv = MultiView({"image": FERTransform(48, 1, "weak", hflip=0.5, seed=1), "image_strong": FERTransform(48, 1, "strong", hflip=0.5, seed=2)})
    out = mv(image=img)
    assert set(out) == {"image", "image_strong"}
    assert not torch.equal(out["image"], out["image_strong"])
