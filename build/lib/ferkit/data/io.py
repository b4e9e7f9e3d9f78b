"""Shared file helpers for the dataset loaders: image reading, the parse cache, small text-file utilities.

Every failure is a :class:`~ferkit.data.base.DataError` that names the file, so a broken image deep inside a
dataset tells the user which one to fix or remove.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

from ferkit.core.errors import DataError

try:  # OpenCV is the fast path (it comes with albumentations); PIL is the fallback.
    import cv2

    cv2.setNumThreads(0)  # DataLoader workers parallelise; OpenCV's own threads would oversubscribe
except ImportError:  # pragma: no cover - exercised only without OpenCV
    cv2 = None

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

PathLike = str | os.PathLike


def read_image(path: PathLike, grayscale: bool = False) -> np.ndarray:
    """Read an image file as uint8 RGB ``HxWx3`` (or ``HxW`` with ``grayscale=True``).

    Alpha channels are dropped and 16-bit images scaled to 8 bit. Raises :class:`DataError` naming the path
    when the file is missing, empty or cannot be decoded.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot access image file ({exc})") from None
    if size == 0:
        raise DataError(f"{path}: image file is empty (0 bytes); re-download or remove it")
    try:
        raw = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode also handles non-ASCII paths
    except OSError as exc:
        raise DataError(f"{path}: cannot read image file ({exc})") from None
    image = _decode(raw, path, grayscale)
    if image is None or image.size == 0:
        raise DataError(f"{path}: not a readable image (corrupt or unsupported format); re-download or remove it")
    return np.ascontiguousarray(image)


def _decode(raw: np.ndarray, path: Path, grayscale: bool) -> np.ndarray | None:
    if cv2 is not None:
        flag = cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR
        image = cv2.imdecode(raw, flag)
        if image is not None:
            return image if grayscale else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    # PIL reads a few formats OpenCV does not (and is the only reader without OpenCV).
    try:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(raw.tobytes())) as im:
            return np.asarray(im.convert("L" if grayscale else "RGB"), dtype=np.uint8)
    except Exception:  # noqa: BLE001 - any decoder failure means "unreadable"
        return None


def cache_dir(*subdirs: str) -> Path:
    """The directory for ferkit's derived files: ``$FERKIT_CACHE`` or ``~/.cache/ferkit`` (created on demand).

    Caches never go next to the data: dataset folders are often read-only or shared.
    """
    base = os.environ.get("FERKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ferkit")
    path = Path(base, *subdirs)
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_cache_key(path: PathLike, *extra: object) -> str:
    """A key that changes when the file changes: its resolved path, size and modification time (plus ``extra``)."""
    p = Path(path).resolve()
    st = p.stat()
    text = "|".join([str(p), str(st.st_size), str(st.st_mtime_ns), *map(str, extra)])
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def load_cached_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """Arrays saved by :func:`save_cached_arrays`, or ``None`` if absent or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception:  # noqa: BLE001 - a truncated or stale cache file is simply rebuilt
        return None


def save_cached_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write arrays to ``path`` (.npz) atomically, so concurrent readers never see a half-written file.

    A cache that cannot be written (read-only home, full disk) is skipped silently: it only costs speed.
    Keys must not be ``file`` or ``allow_pickle`` (``np.savez``'s own arguments).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass


def read_bytes(path: PathLike, what: str = "file") -> bytes:
    """The whole file, transparently gunzipped when it ends in ``.gz``; :class:`DataError` if missing/corrupt."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if path.suffix == ".gz" else data
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read {what} ({exc})") from None


def read_text_lines(path: PathLike, what: str = "file") -> list[str]:
    """Decoded lines (UTF-8 with optional BOM, ``.gz`` allowed), line endings stripped."""
    data = read_bytes(path, what)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {what} is not UTF-8 text ({exc})") from None
    return text.splitlines()
