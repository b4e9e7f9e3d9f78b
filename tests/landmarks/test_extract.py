"""Extraction backends, offline: missing model files give clear errors; face-alignment loads locally created
weight files; dlib runs when it and its model are installed; the dataset backend reads shipped landmarks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ferkit.data.synthetic import SyntheticFaces
from ferkit.landmarks import extract as ex
from ferkit.landmarks.extract import (
    DatasetLandmarks,
    FaceAlignmentBackend,
    LandmarkStatus,
    create_backend,
    dlib_model_path,
)


def test_face_alignment_names_every_missing_file_and_where_to_put_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        FaceAlignmentBackend(model_dir=tmp_path, detector="sfd")
    msg = str(err.value)
    assert "2DFAN4-11f355bf06.pth.tar" in msg and "s3fd-619a316812.pth" in msg and str(tmp_path) in msg
    assert "never downloads" in msg


def test_face_alignment_default_folder_is_its_torch_hub_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    with pytest.raises(FileNotFoundError) as err:
        FaceAlignmentBackend()
    assert str(tmp_path / "th" / "hub" / "checkpoints") in str(err.value)


@pytest.fixture(scope="module")
def fan_dir(tmp_path_factory):
    """A locally created (randomly initialised) FAN weights file under face-alignment's file name (one hourglass
    module instead of the released four, to keep the CPU test fast; the loading code is the same)."""
    fa_models = pytest.importorskip("face_alignment.models")
    d = tmp_path_factory.mktemp("fan")
    torch.manual_seed(0)
    torch.save(fa_models.FAN(1).state_dict(), d / ex.FAN_MODEL_FILES["2DFAN-4"])
    return d


def test_face_alignment_runs_offline_from_local_weights(fan_dir) -> None:
    # the thread count is restored after each test (tests/conftest.py)
    torch.set_num_threads(2)
    backend = create_backend("fan", model_dir=fan_dir, network_size=1)
    assert backend.model_path.parent == fan_dir and backend.config()["detector"] == "box"
    img = np.random.default_rng(0).integers(0, 255, size=(48, 48), dtype=np.uint8)
    (res,) = backend.predict([img])
    assert res.status == LandmarkStatus.FALLBACK  # the fixed crop box: no detector ran
    assert res.points.shape == (68, 2) and np.isfinite(res.points).all()
    # the FAN crop covers the face box: every heatmap cell maps into (a margin around) the image
    assert res.points.min() > -20 and res.points.max() < 68


def test_face_alignment_rejects_a_wrong_weights_file(tmp_path) -> None:
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / ex.FAN_MODEL_FILES["2DFAN-4"])
    with pytest.raises(RuntimeError, match="not a 2D FAN-4 state dict"):
        FaceAlignmentBackend(model_dir=tmp_path)


def test_dlib_model_path_resolution_and_message(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("FERKIT_DLIB_MODEL", raising=False)
    monkeypatch.setenv("FERKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(ex, "SYSTEM_DLIB_DIRS", (tmp_path / "system",))
    with pytest.raises(FileNotFoundError) as err:
        dlib_model_path()
    assert "shape_predictor_68_face_landmarks.dat" in str(err.value) and str(tmp_path / "dlib") in str(err.value)
    assert "libdlib-data" in str(err.value)
    # a system package's file is found when the cache has none, and the cache wins over it
    (tmp_path / "system").mkdir()
    system = tmp_path / "system" / "shape_predictor_68_face_landmarks.dat"
    system.write_bytes(b"x")
    assert dlib_model_path() == system
    (tmp_path / "dlib").mkdir()
    cached = tmp_path / "dlib" / "shape_predictor_68_face_landmarks.dat"
    cached.write_bytes(b"x")
    assert dlib_model_path() == cached
    f = tmp_path / "elsewhere.dat"
    f.write_bytes(b"x")
    monkeypatch.setenv("FERKIT_DLIB_MODEL", str(f))
    assert dlib_model_path() == f
    assert dlib_model_path(f) == f


def _dlib_or_skip():
    pytest.importorskip("dlib")
    try:
        return dlib_model_path()
    except FileNotFoundError:
        pytest.skip("dlib's 68-point model is not installed (see ferkit.landmarks.extract.dlib_model_path)")


def test_dlib_finds_landmarks_of_synthetic_faces() -> None:
    """Against the exact landmarks the synthetic faces are drawn from (skips without dlib or its model)."""
    model = _dlib_or_skip()
    ds = SyntheticFaces(num_samples=6, image_size=96, seed=3, difficulty=0.0)
    backend = create_backend("dlib", model_path=model)
    results = backend.process(ds, range(len(ds)))
    assert all(r.status in (LandmarkStatus.DETECTED, LandmarkStatus.FALLBACK) for r in results)
    err = [np.abs(r.points - ds.landmarks[i]).mean() for i, r in enumerate(results)]
    assert float(np.median(err)) < 0.1 * 96  # a cartoon face: loose, but far from random placement


def test_dlib_without_fallback_reports_failures() -> None:
    model = _dlib_or_skip()
    backend = create_backend("dlib", model_path=model, fallback_box=None)
    (res,) = backend.predict([np.zeros((48, 48), np.uint8)])  # a blank image has no face
    assert res.status == LandmarkStatus.FAILED and res.points is None
    (res,) = create_backend("dlib", model_path=model).predict([np.zeros((48, 48), np.uint8)])
    assert res.status == LandmarkStatus.FALLBACK and res.points.shape == (68, 2)


def test_dataset_backend_reads_shipped_landmarks() -> None:
    ds = SyntheticFaces(num_samples=4, image_size=32)
    ds.landmarks = ds.landmarks.copy()
    ds.landmarks[2, 5] = np.nan
    res = DatasetLandmarks().process(ds, [0, 2])
    np.testing.assert_array_equal(res[0].points, ds.landmarks[0])
    assert res[0].status == LandmarkStatus.DETECTED and res[1].status == LandmarkStatus.FAILED and res[1].points is None
    ds.landmarks = None
    with pytest.raises(ValueError, match="ships no landmarks"):
        DatasetLandmarks().process(ds, [0])


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="unknown landmark backend"):
        create_backend("mediapipe")


def test_fan_heatmap_decoding_by_hand() -> None:
    hm = np.zeros((1, 64, 64), np.float32)
    hm[0, 20, 10] = 1.0
    hm[0, 20, 11] = 0.5  # right neighbour higher than the left one -> +0.25 cell in x
    hm[0, 19, 10] = 0.2  # upper neighbour higher than the lower one -> -0.25 cell in y
    centre, scale = np.array([100.0, 80.0]), 0.64  # a 128-pixel box: 2 image pixels per heatmap cell
    pts, score = ex._decode_heatmaps(hm, centre, scale)
    cell = np.array([10 + 1 + 0.25 - 0.5, 20 + 1 - 0.25 - 0.5])
    np.testing.assert_allclose(pts[0], centre - 64 + cell * 2, rtol=1e-6)
    assert score[0] == 1.0
