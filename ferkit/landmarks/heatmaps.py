"""Landmark point subsets and Gaussian heatmap targets (LA-Net: Wu & Cui, ICCV 2023, arXiv 2307.09023).

Point subsets
-------------
LA-Net regresses 19 points. Its released landmarks (RAF-DB only) came from an HRNet model whose layout is most
likely AFLW-19 (not confirmed). ferkit's sources ship or detect the iBUG 68-point layout
(:mod:`ferkit.core.ibug68`), so :data:`LANET19` derives an AFLW-19-like set from 68 points:

====  ==========================================  ===========================
 #    point                                       from the 68 points (0-based)
====  ==========================================  ===========================
 0-2  subject's right brow: outer end, middle,     17, 19, 21
      inner end
 3-5  subject's left brow: inner end, middle,      22, 24, 26
      outer end
 6-8  right eye: outer corner, centre, inner       36, mean(36..41), 39
      corner
 9-11 left eye: inner corner, centre, outer        42, mean(42..47), 45
      corner
12-14 nose: right nostril, tip, left nostril       31, 30, 35
15-17 mouth: right corner, centre, left corner     48, mean(51, 57), 54
 18   chin                                         8
====  ==========================================  ===========================

A subset is a linear map ``W`` (K x 68): each output point is a convex combination of input points (one-hot
rows pick a point, averaging rows build eye and mouth centres). Its flip permutation is *derived* from
``FLIP_PERMUTATION_68`` (flipping then selecting equals selecting then flipping with the derived permutation),
so left/right identities stay consistent under augmentation (a flipped image whose points kept their
identities would teach the heatmap head to put the left eye on the right).

Heatmap targets
---------------
For a point ``L_j`` in input pixels, the target heatmap at stride ``s`` is
``H_j(u, v) = exp(-((u - c_x)^2 + (v - c_y)^2) / (2 sigma^2))`` with ``c = round(L_j / s)``, peak 1, truncated to
the square window ``max(|u - c_x|, |v - c_y|) <= 3 sigma``, and all zeros when ``c`` is off the grid. The loss
weight is ``fg_weight`` where the 3x3-dilated ``H_j`` exceeds ``fg_thresh`` and 1 elsewhere. A **missing**
point (NaN, e.g. a face where detection failed) gets weight 0 everywhere: ferkit never trains a heatmap towards
"no point" for a face whose landmarks are unknown (documented fallback; the LightningModule logs the count).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ferkit.core.ibug68 import FLIP_PERMUTATION_68

__all__ = [
    "LandmarkSubset",
    "LANET19",
    "IBUG68",
    "SUBSETS",
    "get_subset",
    "HeatmapTargets",
]


def _derive_flip_perm(weights: np.ndarray, source_perm: np.ndarray, name: str) -> np.ndarray:
    """The permutation ``p`` of the subset rows with ``W[:, source_perm] == W[p]`` (flip, then select)."""
    flipped = weights[:, source_perm]
    perm = np.full(weights.shape[0], -1, dtype=np.int64)
    for r in range(weights.shape[0]):
        match = np.flatnonzero(np.all(np.isclose(weights, flipped[r][None, :]), axis=1))
        if match.size != 1:
            raise ValueError(
                f"landmark subset {name!r}: point {r} has no unique mirror image among the subset's points "
                "(a subset must be closed under the horizontal flip: add the point's left/right partner)"
            )
        perm[r] = match[0]
    return perm


@dataclass(frozen=True)
class LandmarkSubset:
    """A K-point layout computed from a source layout by a fixed linear map.

    Attributes:
        name: registry name.
        weights: float32 [K, S] convex weights (rows sum to 1) from the S source points.
        names: a short name per output point.
        source_flip_perm: the source layout's flip permutation (default: iBUG 68).
        flip_perm: int64 [K], derived: the subset's own flip permutation (an involution).
    """

    name: str
    weights: np.ndarray
    names: tuple[str, ...]
    source_flip_perm: np.ndarray = field(default_factory=lambda: FLIP_PERMUTATION_68.copy())
    flip_perm: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float32)
        if w.ndim != 2 or w.shape[1] != len(self.source_flip_perm):
            raise ValueError(f"subset {self.name!r}: weights must be K x {len(self.source_flip_perm)}, got {w.shape}")
        if len(self.names) != w.shape[0]:
            raise ValueError(f"subset {self.name!r}: {len(self.names)} names for {w.shape[0]} points")
        if np.any(w < 0) or not np.allclose(w.sum(1), 1.0):
            raise ValueError(f"subset {self.name!r}: each row of weights must be non-negative and sum to 1")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "flip_perm", _derive_flip_perm(w, np.asarray(self.source_flip_perm), self.name))

    @property
    def num_points(self) -> int:
        return int(self.weights.shape[0])

    @property
    def num_source_points(self) -> int:
        return int(self.weights.shape[1])

    def __call__(self, points: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Map ``(..., S, 2)`` source points to ``(..., K, 2)``; an output point is NaN if any point it uses is NaN."""
        is_tensor = isinstance(points, torch.Tensor)
        pts = points if is_tensor else torch.as_tensor(np.asarray(points, dtype=np.float32))
        if pts.shape[-2] != self.num_source_points:
            raise ValueError(
                f"subset {self.name!r} maps {self.num_source_points} source points, got {pts.shape[-2]} "
                f"(shape {tuple(pts.shape)})"
            )
        w = torch.as_tensor(self.weights, dtype=pts.dtype if pts.is_floating_point() else torch.float32, device=pts.device)
        pts = pts.to(w.dtype)
        finite = torch.isfinite(pts).all(dim=-1)  # (..., S)
        out = torch.einsum("ks,...sd->...kd", w, torch.nan_to_num(pts, nan=0.0, posinf=0.0, neginf=0.0))
        used_missing = torch.einsum("ks,...s->...k", (w > 0).to(w.dtype), (~finite).to(w.dtype)) > 0
        out = out.masked_fill(used_missing.unsqueeze(-1), float("nan"))
        return out if is_tensor else out.numpy()


