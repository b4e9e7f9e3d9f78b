"""The iBUG 300-W 68-point landmark layout: index groups and the horizontal-flip permutation.

Indices are 0-based. Left/right are the subject's, as in the 300-W annotation (the subject's right eye is
on the image's left). A horizontal flip maps point i to ``FLIP_PERMUTATION_68[i]``.
"""
from __future__ import annotations

import numpy as np

JAW = list(range(0, 17))
RIGHT_BROW = list(range(17, 22))
LEFT_BROW = list(range(22, 27))
NOSE_BRIDGE = list(range(27, 31))
NOSE_LOWER = list(range(31, 36))
RIGHT_EYE = list(range(36, 42))
LEFT_EYE = list(range(42, 48))
OUTER_LIP = list(range(48, 60))
INNER_LIP = list(range(60, 68))

GROUPS = {
    "jaw": JAW, "right_brow": RIGHT_BROW, "left_brow": LEFT_BROW, "nose_bridge": NOSE_BRIDGE,
    "nose_lower": NOSE_LOWER, "right_eye": RIGHT_EYE, "left_eye": LEFT_EYE,
    "outer_lip": OUTER_LIP, "inner_lip": INNER_LIP,
}


def _flip_permutation() -> np.ndarray:
    perm = np.arange(68)
    pairs = []
    pairs += [(i, 16 - i) for i in range(8)]                    # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]               # brows
    pairs += [(31, 35), (32, 34)]                               # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56)]  # outer lip
    pairs += [(60, 64), (61, 63), (67, 65)]                     # inner lip
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


FLIP_PERMUTATION_68: np.ndarray = _flip_permutation()


def flip_landmarks(points: np.ndarray, width: int, perm: np.ndarray | None = None) -> np.ndarray:
    """Mirror (..., K, 2) pixel-centre coordinates in an image of ``width`` columns and swap identities.

    Uses x' = width - 1 - x (pixel centres at integer coordinates), so flipping twice is the identity.
    NaN points (missing landmarks) stay NaN.
    """
    pts = np.array(points, dtype=np.float32, copy=True)
    pts[..., 0] = (width - 1) - pts[..., 0]
    if perm is None:
        if pts.shape[-2] != 68:
            raise ValueError(f"no default flip permutation for {pts.shape[-2]} points; pass perm=")
        perm = FLIP_PERMUTATION_68
    return pts[..., perm, :]
