"""Augmentations keep landmarks consistent: FERTransform's flip mirrors coordinates and swaps left/right identities."""
from __future__ import annotations

import numpy as np
import torch

from ferkit.data.synthetic import SyntheticFaces
from ferkit.data.transforms import FERTransform
from ferkit.landmarks.heatmaps import LANET19, HeatmapTargets
from ferkit.core.ibug68 import LEFT_EYE, RIGHT_EYE, flip_landmarks


def _sample() -> tuple[np.ndarray, np.ndarray]:
    ds = SyntheticFaces(num_samples=4, image_size=48, seed=1, difficulty=0.0)
    return ds.load_image(0), np.asarray(ds.landmarks[0], np.float32)


def test_flip_mirrors_coordinates_and_swaps_identities() -> None:
    img, pts = _sample()
    plain = FERTransform(img_size=64, preset="eval", hflip=0.0)(image=img, landmarks=pts)
    flipped = FERTransform(img_size=64, preset="eval", hflip=1.0, seed=0)(image=img, landmarks=pts)
    np.testing.assert_allclose(flipped["landmarks"].numpy(), flip_landmarks(plain["landmarks"].numpy(), 64), atol=1e-4)
    torch.testing.assert_close(flipped["image"], plain["image"].flip(-1))
    # a (near-)frontal face: the subject's right eye is on the image's left, before and after the flip
    for out in (plain, flipped):
        lm = out["landmarks"].numpy()
        assert lm[RIGHT_EYE, 0].mean() < lm[LEFT_EYE, 0].mean()


def test_flip_with_missing_points_keeps_them_missing_at_swapped_identity() -> None:
    img, pts = _sample()
    pts = pts.copy()
    pts[36] = np.nan  # the subject's right eye outer corner
    out = FERTransform(img_size=48, preset="eval", hflip=1.0, seed=0)(image=img, landmarks=pts)["landmarks"]
    bad = (~torch.isfinite(out).all(-1)).nonzero().flatten().tolist()
    assert bad == [45]  # its mirror partner, the left eye outer corner


def test_nineteen_point_heatmaps_follow_the_flip() -> None:
    img, pts = _sample()
    plain = FERTransform(img_size=64, preset="eval", hflip=0.0)(image=img, landmarks=pts)["landmarks"]
    flipped = FERTransform(img_size=64, preset="eval", hflip=1.0, seed=0)(image=img, landmarks=pts)["landmarks"]
    t = HeatmapTargets(19, stride=4, subset=LANET19)
    h, _ = t(plain[None], 16)
    hf, _ = t(flipped[None], 16)
    # stride 4 rounds differently on the two sides: compare the peak locations, within one cell
    peak = lambda m: torch.stack([m.flatten(2).argmax(-1) % m.shape[-1], m.flatten(2).argmax(-1) // m.shape[-1]], -1)  # noqa: E731
    diff = (peak(t.flip(h)) - peak(hf)).abs()
    assert int(diff.max()) <= 1
    # without the identity swap the brow/eye/mouth channels would be far apart
    wrong = (peak(h.flip(-1)) - peak(hf)).abs()
    assert int(wrong.max()) > 3
