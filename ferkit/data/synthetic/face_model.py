"""The synthetic faces' generative model: expression action units, identity, pose and appearance parameters,
and the parametric 68-point landmark template (the geometry that :mod:`.render` draws).

Everything here is vectorised over samples and drawn from generators the dataset passes in.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = ["ACTION_UNITS", "AU_INDEX", "EXPRESSION_PROTOTYPES", "FaceModel", "face_depth", "project"]



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
AU_INDEX = {name: k for k, name in enumerate(ACTION_UNITS)}

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
SKIN_STOPS = np.array([[242, 208, 184], [214, 164, 128], [168, 114, 80], [104, 68, 48]], np.float32)
HAIR = np.array([[28, 24, 22], [64, 42, 28], [112, 74, 42], [196, 156, 96], [150, 62, 32], [168, 166, 160]],
                 np.float32)
HAIR_P = np.array([0.3, 0.25, 0.2, 0.1, 0.07, 0.08])
IRIS = np.array([[92, 58, 34], [42, 32, 26], [70, 110, 150], [84, 112, 74], [122, 96, 52]], np.float32)
IRIS_P = np.array([0.4, 0.25, 0.15, 0.1, 0.1])
SCLERA = (236, 232, 226)
TEETH = (236, 232, 218)
CAVITY = (58, 22, 26)
PUPIL = (18, 14, 14)
COLOURS = ("skin", "neck", "ear", "clothes", "hair", "iris", "lid_upper", "lid_lower", "brow", "bridge", "nose",
            "nostril", "lip", "lip_line")
CENTER_Y = 0.3     # template y (eye line 0, face half-width 1) that maps to the image centre



def project(xyz: np.ndarray, pose: Mapping[str, np.ndarray], centre: float) -> np.ndarray:
    """Pose template points ``xyz`` [N, K, 3] with per-sample ``pose`` arrays [N] -> pixels [N, K, 2].

    Yaw (about the vertical axis) and pitch are 3-D rotations followed by an orthographic projection, so
    features shift and the far side of the face compresses; then in-plane roll, scale and translation.
    """
    col = {k: np.asarray(v, np.float64)[:, None] for k, v in pose.items()}
    x, y, z = xyz[..., 0], xyz[..., 1] - CENTER_Y, xyz[..., 2]
    cyaw, syaw = np.cos(col["yaw"]), np.sin(col["yaw"])
    x1, z1 = x * cyaw + z * syaw, -x * syaw + z * cyaw
    cp, sp = np.cos(col["pitch"]), np.sin(col["pitch"])
    y1 = y * cp - z1 * sp
    cr, sr = np.cos(col["roll"]), np.sin(col["roll"])
    u = (x1 * cr - y1 * sr) * col["scale"] + centre + col["tx"]
    v = (x1 * sr + y1 * cr) * col["scale"] + centre + col["ty"]
    return np.stack([u, v], axis=-1)


def face_depth(x: np.ndarray) -> np.ndarray:
    """Depth of the face surface at template x (the head's rotation axis is at depth 0)."""
    return 0.75 * np.sqrt(np.clip(1.0 - (x / 1.15) ** 2, 0.0, None))



class FaceModel:
    """Mixin of :class:`~ferkit.data.synthetic.SyntheticFaces`: draws the per-sample parameters and landmarks."""

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
                proto[k, AU_INDEX[au]] = v
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
        t = rng.uniform(0, len(SKIN_STOPS) - 1, n)
        lo = np.floor(t).astype(int).clip(0, len(SKIN_STOPS) - 2)
        f = (t - lo)[:, None]
        skin = (1 - f) * SKIN_STOPS[lo] + f * SKIN_STOPS[lo + 1] + rng.normal(0, 6, (n, 3))
        hair = HAIR[rng.choice(len(HAIR), n, p=HAIR_P)] * rng.uniform(0.85, 1.15, (n, 1))
        grey = rng.uniform(40, 215, (n, 1))
        bg = grey + rng.uniform(-1, 1, (n, 3)) * rng.uniform(0, 60, (n, 1))
        return {
            "skin": skin.clip(30, 250),
            "hair": hair.clip(10, 230),
            "brow": (0.55 * hair + 0.45 * (0.42 * skin)).clip(5, 200),
            "lip": (skin * np.array([0.86, 0.58, 0.58]) + np.array([22, 4, 10])).clip(10, 250),
            "iris": IRIS[rng.choice(len(IRIS), n, p=IRIS_P)],
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
        a = {name: au[:, k].astype(np.float64)[:, None] for name, k in AU_INDEX.items()}
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
            xyz[:, idx, 2] = face_depth(x) + 0.02

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
            xyz[:, idx, 2] = face_depth(x) - 0.02

        # Nose: bridge 27..30 down to the tip, lower edge 31..35 (image left -> right).
        tip = col["nose_len"] - 0.05 * a["nose_wrinkle"]
        top = -(col["eye_h"] + 0.05)
        xyz[:, 27:31, 1] = top + (tip - top) * np.linspace(0, 1, 4)[None, :]
        xyz[:, 27:31, 2] = face_depth(0.0) + np.array([0.08, 0.18, 0.28, 0.38])[None, :]
        nb = col["nose_len"] + 0.08 - 0.04 * a["nose_wrinkle"] - 0.02 * a["upper_lip_raise"]
        nw = col["nose_w"] * (1 + 0.2 * a["nose_wrinkle"])
        xyz[:, 31:36, 0] = nw * np.array([-1.0, -0.5, 0.0, 0.5, 1.0])[None, :]
        xyz[:, 31:36, 1] = nb + np.array([-0.03, 0.01, 0.02, 0.01, -0.03])[None, :]
        xyz[:, 31:36, 2] = face_depth(xyz[:, 31:36, 0]) + np.array([0.12, 0.2, 0.25, 0.2, 0.12])[None, :]

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
            xyz[:, sl, 2] = face_depth(x) + 0.06 + 0.05 * (1 - np.abs(np.array(ts)))[None, :]
        return xyz

    def _fit_pose_and_project(self) -> np.ndarray:
        """Project the landmarks; shrink/shift the pose where needed so every landmark lies inside the image."""
        s, centre, margin = self.image_size, (self.image_size - 1) / 2, 1.0
        pts = project(self._xyz, self._pose, centre)
        lo, hi = pts.min(axis=1), pts.max(axis=1)                      # [N, 2]
        span = (hi - lo).max(axis=1)
        shrink = np.minimum(1.0, (s - 1 - 2 * margin) / np.maximum(span, 1e-6))
        if np.any(shrink < 1):
            self._pose["scale"] = self._pose["scale"] * shrink
            self._pose["tx"] = self._pose["tx"] * shrink
            self._pose["ty"] = self._pose["ty"] * shrink
            pts = project(self._xyz, self._pose, centre)
            lo, hi = pts.min(axis=1), pts.max(axis=1)
        shift = np.clip(margin - lo, 0, None) - np.clip(hi - (s - 1 - margin), 0, None)
        self._pose["tx"] = self._pose["tx"] + shift[:, 0]
        self._pose["ty"] = self._pose["ty"] + shift[:, 1]
        return project(self._xyz, self._pose, centre).astype(np.float32)