def _lanet19() -> LandmarkSubset:
    rows: list[tuple[str, dict[int, float]]] = [
        ("right_brow_outer", {17: 1}), ("right_brow_mid", {19: 1}), ("right_brow_inner", {21: 1}),
        ("left_brow_inner", {22: 1}), ("left_brow_mid", {24: 1}), ("left_brow_outer", {26: 1}),
        ("right_eye_outer", {36: 1}), ("right_eye_centre", {i: 1 / 6 for i in range(36, 42)}), ("right_eye_inner", {39: 1}),
        ("left_eye_inner", {42: 1}), ("left_eye_centre", {i: 1 / 6 for i in range(42, 48)}), ("left_eye_outer", {45: 1}),
        ("nose_right", {31: 1}), ("nose_tip", {30: 1}), ("nose_left", {35: 1}),
        ("mouth_right", {48: 1}), ("mouth_centre", {51: 0.5, 57: 0.5}), ("mouth_left", {54: 1}),
        ("chin", {8: 1}),
    ]
    w = np.zeros((len(rows), 68), dtype=np.float32)
    for r, (_, sel) in enumerate(rows):
        for i, v in sel.items():
            w[r, i] = v
    return LandmarkSubset("lanet19", w, tuple(n for n, _ in rows))


#: the 19-of-68 points used for LA-Net's heatmaps (see the module docstring for the table)
LANET19: LandmarkSubset = _lanet19()
#: the identity subset (all 68 iBUG points)
IBUG68: LandmarkSubset = LandmarkSubset("ibug68", np.eye(68, dtype=np.float32), tuple(f"p{i}" for i in range(68)))
SUBSETS: dict[str, LandmarkSubset] = {"lanet19": LANET19, "ibug68": IBUG68}


def get_subset(subset: str | LandmarkSubset | Sequence[int] | None) -> LandmarkSubset | None:
    """A subset by name (``"lanet19"``, ``"ibug68"``), a :class:`LandmarkSubset`, a list of 68-point indices, or None."""
    if subset is None or isinstance(subset, LandmarkSubset):
        return subset
    if isinstance(subset, str):
        if subset not in SUBSETS:
            raise ValueError(f"unknown landmark subset {subset!r}; available: {sorted(SUBSETS)} or a list of 0..67 indices")
        return SUBSETS[subset]
    idx = [int(i) for i in subset]
    if not idx or min(idx) < 0 or max(idx) > 67:
        raise ValueError(f"a landmark subset given as indices needs values in 0..67, got {idx}")
    w = np.zeros((len(idx), 68), dtype=np.float32)
    w[np.arange(len(idx)), idx] = 1.0
    return LandmarkSubset(f"ibug68[{len(idx)}]", w, tuple(f"p{i}" for i in idx))


