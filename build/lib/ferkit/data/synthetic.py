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

import functools
import logging
from typing import Callable, Mapping, Sequence

import cv2
import numpy as np

from ferkit.data.base import FERDataset
from ferkit.core.labels import LabelSpace

log = logging.getLogger(__name__)

__all__ = ["SyntheticFaces", "ACTION_UNITS", "EXPRESSION_PROTOTYPES", "SPLITS", "contact_sheet"]

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}

ACTION_UNITS: tuple[str, ...] = (
    "inner_brow_raise",        # AU1
    "outer_brow_raise",        # AU2
    "brow_lower",              # AU4: down and together
    "upper_lid_raise",         # AU5: eyes wide
    "lid_tighten",             # AU6/7: narrowed eyes (smile, squint)
    "nose_wrinkle",            # AU9
    "upper_lip_raise",         # AU10
    "lip_corner_pull",         # AU12: smile
    "lip_corner_depress",      # AU15
    "lip_stretch",             # AU20: horizontal stretch
    "lip_press",               # AU23/24: thin, narrow, closed lips
    "jaw_drop",                # AU26/27: open mouth, lowered chin
    "chin_raise",              # AU17: lower lip pushed up, arched mouth
    "unilateral_corner_pull",  # AU14 on one side (contempt)
)
_AU = {name: k for k, name in enumerate(ACTION_UNITS)}

EXPRESSION_PROTOTYPES: dict[str, dict[str, float]] = {
    "angry": {"brow_lower": 1.0, "upper_lid_raise": 0.35, "lid_tighten": 0.45, "lip_press": 1.0, "chin_raise": 0.5},
    "disgust": {"nose_wrinkle": 1.0, "upper_lip_raise": 1.0, "brow_lower": 0.5, "lid_tighten": 0.5,
                "lip_corner_depress": 0.4, "chin_raise": 0.3},
    "fear": {"inner_brow_raise": 1.0, "outer_brow_raise": 0.5, "brow_lower": 0.45, "upper_lid_raise": 1.0,
             "lip_stretch": 1.0, "jaw_drop": 0.45},
    "happy": {"lid_tighten": 0.6, "lip_corner_pull": 1.0, "jaw_drop": 0.35, "upper_lip_raise": 0.15},
    "sad": {"inner_brow_raise": 1.0, "brow_lower": 0.35, "lid_tighten": 0.25, "lip_corner_depress": 1.0,
            "chin_raise": 0.6},
    "surprise": {"inner_brow_raise": 1.0, "outer_brow_raise": 1.0, "upper_lid_raise": 1.0, "jaw_drop": 1.0},
    "neutral": {},
    "contempt": {"unilateral_corner_pull": 1.0, "lid_tighten": 0.15},
}

# Palettes (RGB).
_SKIN_STOPS = np.array([[242, 208, 184], [214, 164, 128], [168, 114, 80], [104, 68, 48]], np.float32)
_HAIR = np.array([[28, 24, 22], [64, 42, 28], [112, 74, 42], [196, 156, 96], [150, 62, 32], [168, 166, 160]],
                 np.float32)
_HAIR_P = np.array([0.3, 0.25, 0.2, 0.1, 0.07, 0.08])
_IRIS = np.array([[92, 58, 34], [42, 32, 26], [70, 110, 150], [84, 112, 74], [122, 96, 52]], np.float32)
_IRIS_P = np.array([0.4, 0.25, 0.15, 0.1, 0.1])
_SCLERA = (236, 232, 226)
_TEETH = (236, 232, 218)
_CAVITY = (58, 22, 26)
_PUPIL = (18, 14, 14)
_COLOURS = ("skin", "neck", "ear", "clothes", "hair", "iris", "lid_upper", "lid_lower", "brow", "bridge", "nose",
            "nostril", "lip", "lip_line")
_CENTER_Y = 0.3     # template y (eye line 0, face half-width 1) that maps to the image centre
_FIXED = 16         # cv2 fixed-point factor (shift=4)


@functools.lru_cache(maxsize=None)
def _catmull_rom_matrix(k: int, closed: bool, n: int) -> np.ndarray:
    """The linear map from K control points to a uniform Catmull-Rom curve with ``n`` points per segment."""
    p = np.eye(k)
    if closed:
        q = np.concatenate([p[-1:], p, p[:2]])
    else:
        q = np.concatenate([2 * p[:1] - p[1:2], p, 2 * p[-1:] - p[-2:-1]])
    t = (np.arange(n) / n)[None, :, None]
    p0, p1, p2, p3 = (x[:, None, :] for x in (q[:-3], q[1:-2], q[2:-1], q[3:]))
    curve = 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                   + (3 * p1 - p0 - 3 * p2 + p3) * t**3)
    curve = curve.reshape(-1, k)
    return curve if closed else np.concatenate([curve, p[-1:]])


def _catmull_rom(p: np.ndarray, closed: bool, n: int = 4) -> np.ndarray:
    """Uniform Catmull-Rom curve through the rows of ``p`` ([K, 2]), ``n`` points per segment."""
    return _catmull_rom_matrix(len(p), closed, n) @ p


