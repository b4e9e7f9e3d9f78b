"""Rendering of a synthetic face from its landmarks and appearance parameters (cv2 anti-aliased polygons, then
illumination, blur and noise); per-sample seeds keep ``load_image(i)`` random-access and bit-identical.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from ferkit.data.synthetic.face_model import (CAVITY, COLOURS, PUPIL, SCLERA, TEETH, face_depth, project)

__all__ = ["FaceRenderer"]

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


class FaceRenderer:
    """Mixin of :class:`~ferkit.data.synthetic.SyntheticFaces`: the drawing geometry and the renderer."""

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
        parts["forehead"] = np.stack([fx, base - fh * np.sin(th), face_depth(fx) * 0.8], -1)
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
        cap = np.stack([cx, base - fh * np.sin(th3), face_depth(cx) * 0.8], -1)
        hl = base - fh * look["hairline"][:, None]
        x_end, y_end = cap[:, :1, 0], cap[:, :1, 1]
        lx = np.linspace(-1, 1, 9)[None, :] * x_end
        ly = hl + (y_end - hl) * np.abs(lx / x_end) ** 3
        parts["hair_front"] = np.concatenate([cap, np.stack([lx, ly, face_depth(lx) * 0.8], -1)], axis=1)
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
        pts = project(np.concatenate(list(parts.values()), axis=1), self._pose, (self.image_size - 1) / 2)
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
        """Per-sample drawing colours [N, len(COLOURS), 3] (RGB, before illumination)."""
        look = self._look
        skin, lip = look["skin"], look["lip"]
        table = {
            "skin": skin, "neck": skin * 0.78, "ear": skin * 0.88, "clothes": look["clothes"], "hair": look["hair"],
            "iris": look["iris"], "lid_upper": skin * 0.3, "lid_lower": skin * 0.62, "brow": look["brow"],
            "bridge": skin * 0.86, "nose": skin * 0.68, "nostril": skin * 0.35, "lip": lip, "lip_line": lip * 0.55,
        }
        return np.stack([table[k] for k in COLOURS], axis=1).astype(np.float32)

    def _render(self, i: int) -> np.ndarray:
        s = self.image_size
        rng = np.random.default_rng(int(self._render_seeds[i]))
        look = self._look
        colour = dict(zip(COLOURS, self._colour_table[i].tolist()))
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
        cv2.fillPoly(img, [poly("eye_r"), poly("eye_l")], SCLERA, aa, 4)
        ri, rp = int(round(r_iris * _FIXED)), int(round(0.45 * r_iris * _FIXED))
        for side in ("r", "l"):
            cv2.circle(img, point(f"centre_{side}"), ri, colour["iris"], -1, aa, 4)
            cv2.circle(img, point(f"centre_{side}"), rp, PUPIL, -1, aa, 4)
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
            cv2.fillPoly(img, [poly("inner")], CAVITY, aa, 4)
            if gap > 1.2:
                cv2.fillPoly(img, [poly("teeth")], TEETH, aa, 4)
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
