"""Landmarks as part of the data pipeline: the 68-point layout, extraction backends, cache files, point subsets
and heatmap targets.

* :mod:`ferkit.core.ibug68` -- the iBUG 68-point layout and its flip permutation;
* :mod:`ferkit.landmarks.extract` -- backends: :class:`FaceAlignmentBackend`, :class:`DlibBackend`,
  :class:`DatasetLandmarks` (never download model files);
* :mod:`ferkit.landmarks.cache` -- :func:`extract_landmarks` (resumable, failure records) and
  :func:`attach_landmarks` (what ``FERDataModule(landmarks_cache=...)`` calls);
* :mod:`ferkit.landmarks.heatmaps` -- :data:`LANET19` (19-of-68 points), :class:`HeatmapTargets`;
* ``ferkit landmarks extract|draw|summary`` -- the command line (:mod:`ferkit.commands.landmarks`).
"""
from ferkit.landmarks.cache import LandmarkCache, attach_landmarks, cache_file_name, extract_landmarks, resolve_cache_file
from ferkit.landmarks.extract import (
    CROP_FACE_BOX,
    DatasetLandmarks,
    DlibBackend,
    FaceAlignmentBackend,
    LandmarkResult,
    LandmarkStatus,
    available_backends,
    create_backend,
)
from ferkit.landmarks.heatmaps import IBUG68, LANET19, SUBSETS, HeatmapTargets, LandmarkSubset, get_subset
from ferkit.core.ibug68 import FLIP_PERMUTATION_68, GROUPS, flip_landmarks

__all__ = [
    "CROP_FACE_BOX",
    "DatasetLandmarks",
    "DlibBackend",
    "FLIP_PERMUTATION_68",
    "FaceAlignmentBackend",
    "GROUPS",
    "HeatmapTargets",
    "IBUG68",
    "LANET19",
    "LandmarkCache",
    "LandmarkResult",
    "LandmarkStatus",
    "LandmarkSubset",
    "SUBSETS",
    "attach_landmarks",
    "available_backends",
    "cache_file_name",
    "create_backend",
    "extract_landmarks",
    "flip_landmarks",
    "get_subset",
    "resolve_cache_file",
]