def _fx(p: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> cv2 fixed-point int32 polygon."""
    return np.rint(p * _FIXED).astype(np.int32).reshape(-1, 1, 2)


def _project(xyz: np.ndarray, pose: Mapping[str, np.ndarray], centre: float) -> np.ndarray:
    """Pose template points ``xyz`` [N, K, 3] with per-sample ``pose`` arrays [N] -> pixels [N, K, 2].

    Yaw (about the vertical axis) and pitch are 3-D rotations followed by an orthographic projection, so
    features shift and the far side of the face compresses; then in-plane roll, scale and translation.
    """
    col = {k: np.asarray(v, np.float64)[:, None] for k, v in pose.items()}
    x, y, z = xyz[..., 0], xyz[..., 1] - _CENTER_Y, xyz[..., 2]
    cyaw, syaw = np.cos(col["yaw"]), np.sin(col["yaw"])
    x1, z1 = x * cyaw + z * syaw, -x * syaw + z * cyaw
    cp, sp = np.cos(col["pitch"]), np.sin(col["pitch"])
    y1 = y * cp - z1 * sp
    cr, sr = np.cos(col["roll"]), np.sin(col["roll"])
    u = (x1 * cr - y1 * sr) * col["scale"] + centre + col["tx"]
    v = (x1 * sr + y1 * cr) * col["scale"] + centre + col["ty"]
    return np.stack([u, v], axis=-1)


def _face_depth(x: np.ndarray) -> np.ndarray:
    """Depth of the face surface at template x (the head's rotation axis is at depth 0)."""
    return 0.75 * np.sqrt(np.clip(1.0 - (x / 1.15) ** 2, 0.0, None))


class SyntheticFaces(FERDataset):
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
    @staticmethod
    def _draw_labels(rng: np.random.Generator, n: int, c: int, class_weights: Sequence[float] | None) -> np.ndarray:
        if class_weights is None:
            w = np.ones(c)
        else:
            w = np.asarray(class_weights, dtype=np.float64)
            if w.shape != (c,) or np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
                raise ValueError(
                    f"SyntheticFaces: class_weights must be {c} non-negative finite numbers with a positive sum, "
                    f"got {class_weights!r}"
                )
        share = w / w.sum() * n
        counts = np.floor(share).astype(np.int64)
        order = np.argsort(-(share - counts), kind="stable")       # largest remainders get the leftovers
        counts[order[: n - counts.sum()]] += 1
        labels = np.repeat(np.arange(c, dtype=np.int64), counts)
        return labels[rng.permutation(n)]

    def _draw_expressions(self, rng: np.random.Generator, labels: np.ndarray):
        n, c, a = len(labels), self.num_classes, self.ambiguity
        proto = np.zeros((c, len(ACTION_UNITS)), np.float64)
        for k, name in enumerate(self.class_names):
            for au, v in EXPRESSION_PROTOTYPES[name].items():
                proto[k, _AU[au]] = v
        intensity = rng.uniform(0.6, 1.25, n)
        weak = rng.random(n) < min(0.1 * a, 0.9)
        intensity[weak] = rng.uniform(0.15, 0.45, int(weak.sum()))
        blend = rng.random(n) < min(0.12 * a, 0.9)
        other = (labels + rng.integers(1, c, n)) % c
        mix = np.where(blend, rng.uniform(0.2, 0.45, n), 0.0)[:, None]
        au = intensity[:, None] * ((1 - mix) * proto[labels] + mix * proto[other])
        au += rng.normal(0.0, 0.08 * a, au.shape)                    # idiosyncratic activity in every sample
        au = np.clip(au, 0.0, 1.6)
        side = np.where(rng.random(n) < 0.5, -1.0, 1.0)               # which corner a unilateral pull lifts
        return au.astype(np.float32), intensity.astype(np.float32), weak | blend, side

    @staticmethod
    def _draw_identity(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
        return {
            "face_h": u(1.2, 1.42), "jaw_yc": u(-0.08, -0.02), "jaw_p": u(2.0, 2.9), "forehead": u(0.78, 0.92),
            "eye_sep": u(0.37, 0.45), "eye_w": u(0.16, 0.2), "eye_h": u(0.06, 0.08), "eye_tilt": u(-0.02, 0.015),
            "brow_gap": u(0.15, 0.22), "brow_inner": u(0.1, 0.16), "brow_len": u(0.42, 0.52),
            "brow_arch": u(0.02, 0.07), "brow_thick": u(0.045, 0.075),
            "nose_len": u(0.4, 0.52), "nose_w": u(0.13, 0.19),
            "mouth_y": u(0.78, 0.9), "mouth_w": u(0.27, 0.35), "lip_up": u(0.045, 0.07), "lip_lo": u(0.06, 0.09),
            "mouth_asym": rng.normal(0.0, 0.006, n),
        }

    def _draw_pose(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        d, s = self.difficulty, self.image_size
        return {
            "yaw": np.deg2rad(rng.uniform(-20, 20, n) * d),
            "pitch": np.deg2rad(rng.uniform(-10, 10, n) * d),
            "roll": np.deg2rad(rng.normal(0, 6, n).clip(-15, 15) * d),
            "scale": 0.32 * s * (1 + rng.uniform(-0.1, 0.1, n) * d),
            "tx": rng.uniform(-0.06, 0.06, n) * s * d,
            "ty": rng.uniform(-0.05, 0.05, n) * s * d,
        }

    def _draw_appearance(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        d = self.difficulty
        t = rng.uniform(0, len(_SKIN_STOPS) - 1, n)
        lo = np.floor(t).astype(int).clip(0, len(_SKIN_STOPS) - 2)
        f = (t - lo)[:, None]
        skin = (1 - f) * _SKIN_STOPS[lo] + f * _SKIN_STOPS[lo + 1] + rng.normal(0, 6, (n, 3))
        hair = _HAIR[rng.choice(len(_HAIR), n, p=_HAIR_P)] * rng.uniform(0.85, 1.15, (n, 1))
        grey = rng.uniform(40, 215, (n, 1))
        bg = grey + rng.uniform(-1, 1, (n, 3)) * rng.uniform(0, 60, (n, 1))
        return {
            "skin": skin.clip(30, 250),
            "hair": hair.clip(10, 230),
            "brow": (0.55 * hair + 0.45 * (0.42 * skin)).clip(5, 200),
            "lip": (skin * np.array([0.86, 0.58, 0.58]) + np.array([22, 4, 10])).clip(10, 250),
            "iris": _IRIS[rng.choice(len(_IRIS), n, p=_IRIS_P)],
            "bg": bg.clip(0, 255),
            "clothes": rng.uniform(20, 235, (n, 3)),
            "hair_style": rng.choice(4, n, p=[0.35, 0.3, 0.25, 0.1]),   # short, medium, long, bald
            "hair_volume": rng.uniform(0.06, 0.22, n),
            "hairline": rng.uniform(0.45, 0.7, n),
            "gaze": rng.normal(0, 0.25, (n, 2)).clip(-0.5, 0.5),
            "light_angle": rng.uniform(0, 2 * np.pi, n),
            "light_gradient": rng.uniform(0, 0.45, n) * d,
            "brightness": rng.uniform(-35, 25, n) * d,
            "contrast": 1 + rng.uniform(-0.35, 0.15, n) * d,
            "cast": 1 + rng.uniform(-0.08, 0.08, (n, 3)) * d,
            "noise": 1.0 + rng.uniform(0, 6, n) * d,
            "blur": np.where(rng.random(n) < 0.2 * d, rng.uniform(0.45, 1.0, n), 0.0),
            "clutter": rng.poisson(2.5 * d, n),
        }

    @staticmethod
    def _template(p: dict[str, np.ndarray], au: np.ndarray, side: np.ndarray) -> np.ndarray:
        """Expression- and identity-specific 3-D landmarks [N, 68, 3] in template units.

        Template frame: face half-width 1, eye line at y = 0, y pointing down, depth z towards the viewer.
        """
        n = len(au)
        a = {name: au[:, k].astype(np.float64)[:, None] for name, k in _AU.items()}
        col = {k: v[:, None] for k, v in p.items()}
        xyz = np.zeros((n, 68, 3))

        # Mouth opening (jaw drop, reduced by pressed lips) drives the lower lip and the chin.
        opening = 0.3 * a["jaw_drop"] * np.clip(1 - 0.8 * a["lip_press"], 0, 1)

        # Jaw 0..16: superellipse from the subject's right temple (image left) round the chin.
        theta = np.linspace(np.pi + 0.12, -0.12, 17)[None, :]
        pw = 2.0 / col["jaw_p"]
        xu = np.sign(np.cos(theta)) * np.abs(np.cos(theta)) ** pw
        yu = np.sign(np.sin(theta)) * np.abs(np.sin(theta)) ** pw
        low = np.clip(yu, 0, None)
        xyz[:, 0:17, 0] = xu * (1 - 0.06 * a["jaw_drop"] * low)
        xyz[:, 0:17, 1] = col["jaw_yc"] + col["face_h"] * yu + (0.85 * opening - 0.03 * a["chin_raise"]) * low**2
        xyz[:, 0:17, 2] = 0.6 * np.sqrt(np.clip(1 - xu**2, 0, None))

        # Brows 17..21 (outer -> inner, image left) and 22..26 (inner -> outer); u = 0 inner, 1 outer.
        u = np.linspace(0, 1, 5)
        base = -(col["eye_h"] + col["brow_gap"])
        for idx, s, uu in ((slice(17, 22), -1.0, u[::-1]), (slice(22, 27), 1.0, u)):
            uu = uu[None, :]
            x = s * (col["brow_inner"] - 0.07 * a["brow_lower"] - 0.02 * a["inner_brow_raise"] + uu * col["brow_len"])
            y = base - col["brow_arch"] * np.sin(np.pi * (0.1 + 0.6 * uu)) + 0.05 * uu**4
            y = y - (0.2 * a["inner_brow_raise"] * (1 - uu) + 0.17 * a["outer_brow_raise"] * uu)
            y = y + a["brow_lower"] * (0.1 + 0.04 * (1 - uu)) + 0.05 * a["nose_wrinkle"] * (1 - uu)
            xyz[:, idx, 0], xyz[:, idx, 1] = x, y
            xyz[:, idx, 2] = _face_depth(x) + 0.02

        # Eyes 36..41 and 42..47, both in image order: left corner, two upper, right corner, two lower.
        h_up = col["eye_h"] * np.clip(1 + 1.1 * a["upper_lid_raise"] - 0.45 * a["lid_tighten"]
                                      - 0.25 * a["brow_lower"] - 0.1 * a["nose_wrinkle"], 0.15, None)
        h_lo = col["eye_h"] * np.clip(0.85 + 0.25 * a["upper_lid_raise"] - 0.55 * a["lid_tighten"], 0.1, None)
        dx = np.array([-1.0, -0.38, 0.38, 1.0, 0.38, -0.38])[None, :]
        for idx, s in ((slice(36, 42), -1.0), (slice(42, 48), 1.0)):
            cx = s * col["eye_sep"]
            x = cx + dx * col["eye_w"]
            y = np.zeros((n, 6))
            y[:, 1:3] = -0.92 * h_up
            y[:, 4:6] = 0.92 * h_lo
            y[:, 0 if s < 0 else 3] = col["eye_tilt"][:, 0]        # outer corner
            xyz[:, idx, 0], xyz[:, idx, 1] = x, y
            xyz[:, idx, 2] = _face_depth(x) - 0.02

        # Nose: bridge 27..30 down to the tip, lower edge 31..35 (image left -> right).
        tip = col["nose_len"] - 0.05 * a["nose_wrinkle"]
        top = -(col["eye_h"] + 0.05)
        xyz[:, 27:31, 1] = top + (tip - top) * np.linspace(0, 1, 4)[None, :]
        xyz[:, 27:31, 2] = _face_depth(0.0) + np.array([0.08, 0.18, 0.28, 0.38])[None, :]
        nb = col["nose_len"] + 0.08 - 0.04 * a["nose_wrinkle"] - 0.02 * a["upper_lip_raise"]
        nw = col["nose_w"] * (1 + 0.2 * a["nose_wrinkle"])
        xyz[:, 31:36, 0] = nw * np.array([-1.0, -0.5, 0.0, 0.5, 1.0])[None, :]
        xyz[:, 31:36, 1] = nb + np.array([-0.03, 0.01, 0.02, 0.01, -0.03])[None, :]
        xyz[:, 31:36, 2] = _face_depth(xyz[:, 31:36, 0]) + np.array([0.12, 0.2, 0.25, 0.2, 0.12])[None, :]

        # Lips: a midline curve bent by the corner actions, an opening profile, and lip thicknesses.
        mw = col["mouth_w"] * (1 + 0.28 * a["lip_corner_pull"] + 0.25 * a["lip_stretch"] - 0.15 * a["lip_press"]
                               - 0.15 * a["jaw_drop"] + 0.05 * a["lip_corner_depress"])
        cdy = -0.14 * a["lip_corner_pull"] + 0.12 * a["lip_corner_depress"] + 0.02 * a["lip_stretch"]
        uni = a["unilateral_corner_pull"] * (side[:, None] > 0)      # lifts the image-right corner
        uni_l = a["unilateral_corner_pull"] * (side[:, None] < 0)
        thin = np.clip(1 - 0.55 * a["lip_press"] - 0.3 * a["lip_stretch"], 0.3, None)
        raise_up = 0.05 * a["upper_lip_raise"] + 0.025 * a["nose_wrinkle"]

        def mouth(t: np.ndarray, part: str) -> tuple[np.ndarray, np.ndarray]:
            t = np.asarray(t, np.float64)[None, :]
            right = t > 0
            w = np.where(right, mw * (1 + 0.3 * uni), mw * (1 + 0.3 * uni_l))
            c = cdy + np.where(right, -0.14 * uni + col["mouth_asym"], -0.14 * uni_l - col["mouth_asym"])
            at = np.abs(t)
            mid = col["mouth_y"] + c * at**2.2 - 0.025 * a["chin_raise"] * (1 - at**2)
            gap = opening * np.clip(1 - at**2, 0, None) ** 0.6
            up_in = mid - 0.15 * gap - raise_up * np.sqrt(np.clip(1 - at**2, 0, None))
            lo_in = mid + 0.85 * gap
            if part == "up_out":
                bow = 1 - 0.15 * np.exp(-((at / 0.12) ** 2))           # Cupid's bow dip at the centre
                y = up_in - col["lip_up"] * thin * (1 - 0.55 * at**2) * bow
            elif part == "lo_out":
                y = lo_in + col["lip_lo"] * thin * (1 - 0.6 * at**2) * (1 - 0.2 * a["chin_raise"])
            elif part == "up_in":
                y = up_in
            elif part == "lo_in":
                y = lo_in
            else:  # "corner": on the midline
                y = 0.5 * (up_in + lo_in)
            return t * w, y

        groups = (
            (48, "corner", [-1.0]), (49, "up_out", [-0.6, -0.25, 0.0, 0.25, 0.6]), (54, "corner", [1.0]),
            (55, "lo_out", [0.6, 0.25, 0.0, -0.25, -0.6]), (60, "corner", [-0.88]), (61, "up_in", [-0.4, 0.0, 0.4]),
            (64, "corner", [0.88]), (65, "lo_in", [0.4, 0.0, -0.4]),
        )
        for start, part, ts in groups:
            x, y = mouth(np.array(ts), part)
            sl = slice(start, start + len(ts))
            xyz[:, sl, 0], xyz[:, sl, 1] = x, y
            xyz[:, sl, 2] = _face_depth(x) + 0.06 + 0.05 * (1 - np.abs(np.array(ts)))[None, :]
        return xyz

    def _fit_pose_and_project(self) -> np.ndarray:
        """Project the landmarks; shrink/shift the pose where needed so every landmark lies inside the image."""
        s, centre, margin = self.image_size, (self.image_size - 1) / 2, 1.0
        pts = _project(self._xyz, self._pose, centre)
        lo, hi = pts.min(axis=1), pts.max(axis=1)                      # [N, 2]
        span = (hi - lo).max(axis=1)
        shrink = np.minimum(1.0, (s - 1 - 2 * margin) / np.maximum(span, 1e-6))
        if np.any(shrink < 1):
            self._pose["scale"] = self._pose["scale"] * shrink
            self._pose["tx"] = self._pose["tx"] * shrink
            self._pose["ty"] = self._pose["ty"] * shrink
            pts = _project(self._xyz, self._pose, centre)
            lo, hi = pts.min(axis=1), pts.max(axis=1)
        shift = np.clip(margin - lo, 0, None) - np.clip(hi - (s - 1 - margin), 0, None)
        self._pose["tx"] = self._pose["tx"] + shift[:, 0]
        self._pose["ty"] = self._pose["ty"] + shift[:, 1]
        return _project(self._xyz, self._pose, centre).astype(np.float32)

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

    def _extra_geometry(self) -> tuple[np.ndarray, dict[str, slice]]:
        """Non-landmark geometry, projected like the landmarks: [N, K, 2] pixels and the slice of each part.

        Parts: head top (forehead), hair behind the head and over the forehead, ears, neck, clothes, and the
        lower edges of the brows (the brow landmarks are their upper edges).
        """
        n, p, look, xyz = self.num_samples, self._ident, self._look, self._xyz.astype(np.float64)
        parts: dict[str, np.ndarray] = {}
        base = (0.5 * (xyz[:, 0, 1] + xyz[:, 16, 1]))[:, None]
        xe = (0.5 * (np.abs(xyz[:, 0, 0]) + xyz[:, 16, 0]))[:, None]
        fh = p["forehead"][:, None]
        th = np.linspace(0, np.pi, 13)[1:-1][None, :]
        fx = np.cos(th) * xe
        parts["forehead"] = np.stack([fx, base - fh * np.sin(th), _face_depth(fx) * 0.8], -1)
        vol = look["hair_volume"][:, None]
        th2 = np.linspace(0, np.pi, 15)[None, :]
        wx = xe + 0.08 + 0.5 * vol
        hx = np.cos(th2) * wx
        arc = np.stack([hx, base + 0.05 - (fh + vol) * np.sin(th2), np.zeros_like(hx)], -1)
        bottom = np.choose(look["hair_style"], [base[:, 0] + 0.1, np.full(n, 0.75), np.full(n, 1.7), base[:, 0]])
        side = lambda s: np.stack([s * wx[:, 0], bottom, np.zeros(n)], -1)[:, None]  # noqa: E731
        parts["hair_back"] = np.concatenate([side(1.0), arc, side(-1.0)], axis=1)
        th3 = np.linspace(0.3, np.pi - 0.3, 9)[None, :]
        cx = np.cos(th3) * xe
        cap = np.stack([cx, base - fh * np.sin(th3), _face_depth(cx) * 0.8], -1)
        hl = base - fh * look["hairline"][:, None]
        x_end, y_end = cap[:, :1, 0], cap[:, :1, 1]
        lx = np.linspace(-1, 1, 9)[None, :] * x_end
        ly = hl + (y_end - hl) * np.abs(lx / x_end) ** 3
        parts["hair_front"] = np.concatenate([cap, np.stack([lx, ly, _face_depth(lx) * 0.8], -1)], axis=1)
        phi = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        for name, s in (("ear_l", -1.0), ("ear_r", 1.0)):
            ring = np.stack([s * (0.97 + 0.1 * np.cos(phi)), 0.15 + 0.22 * np.sin(phi), np.full(10, -0.05)], -1)
            parts[name] = np.broadcast_to(ring, (n, 10, 3))
        neck = [[-0.5, 0.6, 0.2], [0.5, 0.6, 0.2], [0.56, 2.6, 0.1], [-0.56, 2.6, 0.1]]
        clothes = [[-2.6, 2.15, 0], [-0.6, 1.8, 0], [0.0, 2.05, 0.1], [0.6, 1.8, 0], [2.6, 2.15, 0], [2.6, 4.0, 0],
                   [-2.6, 4.0, 0]]
        parts["neck"] = np.broadcast_to(np.array(neck, np.float64), (n, 4, 3))
        parts["clothes"] = np.broadcast_to(np.array(clothes, np.float64), (n, 7, 3))
        thick = p["brow_thick"][:, None] * np.array([0.55, 0.75, 0.9, 1.0, 1.0])[None, :]   # outer -> inner
        for name, idx, tk in (("brow_r", slice(17, 22), thick), ("brow_l", slice(22, 27), thick[:, ::-1])):
            low = xyz[:, idx].copy()
            low[..., 1] += tk
            parts[name] = low
        slices, o = {}, 0
        for k, v in parts.items():
            slices[k] = slice(o, o + v.shape[1])
            o += v.shape[1]
        pts = _project(np.concatenate(list(parts.values()), axis=1), self._pose, (self.image_size - 1) / 2)
        return pts.astype(np.float32), slices

    def _drawing_matrix(self) -> tuple[np.ndarray, dict[str, slice]]:
        """A fixed linear map from [landmarks; extra geometry] to every vertex the renderer draws.

        Curves are Catmull-Rom splines through the landmarks, so one matrix product per image yields all
        polygons; the layout (name -> rows) is the same for every sample.
        """
        t = 68 + self._extra.shape[1]
        ex = self._extra_slices

        def sel(idx) -> np.ndarray:
            m = np.zeros((len(idx), t))
            m[np.arange(len(idx)), idx] = 1.0
            return m

        def extra(name: str) -> list[int]:
            return [68 + j for j in range(ex[name].start, ex[name].stop)]

        def spline(idx, closed: bool, n: int) -> np.ndarray:
            return _catmull_rom_matrix(len(idx), closed, n) @ sel(idx)

        def mean(idx) -> np.ndarray:
            return sel(idx).mean(axis=0, keepdims=True)

        blocks: dict[str, np.ndarray] = {
            "neck": sel(extra("neck")), "clothes": sel(extra("clothes")), "hair_back": sel(extra("hair_back")),
            "ear_l": sel(extra("ear_l")), "ear_r": sel(extra("ear_r")),
            "outline": np.concatenate([spline(list(range(17)), False, 3), sel(extra("forehead"))]),
            "hair_front": spline(extra("hair_front"), True, 2),
        }
        for side, base in (("r", 36), ("l", 42)):
            e = [base + k for k in range(6)]
            upper = spline([e[0], e[1], e[2], e[3]], False, 4)
            lower = spline([e[3], e[4], e[5], e[0]], False, 4)
            blocks[f"eye_{side}"] = spline(e, True, 4)
            blocks[f"centre_{side}"] = mean(e)
            blocks[f"upper_{side}"] = upper
            blocks[f"upper_cap_{side}"] = upper[::-1]      # shifted up by the renderer
            blocks[f"lower_{side}"] = lower
            blocks[f"lower_cap_{side}"] = lower[::-1]      # shifted down by the renderer
        blocks["brow_r"] = np.concatenate([sel(list(range(17, 22))), sel(extra("brow_r"))[::-1]])
        blocks["brow_l"] = np.concatenate([sel(list(range(22, 27))), sel(extra("brow_l"))[::-1]])
        blocks["bridge"] = sel([28, 29, 30])                 # shifted sideways by the renderer
        blocks["nose_lower"] = spline([31, 32, 33, 34, 35], False, 3)
        blocks["nostril_r"] = mean([31, 32])
        blocks["nostril_l"] = mean([35, 34])
        blocks["lips"] = spline(list(range(48, 60)), True, 3)
        blocks["inner"] = spline(list(range(60, 68)), True, 3)
        upper, lower = sel([60, 61, 62, 63, 64]), sel([60, 67, 66, 65, 64])
        blocks["teeth"] = np.concatenate([upper, (upper + 0.4 * (lower - upper))[::-1][1:-1]])
        blocks["lip_line"] = _catmull_rom_matrix(7, False, 3) @ np.concatenate(
            [sel([48]), 0.5 * (upper + lower), sel([54])])
        layout, o = {}, 0
        for k, v in blocks.items():
            layout[k] = slice(o, o + len(v))
            o += len(v)
        return np.concatenate(list(blocks.values())), layout

    def _colours(self) -> np.ndarray:
        """Per-sample drawing colours [N, len(_COLOURS), 3] (RGB, before illumination)."""
        look = self._look
        skin, lip = look["skin"], look["lip"]
        table = {
            "skin": skin, "neck": skin * 0.78, "ear": skin * 0.88, "clothes": look["clothes"], "hair": look["hair"],
            "iris": look["iris"], "lid_upper": skin * 0.3, "lid_lower": skin * 0.62, "brow": look["brow"],
            "bridge": skin * 0.86, "nose": skin * 0.68, "nostril": skin * 0.35, "lip": lip, "lip_line": lip * 0.55,
        }
        return np.stack([table[k] for k in _COLOURS], axis=1).astype(np.float32)

    def _render(self, i: int) -> np.ndarray:
        s = self.image_size
        rng = np.random.default_rng(int(self._render_seeds[i]))
        look = self._look
        colour = dict(zip(_COLOURS, self._colour_table[i].tolist()))
        aa = cv2.LINE_AA
        lw = max(1, int(round(s / 64)))
        img = np.empty((s, s, 3), np.uint8)
        img[:] = np.rint(look["bg"][i]).astype(np.uint8)

        # Background clutter (behind everything).
        for _ in range(int(look["clutter"][i])):
            c = rng.uniform(0, 255, 3).tolist()
            kind = rng.integers(3)
            x0, y0 = rng.uniform(-0.1, 1.1, 2) * s
            r = rng.uniform(0.05, 0.3) * s
            if kind == 0:
                cv2.circle(img, (int(x0 * _FIXED), int(y0 * _FIXED)), int(r * _FIXED), c, -1, aa, 4)
            elif kind == 1:
                box = cv2.boxPoints(((x0, y0), (r * 2, r * rng.uniform(0.3, 1.5)), rng.uniform(0, 180)))
                cv2.fillPoly(img, [_fx(box)], c, aa, 4)
            else:
                x1, y1 = rng.uniform(-0.1, 1.1, 2) * s
                cv2.line(img, (int(x0 * _FIXED), int(y0 * _FIXED)), (int(x1 * _FIXED), int(y1 * _FIXED)), c,
                         int(rng.integers(1, 4)) * lw, aa, 4)

        lm = self.landmarks[i]
        pts = self._draw_matrix @ np.concatenate([lm, self._extra[i]]).astype(np.float64)
        lay = self._draw_layout
        scale, roll = float(self._pose["scale"][i]), float(self._pose["roll"][i])
        down = np.array([-np.sin(roll), np.cos(roll)])
        r_iris = 0.085 * scale
        pad = (r_iris + 1.5) * down
        for side in ("r", "l"):
            pts[lay[f"upper_cap_{side}"]] -= pad
            pts[lay[f"lower_cap_{side}"]] += pad
            pts[lay[f"centre_{side}"]] += look["gaze"][i] * r_iris
        shade = 1.0 if np.cos(float(look["light_angle"][i])) < 0 else -1.0
        pts[lay["bridge"]] += shade * 0.06 * scale * np.array([np.cos(roll), np.sin(roll)])
        fixed = np.rint(pts * _FIXED).astype(np.int32)
        poly = lambda name: fixed[lay[name]].reshape(-1, 1, 2)  # noqa: E731
        point = lambda name: tuple(fixed[lay[name]][0].tolist())  # noqa: E731

        bald = int(look["hair_style"][i]) == 3
        cv2.fillPoly(img, [poly("neck")], colour["neck"], aa, 4)
        cv2.fillPoly(img, [poly("clothes")], colour["clothes"], aa, 4)
        if not bald:
            cv2.fillPoly(img, [poly("hair_back")], colour["hair"], aa, 4)
        cv2.fillPoly(img, [poly("ear_l"), poly("ear_r")], colour["ear"], aa, 4)
        cv2.fillPoly(img, [poly("outline")], colour["skin"], aa, 4)
        if not bald:
            cv2.fillPoly(img, [poly("hair_front")], colour["hair"], aa, 4)

        # Eyes: sclera, iris and pupil, skin caps outside the lids (they clip the iris), lid lines.
        cv2.fillPoly(img, [poly("eye_r"), poly("eye_l")], _SCLERA, aa, 4)
        ri, rp = int(round(r_iris * _FIXED)), int(round(0.45 * r_iris * _FIXED))
        for side in ("r", "l"):
            cv2.circle(img, point(f"centre_{side}"), ri, colour["iris"], -1, aa, 4)
            cv2.circle(img, point(f"centre_{side}"), rp, _PUPIL, -1, aa, 4)
        caps = []
        for side in ("r", "l"):
            caps += [np.concatenate([fixed[lay[f"upper_{side}"]], fixed[lay[f"upper_cap_{side}"]]]).reshape(-1, 1, 2),
                     np.concatenate([fixed[lay[f"lower_{side}"]], fixed[lay[f"lower_cap_{side}"]]]).reshape(-1, 1, 2)]
        cv2.fillPoly(img, caps, colour["skin"], aa, 4)
        cv2.polylines(img, [poly("upper_r"), poly("upper_l")], False, colour["lid_upper"], lw, aa, 4)
        cv2.polylines(img, [poly("lower_r"), poly("lower_l")], False, colour["lid_lower"], lw, aa, 4)
        cv2.fillPoly(img, [poly("brow_r"), poly("brow_l")], colour["brow"], aa, 4)

        # Nose: a shadow beside the bridge, the lower edge, the nostrils.
        cv2.polylines(img, [poly("bridge")], False, colour["bridge"], lw, aa, 4)
        cv2.polylines(img, [poly("nose_lower")], False, colour["nose"], lw, aa, 4)
        rn = int(round(0.035 * scale * _FIXED))
        cv2.circle(img, point("nostril_r"), rn, colour["nostril"], -1, aa, 4)
        cv2.circle(img, point("nostril_l"), rn, colour["nostril"], -1, aa, 4)

        # Mouth: lips, then the opening (cavity and upper teeth) or the lip line.
        cv2.fillPoly(img, [poly("lips")], colour["lip"], aa, 4)
        gap = float(np.hypot(*(lm[66] - lm[62])))
        if gap > 0.6:
            cv2.fillPoly(img, [poly("inner")], _CAVITY, aa, 4)
            if gap > 1.2:
                cv2.fillPoly(img, [poly("teeth")], _TEETH, aa, 4)
        else:
            cv2.polylines(img, [poly("lip_line")], False, colour["lip_line"], lw, aa, 4)

        # Illumination (out = (img * contrast + offset) * gain, gain = light gradient x colour cast), blur, noise.
        out = img.astype(np.float32)
        blur = float(look["blur"][i])
        if blur > 0:
            out = cv2.GaussianBlur(out, (0, 0), blur * s / 64)
        gx, gy = self._grid
        ang, grad = float(look["light_angle"][i]), float(look["light_gradient"][i])
        contrast = float(look["contrast"][i])
        gain = 1 + gx * (grad * np.cos(ang)) + gy * (grad * np.sin(ang))
        gain = gain[..., None] * look["cast"][i].astype(np.float32)
        out *= contrast
        out += 128 * (1 - contrast) + float(look["brightness"][i])
        out *= gain
        bank = self._noise_bank()
        start = int(rng.integers(0, bank.size - out.size))
        out += bank[start : start + out.size].reshape(out.shape) * float(look["noise"][i])
        out += 0.5
        np.clip(out, 0, 255, out=out)
        return out.astype(np.uint8)

    def _noise_bank(self) -> np.ndarray:
        """Standard-normal values shared by all images (each image reads a window at a per-sample offset)."""
        if self._bank is None:
            size = max(1 << 20, 4 * self.image_size * self.image_size * 3)
            self._bank = np.random.default_rng([self.seed, 0xB0A7]).standard_normal(size, dtype=np.float32)
        return self._bank

    # -- documentation -----------------------------------------------------------------------------------
    @classmethod
    def describe(cls) -> str:
        """A short description of the generative model (the module docstring)."""
        return __doc__ or ""

    def __repr__(self) -> str:
        return (f"SyntheticFaces(num_samples={self.num_samples}, split={self.split!r}, image_size={self.image_size}, "
                f"num_classes={self.num_classes}, seed={self.seed}, difficulty={self.difficulty}, "
                f"ambiguity={self.ambiguity})")


def contact_sheet(
    dataset: FERDataset, per_class: int = 6, upscale: int = 3, draw_landmarks: bool | str = True
) -> np.ndarray:
    """A grid image (uint8 RGB) with one row per class and ``per_class`` samples per row, for inspection.

    ``draw_landmarks``: True draws the landmarks (when the dataset has them) as green dots, False does not,
    ``"both"`` shows every face twice, plain and then with its landmarks. Rows start with the class name.
    Write the sheet with ``cv2.imwrite(path, sheet[..., ::-1])`` (cv2 expects BGR).
    """
    if draw_landmarks not in (True, False, "both"):
        raise ValueError(f"draw_landmarks must be True, False or 'both', got {draw_landmarks!r}")
    labels = np.asarray(dataset.labels)
    h, w = dataset.load_image(0).shape[:2]
    th, tw = h * upscale, w * upscale
    label_w = 90
    modes = [False, True] if draw_landmarks == "both" else [bool(draw_landmarks)]
    cols = per_class * len(modes)
    sheet = np.full((dataset.num_classes * (th + 4) + 4, label_w + cols * (tw + 4) + 4, 3), 255, np.uint8)
    for c, name in enumerate(dataset.class_names):
        y0 = 4 + c * (th + 4)
        cv2.putText(sheet, name, (4, y0 + th // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for j, idx in enumerate(np.flatnonzero(labels == c)[:per_class]):
            img = dataset.load_image(int(idx))
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            for m, with_points in enumerate(modes):
                tile = cv2.resize(img, (tw, th), interpolation=cv2.INTER_NEAREST)
                if with_points and dataset.landmarks is not None:
                    for x, y in np.asarray(dataset.landmarks[idx], np.float64):
                        if np.isfinite(x) and np.isfinite(y):
                            centre = (int(round((x + 0.5) * upscale - 0.5)), int(round((y + 0.5) * upscale - 0.5)))
                            cv2.circle(tile, centre, max(1, upscale // 3), (0, 255, 0), -1, cv2.LINE_AA)
                x0 = label_w + 4 + (j * len(modes) + m) * (tw + 4)
                sheet[y0 : y0 + th, x0 : x0 + tw] = tile
    return sheet