class HeatmapTargets:
    """Gaussian heatmap targets and loss weights from landmark coordinates (LA-Net, arXiv 2307.09023).

    Args:
        num_points: points per sample after the subset (19 for LA-Net).
        stride: input pixels per heatmap cell (4 for a ResNet stem with max-pool; 2 with ``small_input``).
        sigma: Gaussian standard deviation in heatmap cells.
        fg_weight: loss weight where the 3x3-dilated target exceeds ``fg_thresh``; 1 elsewhere.
        fg_thresh: foreground threshold.
        subset: optional :class:`LandmarkSubset` (or its name) applied to the input points first, e.g. ``"lanet19"``
            to feed 68-point landmarks. Its flip permutation becomes ``flip_perm`` unless one is given.
        flip_perm: channel permutation used by :meth:`flip` (heatmaps of a mirrored image).

    Call ``targets(landmarks, heatmap_size)`` with ``landmarks`` ``B x P x 2`` (x, y) in input pixels, NaN where
    missing; returns ``(heatmaps, weights)``, each ``B x K x h x w`` float32.
    """

    def __init__(
        self,
        num_points: int = 19,
        stride: int = 4,
        sigma: float = 1.5,
        fg_weight: float = 10.0,
        fg_thresh: float = 0.2,
        subset: str | LandmarkSubset | Sequence[int] | None = None,
        flip_perm: Sequence[int] | None = None,
    ) -> None:
        if stride < 1 or sigma <= 0:
            raise ValueError(f"HeatmapTargets: need stride >= 1 and sigma > 0, got stride={stride}, sigma={sigma}")
        self.subset = get_subset(subset)
        if self.subset is not None and self.subset.num_points != num_points:
            raise ValueError(f"HeatmapTargets: num_points={num_points} but subset {self.subset.name!r} has {self.subset.num_points}")
        self.num_points, self.stride, self.sigma = int(num_points), int(stride), float(sigma)
        self.fg_weight, self.fg_thresh = float(fg_weight), float(fg_thresh)
        if flip_perm is None and self.subset is not None:
            flip_perm = self.subset.flip_perm
        self.flip_perm = None if flip_perm is None else np.asarray(flip_perm, dtype=np.int64)
        if self.flip_perm is not None and sorted(self.flip_perm.tolist()) != list(range(self.num_points)):
            raise ValueError(f"flip_perm must be a permutation of 0..{self.num_points - 1}")

    def __repr__(self) -> str:
        sub = None if self.subset is None else self.subset.name
        return (f"HeatmapTargets(num_points={self.num_points}, stride={self.stride}, sigma={self.sigma}, "
                f"fg_weight={self.fg_weight}, fg_thresh={self.fg_thresh}, subset={sub!r})")

    def points(self, landmarks: torch.Tensor) -> torch.Tensor:
        """Apply the subset (if any) and check the point count: ``B x P x 2 -> B x K x 2``."""
        pts = landmarks if isinstance(landmarks, torch.Tensor) else torch.as_tensor(np.asarray(landmarks, np.float32))
        if pts.dim() != 3 or pts.shape[-1] != 2:
            raise ValueError(f"landmarks must be B x P x 2, got shape {tuple(pts.shape)}")
        if self.subset is not None:
            pts = self.subset(pts)
        if pts.shape[1] != self.num_points:
            raise ValueError(
                f"HeatmapTargets expects {self.num_points} points, got {pts.shape[1]}; pass subset='lanet19' to map "
                "68-point landmarks to LA-Net's 19"
            )
        return pts.float()

    @torch.no_grad()
    def __call__(self, landmarks: torch.Tensor, heatmap_size: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        pts = self.points(landmarks)
        h, w = (heatmap_size, heatmap_size) if isinstance(heatmap_size, int) else heatmap_size
        b, k = pts.shape[:2]
        missing = ~torch.isfinite(pts).all(dim=-1)  # B x K
        centre = torch.round(torch.nan_to_num(pts, nan=-1e6) / self.stride)  # B x K x 2, in heatmap cells
        on_grid = (~missing) & (centre[..., 0] >= 0) & (centre[..., 0] <= w - 1) & (centre[..., 1] >= 0) & (centre[..., 1] <= h - 1)
        u = torch.arange(w, dtype=torch.float32, device=pts.device).view(1, 1, 1, w)
        v = torch.arange(h, dtype=torch.float32, device=pts.device).view(1, 1, h, 1)
        du = u - centre[..., 0].view(b, k, 1, 1)
        dv = v - centre[..., 1].view(b, k, 1, 1)
        heat = torch.exp(-(du**2 + dv**2) / (2 * self.sigma**2))
        window = (du.abs() <= 3 * self.sigma) & (dv.abs() <= 3 * self.sigma)
        heat = heat * window * on_grid.view(b, k, 1, 1)
        dilated = F.max_pool2d(heat.view(b * k, 1, h, w), kernel_size=3, stride=1, padding=1).view(b, k, h, w)
        weight = torch.where(dilated > self.fg_thresh, torch.full_like(heat, self.fg_weight), torch.ones_like(heat))
        weight = weight * (~missing).view(b, k, 1, 1)
        return heat, weight

    def flip(self, heatmaps: torch.Tensor) -> torch.Tensor:
        """Heatmaps of the horizontally mirrored image: flip the width axis and swap left/right channels."""
        if self.flip_perm is None:
            raise ValueError("HeatmapTargets.flip needs flip_perm (or a subset, which provides it)")
        return heatmaps.flip(-1)[:, torch.as_tensor(self.flip_perm, device=heatmaps.device)]
