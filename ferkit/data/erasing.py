"""Erasing a region around a per-sample centre, after the geometric augmentation has moved the centre with the image.

PASM (Liu et al., IEEE TCYB 2022, arXiv 2008.11401) erases, in each training image, a region around the position a
teacher's point adversarial attack found most informative; the same eraser with random centres is ordinary random
erasing, the control that separates *where* from *that* a region is erased.

* :class:`InformativeRegionEraser` is the operation: area / aspect / fill / probability of the erased box, and the
  ``random_centres`` switch.
* :class:`RegionErasingTransform` wraps a data module's training transform (a :class:`FERTransform` or
  :class:`MultiView`): it looks up the sample's centre by dataset index (stored in original-image coordinates),
  passes it through the transform as one more keypoint (so squaring, resizing, flip, shift, scale, rotation and crop
  move it exactly as they move the image and its landmarks), then erases around the moved centre in the main view.
  The item also carries ``region_centre`` (the moved ``(x, y)``; NaN when the sample has no centre). Its random
  draws come from the wrapped transform's per-item generator, so a seeded run erases the same boxes after a resume.
* :func:`save_centres` / :func:`load_centres` read and write a centre file (``int16 [N, 2]`` plus metadata);
  :func:`to_original_coordinates` maps centres found on the model's input back to the raw image.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ferkit.core.errors import DataError
from ferkit.core.ibug68 import FLIP_PERMUTATION_68
from ferkit.data.transforms import FERTransform, MultiView

__all__ = ["InformativeRegionEraser", "RegionErasingTransform", "RecordRawSize", "save_centres", "load_centres",
           "to_original_coordinates", "MISSING_CENTRE"]

#: the int16 value of a centre coordinate that is not known (that sample is not erased)
MISSING_CENTRE = -32768


class InformativeRegionEraser:
    """Erase a box of random area and aspect around a given centre (or a random one).

    Args:
        area: range of the erased fraction of the image area (uniform).
        aspect: range of the box's height / width (log-uniform).
        fill: ``"random"`` (independent standard-normal values, i.e. random in the normalised image) or a number
            (in normalised units: 0.0 is the dataset mean).
        p: probability that a sample is erased.
        random_centres: erase around a uniformly random position instead of the given centre (random erasing).
    """

    def __init__(self, area: Sequence[float] = (0.02, 0.2), aspect: Sequence[float] = (0.3, 3.3),
                 fill: str | float = "random", p: float = 0.5, random_centres: bool = False) -> None:
        area, aspect = tuple(float(a) for a in area), tuple(float(a) for a in aspect)
        if len(area) != 2 or not 0 < area[0] <= area[1] <= 1:
            raise ValueError(f"InformativeRegionEraser: area must be (low, high) with 0 < low <= high <= 1, got {area}")
        if len(aspect) != 2 or not 0 < aspect[0] <= aspect[1]:
            raise ValueError(f"InformativeRegionEraser: aspect must be (low, high) with 0 < low <= high, got {aspect}")
        if not (fill == "random" or isinstance(fill, (int, float))):
            raise ValueError(f"InformativeRegionEraser: fill must be 'random' or a number, got {fill!r}")
        if not 0 <= p <= 1:
            raise ValueError(f"InformativeRegionEraser: p must be in [0, 1], got {p}")
        self.area, self.aspect, self.fill, self.p, self.random_centres = area, aspect, fill, float(p), bool(random_centres)

    def __repr__(self) -> str:
        return (f"InformativeRegionEraser(area={self.area}, aspect={self.aspect}, fill={self.fill!r}, p={self.p}, "
                f"random_centres={self.random_centres})")

    def box(self, centre: Sequence[float] | None, height: int, width: int,
            rng: np.random.Generator) -> tuple[int, int, int, int] | None:
        """``(y0, y1, x0, x1)`` of the box to erase (None: leave the image alone). Draws from ``rng`` in a fixed
        order, so a seeded generator gives the same box."""
        u, s, r = rng.random(), rng.uniform(*self.area), math.exp(rng.uniform(math.log(self.aspect[0]), math.log(self.aspect[1])))
        rx, ry = rng.random(), rng.random()
        if u >= self.p:
            return None
        if self.random_centres:
            cx, cy = rx * width - 0.5, ry * height - 0.5
        elif centre is None or not np.isfinite(np.asarray(centre, np.float64)).all():
            return None
        else:
            cx, cy = float(centre[0]), float(centre[1])
        a = s * height * width
        bh, bw = min(height, max(1, round(math.sqrt(a * r)))), min(width, max(1, round(math.sqrt(a / r))))
        y0, x0 = int(round(cy - (bh - 1) / 2)), int(round(cx - (bw - 1) / 2))
        y0, x0 = min(max(y0, 0), height - bh), min(max(x0, 0), width - bw)  # keep the whole box inside the image
        return y0, y0 + bh, x0, x0 + bw

    def erase(self, image: torch.Tensor, centre: Sequence[float] | None, rng: np.random.Generator) -> torch.Tensor:
        """A copy of ``image`` (``[C, H, W]``, normalised) with the box around ``centre`` (``(x, y)``) filled."""
        c, h, w = image.shape
        box = self.box(centre, h, w, rng)
        if box is None:
            return image
        y0, y1, x0, x1 = box
        out = image.clone()
        if self.fill == "random":
            noise = rng.standard_normal((c, y1 - y0, x1 - x0)).astype(np.float32)
            out[:, y0:y1, x0:x1] = torch.from_numpy(noise).to(out.dtype)
        else:
            out[:, y0:y1, x0:x1] = float(self.fill)
        return out


def _views(transform: Any) -> list[FERTransform]:
    if isinstance(transform, MultiView):
        return list(transform.views.values())
    if isinstance(transform, FERTransform):
        return [transform]
    raise TypeError(f"RegionErasingTransform wraps a ferkit FERTransform or MultiView, got {type(transform).__name__}")


class RegionErasingTransform:
    """A training transform that erases around each sample's centre after the wrapped transform has moved it.

    Args:
        transform: the data module's training transform (:class:`FERTransform` or :class:`MultiView`).
        eraser: the :class:`InformativeRegionEraser`.
        centres: ``[N, 2]`` ``(x, y)`` centres in original-image coordinates, keyed by dataset index (a file written
            by :func:`save_centres` is accepted); may be None when ``eraser.random_centres``.
    """

    def __init__(self, transform: FERTransform | MultiView, eraser: InformativeRegionEraser,
                 centres: np.ndarray | torch.Tensor | str | Path | None = None) -> None:
        self.views = _views(transform)
        self.transform, self.eraser = transform, eraser
        if isinstance(centres, (str, Path)):
            centres = load_centres(centres)["centres"]
        if centres is None and not eraser.random_centres:
            raise ValueError("RegionErasingTransform needs centres (a file from `ferkit pasm` / precompute_centres), "
                             "or an eraser with random_centres=True")
        self.centres = None if centres is None else np.asarray(centres.cpu() if isinstance(centres, torch.Tensor) else centres)
        if self.centres is not None and (self.centres.ndim != 2 or self.centres.shape[1] != 2):
            raise ValueError(f"RegionErasingTransform: centres must be [N, 2], got {self.centres.shape}")

    def __repr__(self) -> str:
        n = None if self.centres is None else len(self.centres)
        return f"RegionErasingTransform({self.transform!r}, {self.eraser!r}, centres for {n} samples)"

    def set_epoch(self, epoch: int) -> None:
        self.transform.set_epoch(epoch)

    def centre_of(self, index: int) -> np.ndarray:
        """The stored centre of sample ``index`` as float ``(x, y)`` (NaN when missing)."""
        if self.centres is None:
            return np.full(2, np.nan, np.float32)
        if not 0 <= index < len(self.centres):
            raise DataError(f"sample {index} has no centre: the centre file covers {len(self.centres)} samples; "
                            "recompute the centres for this training set (same data settings)")
        c = self.centres[index].astype(np.float32)
        c[self.centres[index] == MISSING_CENTRE] = np.nan
        return c

    def _flip_perm(self, view: FERTransform, k: int) -> np.ndarray:
        if k == 0:
            return np.array([0])
        base = view.flip_perm
        if base is None:
            if k != 68:
                raise ValueError(f"flipping {k} landmarks needs flip_perm= on the transform (the default is for iBUG 68)")
            base = FLIP_PERMUTATION_68
        return np.concatenate([np.asarray(base), [k]])

    def __call__(self, image: np.ndarray, landmarks: np.ndarray | None = None, index: int | None = None) -> dict:
        if index is None:
            raise ValueError("RegionErasingTransform needs the sample index (ferkit datasets pass it)")
        centre = self.centre_of(int(index))
        k = 0 if landmarks is None else len(landmarks)
        pts = centre[None] if landmarks is None else np.concatenate([np.asarray(landmarks, np.float32), centre[None]])
        saved = [v.flip_perm for v in self.views]
        try:
            for v in self.views:  # the centre is one more keypoint: it maps to itself on a flip
                v.flip_perm = self._flip_perm(v, k)
            out = self.transform(image=image, landmarks=pts, index=index)
        finally:
            for v, perm in zip(self.views, saved):
                v.flip_perm = perm
        moved = out["landmarks"][-1].clone()
        for key in [key for key in out if key.startswith("landmarks")]:
            if k:
                out[key] = out[key][:-1]
            else:
                del out[key]
        rng = self.views[0]._rng  # the main view's per-item generator, already seeded for this (epoch, index)
        out["image"] = self.eraser.erase(out["image"], moved.tolist(), rng)
        out["region_centre"] = moved
        return out


class RecordRawSize:
    """Wrap a transform so each item also carries ``raw_size`` (the raw image's ``(height, width)``), which
    :func:`to_original_coordinates` needs to map a position found on the model input back to the raw image."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, image: np.ndarray, landmarks: np.ndarray | None = None, **kwargs: Any) -> dict:
        out = self.transform(image=image, landmarks=landmarks, **kwargs)
        out["raw_size"] = torch.tensor(np.asarray(image).shape[:2], dtype=torch.long)
        return out


def to_original_coordinates(points: torch.Tensor, sizes: torch.Tensor, img_size: int, resize: str = "squash") -> torch.Tensor:
    """Map ``(x, y)`` points ``[B, 2]`` on the ``img_size`` model input back to raw images of ``sizes`` ``[B, 2]``
    (height, width), inverting :class:`FERTransform`'s squaring (``resize``) and its pixel-centre exact resize."""
    p, hw = points.double(), sizes.double()
    h, w = hw[:, 0], hw[:, 1]
    if resize == "squash":
        sx, sy, ox, oy = w, h, torch.zeros_like(w), torch.zeros_like(h)
    elif resize == "center_crop":
        s = torch.minimum(h, w)
        sx, sy, ox, oy = s, s, torch.div(w - s, 2, rounding_mode="floor"), torch.div(h - s, 2, rounding_mode="floor")
    elif resize == "pad":
        s = torch.maximum(h, w)
        sx, sy, ox, oy = s, s, -torch.div(s - w, 2, rounding_mode="floor"), -torch.div(s - h, 2, rounding_mode="floor")
    else:
        raise ValueError(f"resize must be 'squash', 'center_crop' or 'pad', got {resize!r}")
    x = (p[:, 0] + 0.5) * sx / img_size - 0.5 + ox
    y = (p[:, 1] + 0.5) * sy / img_size - 0.5 + oy
    return torch.stack([x, y], dim=1)


def save_centres(path: str | Path, centres: torch.Tensor | np.ndarray, **meta: Any) -> Path:
    """Write ``int16 [N, 2]`` centres (original-image ``(x, y)``, keyed by dataset index) and plain metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    c = torch.as_tensor(np.asarray(centres)).round().clamp(-32768, 32767).to(torch.int16)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"centres": c, "meta": dict(meta)}, tmp)
    tmp.replace(path)  # a killed run never leaves a half-written centre file
    return path


def load_centres(path: str | Path) -> dict[str, Any]:
    """``{"centres": int16 [N, 2] numpy, "meta": dict}`` from a file written by :func:`save_centres`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"centre file {path} does not exist; compute it with `ferkit pasm` (or PASM's precompute_centres)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        centres = blob["centres"]
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise DataError(f"{path}: not a centre file written by ferkit.data.erasing.save_centres ({exc})") from exc
    if centres.ndim != 2 or centres.shape[1] != 2:
        raise DataError(f"{path}: centres must be [N, 2], got {tuple(centres.shape)}")
    return {"centres": centres.numpy(), "meta": dict(blob.get("meta") or {})}
