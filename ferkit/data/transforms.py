"""Image (+ landmark) transforms built on albumentations, with named presets.

Every transform is a callable ``t(image=uint8 HxW[x3], landmarks=float [K,2] | None) -> dict`` returning
``{"image": float tensor C x H x W, "landmarks": float tensor K x 2}`` (landmarks only when given), so datasets
stay agnostic of augmentation. Landmarks follow every geometric step.

Which steps are albumentations and which are ours: the presets' augmentations, the normalisation and the
conversion to a tensor are albumentations (``A.Normalize``, ``ToTensorV2``). The square-making step (squash / centre crop / pad), the resize and the horizontal flip stay here: the flip must
also swap left/right point identities (``ferkit.core.ibug68``), and ``A.KeypointParams`` of the installed
albumentations (2.0) has no ``label_mapping`` to do that; our resize maps pixel *centres* exactly
(``x' = (x + 0.5) * s - 0.5``) where ``A.Resize`` scales keypoint coordinates as corners, which would move
landmarks up to half an output pixel off the resized image content.

Randomness (reproducible runs): each transform draws its flips and albumentations' parameters from a private
generator seeded, on first use in each process, from ``(base, rank, worker id, stream)``: ``base`` is the
``seed`` argument if given, else inside a DataLoader worker that worker's seed (which derives from the main
process's torch RNG, so ``L.seed_everything`` fixes it and every worker of every epoch gets its own stream),
else ``torch.initial_seed()``. ``rank`` (the distributed rank) makes DDP ranks differ, ``stream`` keeps two
transforms of one process (the weak and the strong view) apart. Nothing draws from OS entropy.
"""
from __future__ import annotations

import logging
import os
import zlib
from typing import Callable, Sequence

import albumentations as A
from albumentations.pytorch import ToTensorV2
import cv2
import numpy as np
import torch
import torch.distributed as dist

from ferkit.core.ibug68 import FLIP_PERMUTATION_68

RESIZE_MODES: tuple[str, ...] = ("squash", "center_crop", "pad")

log = logging.getLogger(__name__)

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
    # ARM (Shi et al., arXiv 2103.10189): flip is handled separately; Gaussian noise (variance 30 in 0..255 units) and random erasing
    return [
        A.GaussNoise(std_range=(np.sqrt(30.0) / 255.0, np.sqrt(30.0) / 255.0), p=0.25),
        A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.14, 0.32), hole_width_range=(0.14, 0.32), fill="random", p=0.5),
    ]


@register_preset("weak")
def _weak(img_size: int) -> list:
    # ASM / MAN weak view (Zhang et al., arXiv 2310.05618): with p=0.5 colour jitter + affine; random erasing
    return [
        A.Sequential([
            A.ColorJitter(0.25, 0.25, 0.25, 0.25, p=1.0),
            A.Affine(translate_percent=(-0.1, 0.1), scale=(1.0, 1.25), border_mode=cv2.BORDER_CONSTANT, p=1.0),
        ], p=0.5),
        A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.14, 0.5), hole_width_range=(0.14, 0.5), fill=0, p=0.5),
    ]


