"""Procedurally generated faces: ferkit's embedded default data set (no files, no downloads).

Generative model, in order (all per-sample parameters are drawn vectorised in ``__init__``; pixels are
rendered on demand by :meth:`SyntheticFaces.load_image`):

1. **Label** -- balanced over the canonical classes (angry, disgust, fear, happy, sad, surprise, neutral, and
   contempt as class 7 when ``num_classes=8``), or drawn in proportion to ``class_weights``.
2. **Expression** -- a vector of 14 facial action intensities (:data:`ACTION_UNITS`, loosely after FACS:
   brow raise/lower, lid raise/tighten, nose wrinkle, lip-corner pull/depress, lip stretch/press, jaw drop,
   ...). Each class has a prototype (:data:`EXPRESSION_PROTOTYPES`); a sample's vector is the prototype times
   an intensity, plus per-action jitter. Some samples are *weak* (low intensity, close to neutral) and some
   are *blends* (part of another class's prototype mixed in, the label staying the dominant class), so the
   task is learnable but not trivial. :attr:`SyntheticFaces.ambiguous` flags both kinds.
3. **Identity** -- face proportions (jaw height and squareness, eye spacing/size/tilt, brow height, arch and
   thickness, nose length/width, mouth position/width, lip thickness), skin tone, hair colour and style,
   iris colour.
4. **Landmarks** -- a parametric 68-point model in the iBUG 300-W order (:mod:`ferkit.core.ibug68`): each
   part (jaw, brows, eyes, nose, lips) is built from the identity parameters and deformed by the actions,
   each point carries a depth, and the 3-D points are posed (yaw and pitch by rotation, then orthographic
   projection, in-plane roll, scale, translation). ``landmarks[i]`` are exactly the points the image of
   sample i is drawn from, in pixel coordinates (x, y) with pixel centres at integer coordinates.
5. **Rendering** -- cv2 anti-aliased polygons from the landmarks: background colour and clutter, clothes,
   neck, hair, ears, skin, eyes (sclera, iris clipped by the lids, lid lines), brows, nose, lips, open mouth
   and teeth; then illumination (a linear light gradient, brightness, contrast, colour cast), optional blur,
   and Gaussian pixel noise. ``difficulty`` scales all nuisance ranges (pose, scale, translation, lighting,
   clutter, blur, noise); ``ambiguity`` scales the weak/blended samples and the expression jitter.

Determinism: everything derives from ``numpy.random.SeedSequence((seed, split))``; the splits "train", "val"
and "test" use disjoint streams; rendering uses a per-sample seed, so ``load_image(i)`` is random-access,
DataLoader-worker safe and bit-identical across calls and processes. Changing ``num_samples`` redraws all
samples (sample i of a 100-sample set is not sample i of a 4000-sample set).
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import cv2
import numpy as np

from ferkit.core.labels import LabelSpace
from ferkit.data.base import FERDataset
from ferkit.data.synthetic.face_model import FaceModel
from ferkit.data.synthetic.render import FaceRenderer

log = logging.getLogger(__name__)

__all__ = ["SPLITS", "SyntheticFaces"]

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}


class SyntheticFaces(FaceModel, FaceRenderer, FERDataset):
    """Procedurally generated expressive faces with exact 68-point landmarks (see the module docstring).

    Args:
        num_samples: number of faces.
        split: "train", "val" or "test"; each split is an independent random stream.
        image_size: side of the square images in pixels.
        num_classes: 7 (basic emotions) or 8 (with contempt, an asymmetric mouth).
        seed: base seed; (seed, split) determines every image and label bit for bit.
        grayscale: return HxW images instead of HxWx3 RGB.
        transform: applied by :class:`~ferkit.data.base.FERDataset.__getitem__`.
        difficulty: scales the nuisance variation (pose, scale, translation, lighting, clutter, blur, noise);
            0 gives frontal, centred, clean faces.
        ambiguity: scales the share of weak and blended expressions and the expression jitter; 0 gives
            full-intensity prototypes only.
        class_weights: relative class frequencies (length ``num_classes``); balanced when None.
        cache: keep rendered images in memory after their first use.

    Attributes (besides the :class:`FERDataset` arrays ``labels``, ``landmarks`` [N, 68, 2], ``ids``):
        action_units: float32 [N, 14] expression action intensities (:data:`ACTION_UNITS`).
        intensity: float32 [N] the scale applied to the class prototype.
        ambiguous: bool [N] weak or blended expressions.
    """

    def __init__(
        self,
        num_samples: int = 4000,
        split: str = "train",
        image_size: int = 64,
        num_classes: int = 7,
        seed: int = 0,
        grayscale: bool = False,
        transform: Callable[..., dict] | None = None,
        difficulty: float = 1.0,
        ambiguity: float = 1.0,
        class_weights: Sequence[float] | None = None,
        cache: bool = False,
    ) -> None:
        if num_classes not in (7, 8):
            raise ValueError(f"SyntheticFaces: num_classes must be 7 or 8 (8 adds contempt), got {num_classes}")
        if split not in SPLITS:
            raise ValueError(f"SyntheticFaces: unknown split {split!r}; use one of {sorted(SPLITS)}")
        if int(num_samples) < 1:
            raise ValueError(f"SyntheticFaces: num_samples must be >= 1, got {num_samples}")
        if int(image_size) < 24:
            raise ValueError(f"SyntheticFaces: image_size must be >= 24 pixels, got {image_size}")
        if not 0.0 <= difficulty <= 3.0:
            raise ValueError(f"SyntheticFaces: difficulty must be in [0, 3], got {difficulty}")
        if not 0.0 <= ambiguity <= 3.0:
            raise ValueError(f"SyntheticFaces: ambiguity must be in [0, 3], got {ambiguity}")
        super().__init__(LabelSpace.basic(num_classes), transform)
        self.num_samples = n = int(num_samples)
        self.split = split
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.grayscale = bool(grayscale)
        self.difficulty = float(difficulty)
        self.ambiguity = float(ambiguity)
        self.cache = bool(cache)
        self._cache: dict[int, np.ndarray] = {}
        self._bank: np.ndarray | None = None

        streams = np.random.SeedSequence([self.seed, 0x5EED, SPLITS[split]]).spawn(6)
        rng_label, rng_expr, rng_ident, rng_pose, rng_look, rng_render = (np.random.default_rng(s) for s in streams)

        self.labels = self._draw_labels(rng_label, n, num_classes, class_weights)
        self.action_units, self.intensity, self.ambiguous, self._side = self._draw_expressions(rng_expr, self.labels)
        self._ident = self._draw_identity(rng_ident, n)
        self._xyz = self._template(self._ident, self.action_units, self._side).astype(np.float32)
        self._pose = self._draw_pose(rng_pose, n)
        self.landmarks = self._fit_pose_and_project()
        self._look = self._draw_appearance(rng_look, n)
        self._extra, self._extra_slices = self._extra_geometry()
        self._draw_matrix, self._draw_layout = self._drawing_matrix()
        self._colour_table = self._colours()
        del self._xyz                      # 3-D template points: only needed to build the 2-D geometry above
        self._render_seeds = rng_render.integers(0, 2**63 - 1, size=n, dtype=np.int64)
        self.ids = [f"synthetic:{split}:{i}" for i in range(n)]
        s = self.image_size
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        self._grid = ((xx - (s - 1) / 2) / (s / 2), (yy - (s - 1) / 2) / (s / 2))
        self.check_labels(f"SyntheticFaces(split={split!r}, seed={seed})")

    # -- per-sample parameters (vectorised) ------------------------------------------------------------

    # -- rendering ---------------------------------------------------------------------------------------
    def load_image(self, index: int) -> np.ndarray:
        """Render sample ``index`` (uint8 HxWx3 RGB, or HxW when ``grayscale``)."""
        i = int(index)
        if not 0 <= i < self.num_samples:
            raise IndexError(f"SyntheticFaces: index {index} out of range for {self.num_samples} samples")
        if self.cache and i in self._cache:
            return self._cache[i].copy()
        img = self._render(i)
        if self.grayscale:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if self.cache:
            self._cache[i] = img.copy()
        return img

    @classmethod
    def describe(cls) -> str:
        """A short description of the generative model (the module docstring)."""
        return __doc__ or ""

    def __repr__(self) -> str:
        return (f"SyntheticFaces(num_samples={self.num_samples}, split={self.split!r}, image_size={self.image_size}, "
                f"num_classes={self.num_classes}, seed={self.seed}, difficulty={self.difficulty}, "
                f"ambiguity={self.ambiguity})")

