"""Image (+ landmark) transforms built on albumentations, with named presets.

Every transform is a callable ``t(image=uint8 HxW[x3], landmarks=float [K,2] | None) -> dict`` returning
``{"image": float tensor C x H x W, "landmarks": float tensor K x 2}`` (landmarks only when given), so datasets
stay agnostic of augmentation. Landmarks follow every geometric step; the horizontal flip is done here (not by
albumentations) because a flip must also swap left/right point identities (``ferkit.core.ibug68``).
"""
from __future__ import annotations

from typing import Callable, Sequence

import albumentations as A
import cv2
import numpy as np
import torch

from ferkit.core.ibug68 import FLIP_PERMUTATION_68

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Geometric steps use constant borders: with reflected borders albumentations also reflects keypoints
# (one landmark becomes nine), which would break the landmark contract.
# preset name -> builder(img_size) -> list of albumentations transforms applied after resize/flip.
_PRESETS: dict[str, Callable[[int], list]] = {}


def register_preset(name: str):
    """Register an augmentation preset: ``builder(img_size) -> list[albumentations transform]``."""

    def deco(fn):
        _PRESETS[name] = fn
        return fn

    return deco


def available_presets() -> list[str]:
    return sorted(_PRESETS)


@register_preset("eval")
def _eval(img_size: int) -> list:
    return []


@register_preset("default")
def _default(img_size: int) -> list:
    # mild geometric + photometric jitter: a sensible default for faces of any dataset
    shift = 4.0 / 48.0
    return [
        A.Affine(translate_percent=(-shift, shift), scale=(0.95, 1.05), rotate=(-10, 10), border_mode=cv2.BORDER_CONSTANT, p=0.8),
        A.RandomBrightnessContrast(0.2, 0.2, p=0.5),
    ]


@register_preset("shift")
def _shift(img_size: int) -> list:
    # flip + 4 px shift at 48 px: the FER+ CPU floor recipe of shared/data/README.md
    shift = 4.0 / 48.0
    return [A.Affine(translate_percent=(-shift, shift), border_mode=cv2.BORDER_CONSTANT, p=1.0)]


@register_preset("arm")
def _arm(img_size: int) -> list:
    # ARM paper (§1.3): flip is handled separately; Gaussian noise (variance 30 in 0..255 units) and random erasing
    return [
        A.GaussNoise(std_range=(np.sqrt(30.0) / 255.0, np.sqrt(30.0) / 255.0), p=0.25),
        A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.14, 0.32), hole_width_range=(0.14, 0.32), fill="random", p=0.5),
    ]


@register_preset("weak")
def _weak(img_size: int) -> list:
    # ASM/MAN weak view (§2.3): with p=0.5 colour jitter + affine; random erasing
    return [
        A.Sequential([
            A.ColorJitter(0.25, 0.25, 0.25, 0.25, p=1.0),
            A.Affine(translate_percent=(-0.1, 0.1), scale=(1.0, 1.25), border_mode=cv2.BORDER_CONSTANT, p=1.0),
        ], p=0.5),
        A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.14, 0.5), hole_width_range=(0.14, 0.5), fill=0, p=0.5),
    ]


@register_preset("strong")
def _strong(img_size: int) -> list:
    # ASM/MAN strong view (§2.3): pad-4 random crop + RandAugment(2, 10)-like: two random ops at high magnitude
    pad = max(1, round(4 * img_size / 224 * 4)) if img_size < 224 else 4
    ops = [
        A.Affine(rotate=(-30, 30), border_mode=cv2.BORDER_CONSTANT, p=1.0),
        A.Affine(shear=(-17, 17), border_mode=cv2.BORDER_CONSTANT, p=1.0),
        A.Affine(translate_percent=(-0.15, 0.15), border_mode=cv2.BORDER_CONSTANT, p=1.0),
        A.RandomBrightnessContrast(0.5, 0.5, p=1.0),
        A.Equalize(p=1.0),
        A.Posterize(num_bits=4, p=1.0),
        A.Solarize(threshold_range=(0.5, 0.5), p=1.0),
        A.Sharpen(p=1.0),
        A.ColorJitter(0, 0, 0.9, 0, p=1.0),
        A.AutoContrast(p=1.0),
    ]
    return [
        A.PadIfNeeded(img_size + 2 * pad, img_size + 2 * pad, border_mode=cv2.BORDER_CONSTANT),
        A.RandomCrop(img_size, img_size),
        A.SomeOf(ops, n=2, replace=False, p=1.0),
    ]