@register_preset("strong")
def _strong(img_size: int) -> list:
    # ASM / MAN strong view (Zhang et al., arXiv 2310.05618): pad-4 random crop + RandAugment(2, 10)-like: two random ops at high magnitude
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
        seed: base seed of the private RNG; None (default) follows torch's seed (see the module docstring).
        stream: a name that keeps this transform's random stream apart from other transforms of the process.
        resize: how a non-square image becomes square: ``"squash"`` (resize both sides, distorting the aspect
            ratio), ``"center_crop"`` (crop the longer side to the shorter, centred) or ``"pad"`` (pad the shorter
            side with black, centred). Square images are unaffected.
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
        stream: str = "",
        resize: str = "squash",
    ) -> None:
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
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
        self.seed, self.stream, self.resize = seed, str(stream), resize
        steps = _PRESETS[preset](self.img_size)
        self.aug = A.Compose(steps, keypoint_params=A.KeypointParams(format="xy", remove_invisible=False)) if steps else A.Compose([])
        # normalise and HWC uint8 -> CHW float tensor: albumentations' own steps (deterministic, no seeding needed)
        self.to_tensor = A.Compose([A.Normalize(mean=self.mean.tolist(), std=self.std.tolist(), max_pixel_value=255.0),
                                    ToTensorV2()])
        self._rng: np.random.Generator | None = None
        self._seeded_for: tuple | None = None  # (pid, worker id, base seed) the RNG was seeded for
        self._rank_hint: int | None = None
        self._told_resize = False

    def __repr__(self) -> str:
        return (f"FERTransform(img_size={self.img_size}, channels={self.channels}, preset={self.preset!r}, "
                f"hflip={self.hflip}, resize={self.resize!r})")

    def __getstate__(self) -> dict:
        # a worker started with "spawn" has no process group: carry the rank over
        state = dict(self.__dict__)
        state["_rank_hint"] = _global_rank(self._rank_hint)
        return state

    def reseed(self) -> None:
        """Seed the private generators for this process (called on first use; see the module docstring)."""
        info = torch.utils.data.get_worker_info()
        if self.seed is not None:
            base = int(self.seed)
        elif info is not None:
            base = int(info.seed)
        else:
            base = int(torch.initial_seed())
        key = (os.getpid(), None if info is None else info.id, base)
        worker = 0 if info is None else info.id + 1
        seq = np.random.SeedSequence([base % 2**63, _global_rank(self._rank_hint), worker, zlib.crc32(self.stream.encode())])
        self._rng = np.random.default_rng(seq)
        self.aug.set_random_seed(int(seq.generate_state(1)[0]))
        self._seeded_for = key

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

    def _ensure_seeded(self) -> None:
        # DataLoader workers are copies of this object: each must reseed, or all would draw the same augmentations.
        info = torch.utils.data.get_worker_info()
        pid = os.getpid()
        if self._seeded_for is None or self._seeded_for[0] != pid or self._seeded_for[1] != (None if info is None else info.id):
            self.reseed()
        elif info is None and self.seed is None and self._seeded_for[2] != torch.initial_seed():
            self.reseed()  # the process was re-seeded (seed_everything) since: follow it

    def _square(self, image: np.ndarray, pts: np.ndarray | None) -> np.ndarray:
        h, w = image.shape[:2]
        if h == w:
            return image
        if not self._told_resize:
            self._told_resize = True
            log.info("non-square %dx%d images are made square by resize=%r (choices: %s)", w, h, self.resize,
                     ", ".join(RESIZE_MODES))
        if self.resize == "squash":
            return image
        if self.resize == "center_crop":
            s = min(h, w)
            y0, x0 = (h - s) // 2, (w - s) // 2
            image = image[y0:y0 + s, x0:x0 + s]
            if pts is not None:
                pts -= np.array([x0, y0], np.float32)
            return np.ascontiguousarray(image)
        s = max(h, w)
        y0, x0 = (s - h) // 2, (s - w) // 2
        out = np.zeros((s, s) + image.shape[2:], image.dtype)
        out[y0:y0 + h, x0:x0 + w] = image
        if pts is not None:
            pts += np.array([x0, y0], np.float32)
        return out

    def __call__(self, image: np.ndarray, landmarks: np.ndarray | None = None) -> dict:
        self._ensure_seeded()
        image = self._to_channels(np.asarray(image))
        pts = None if landmarks is None else np.asarray(landmarks, np.float32).copy()
        missing = None
        if pts is not None:
            missing = ~np.isfinite(pts).all(axis=1)
            pts[missing] = 0.0
        image = self._square(image, pts)
        if image.ndim == 2:
            image = image[:, :, None]
        h, w = image.shape[:2]
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
        result = {"image": self.to_tensor(image=image)["image"]}
        if pts is not None:
            pts[missing] = np.nan
            result["landmarks"] = torch.from_numpy(pts)
        return result


def _global_rank(hint: int | None = None) -> int:
    """The distributed rank of this process: the process group's, else ``hint``, else ``$RANK``, else 0."""
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    if hint is not None:
        return int(hint)
    return int(os.environ.get("RANK", 0))


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