class FERTransform:
    """Resize, (train) flip + preset augmentation, channel handling, normalisation, to tensor.

    Args:
        img_size: output side in pixels (square).
        channels: 1 (grayscale) or 3; RGB input is converted to gray for 1, gray is replicated for 3.
        preset: a registered preset name (``available_presets()``); ``"eval"`` does no augmentation.
        hflip: probability of a horizontal flip (0 for evaluation).
        mean, std: normalisation; defaults are ImageNet's for 3 channels and 0.5/0.5 for 1.
        flip_perm: landmark permutation applied on flip (default iBUG 68; required for other layouts).
        seed: optional seed for a private RNG (reproducible single-process augmentation in tests).
    """

    def __init__(
        self,
        img_size: int = 112,
        channels: int = 3,
        preset: str = "eval",
        hflip: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        flip_perm: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if preset not in _PRESETS:
            raise ValueError(f"unknown transform preset {preset!r}; available: {available_presets()}")
        self.img_size, self.channels, self.preset, self.hflip = int(img_size), channels, preset, float(hflip)
        self.mean = np.asarray(mean if mean is not None else (IMAGENET_MEAN if channels == 3 else (0.5,)), np.float32)
        self.std = np.asarray(std if std is not None else (IMAGENET_STD if channels == 3 else (0.5,)), np.float32)
        if self.mean.size != channels or self.std.size != channels:
            raise ValueError(f"mean/std need {channels} values, got {self.mean.tolist()} / {self.std.tolist()}")
        self.flip_perm = None if flip_perm is None else np.asarray(flip_perm)
        self._rng = np.random.default_rng(seed)
        steps = _PRESETS[preset](self.img_size)
        self.aug = A.Compose(steps, keypoint_params=A.KeypointParams(format="xy", remove_invisible=False)) if steps else A.Compose([])
        if seed is not None:
            self.aug.set_random_seed(seed)
        self._seeded = seed is not None
        self._worker_id: int | None = None

    def __repr__(self) -> str:
        return f"FERTransform(img_size={self.img_size}, channels={self.channels}, preset={self.preset!r}, hflip={self.hflip})"

    def _to_channels(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 2:
            image = image[:, :, None]
        if image.shape[2] == 4:
            image = image[:, :, :3]
        if self.channels == 1 and image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
        elif self.channels == 3 and image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        return image

    def _reseed_in_worker(self) -> None:
        # DataLoader workers are forked copies: without reseeding every worker would draw the same augmentations.
        info = torch.utils.data.get_worker_info()
        if info is not None and info.id != self._worker_id and not self._seeded:
            self._worker_id = info.id
            self._rng = np.random.default_rng(info.seed)
            self.aug.set_random_seed(int(info.seed % 2**32))

    def __call__(self, image: np.ndarray, landmarks: np.ndarray | None = None) -> dict:
        self._reseed_in_worker()
        image = self._to_channels(np.asarray(image))
        h, w = image.shape[:2]
        pts = None if landmarks is None else np.asarray(landmarks, np.float32).copy()
        missing = None
        if pts is not None:
            missing = ~np.isfinite(pts).all(axis=1)
            pts[missing] = 0.0
        # resize first so augmentation magnitudes are in output pixels; map pixel centres exactly
        if (h, w) != (self.img_size, self.img_size):
            image = cv2.resize(image, (self.img_size, self.img_size), interpolation=cv2.INTER_AREA if h > self.img_size else cv2.INTER_LINEAR)
            if image.ndim == 2:
                image = image[:, :, None]
            if pts is not None:
                pts[:, 0] = (pts[:, 0] + 0.5) * self.img_size / w - 0.5
                pts[:, 1] = (pts[:, 1] + 0.5) * self.img_size / h - 0.5
        if self.hflip > 0 and self._rng.random() < self.hflip:
            image = np.ascontiguousarray(image[:, ::-1])
            if pts is not None:
                perm = self.flip_perm
                if perm is None:
                    if len(pts) != 68:
                        raise ValueError(f"flipping {len(pts)} landmarks needs flip_perm= (the default permutation is for iBUG 68)")
                    perm = FLIP_PERMUTATION_68
                pts[:, 0] = (self.img_size - 1) - pts[:, 0]
                pts, missing = pts[perm], missing[perm]
        if self.aug.transforms:
            out = self.aug(image=image, keypoints=pts if pts is not None else np.zeros((0, 2), np.float32))
            image = out["image"]
            if pts is not None:
                pts = np.asarray(out["keypoints"], np.float32)[:, :2].copy()
        if image.ndim == 2:
            image = image[:, :, None]
        x = (image.astype(np.float32) / 255.0 - self.mean) / self.std
        result = {"image": torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))}
        if pts is not None:
            pts[missing] = np.nan
            result["landmarks"] = torch.from_numpy(pts)
        return result


class MultiView:
    """Several independently augmented views of one image: ``{"image": ..., "image_strong": ...}``.

    The first view's landmarks are returned as ``landmarks``; other views' as ``landmarks_<name>``.
    """

    def __init__(self, views: dict[str, FERTransform]) -> None:
        if "image" not in views:
            raise ValueError("MultiView needs an 'image' view (the main one)")
        self.views = views

    def __call__(self, image: np.ndarray, landmarks: np.ndarray | None = None) -> dict:
        out: dict = {}
        for name, t in self.views.items():
            res = t(image=image, landmarks=landmarks)
            out[name] = res["image"]
            if "landmarks" in res:
                out["landmarks" if name == "image" else f"landmarks_{name.removeprefix('image_')}"] = res["landmarks"]
        return out
