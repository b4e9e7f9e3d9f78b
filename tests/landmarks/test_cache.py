"""Landmark cache files: round trip, resumable extraction, failure records, attaching to datasets."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ferkit.core.errors import DataError
from ferkit.data.base import FERDataset, SubsetFER
from ferkit.core.labels import LabelSpace
from ferkit.landmarks.cache import LandmarkCache, attach_landmarks, cache_file_name, extract_landmarks
from ferkit.landmarks.extract import LandmarkResult, LandmarkStatus


class TinyFaces(FERDataset):
    """n random 16x16 images; ids name the sample."""

    def __init__(self, n: int = 10, prefix: str = "img") -> None:
        super().__init__(LabelSpace.basic(7))
        self.labels = np.arange(n) % 7
        self.ids = [f"{prefix}{i:03d}.png" for i in range(n)]
        self._images = np.random.default_rng(0).integers(0, 255, size=(n, 16, 16), dtype=np.uint8)

    def load_image(self, index: int) -> np.ndarray:
        return self._images[index]


def _points(i: int) -> np.ndarray:
    return np.full((68, 2), float(i), np.float32) + np.arange(68, dtype=np.float32)[:, None] / 100


class FakeBackend:
    """Deterministic points from the index; FAILED for multiples of 4, FALLBACK for index 1; can 'crash'."""

    name = "fake"

    def __init__(self, crash_after: int | None = None) -> None:
        self.crash_after, self.calls = crash_after, []

    def config(self) -> dict:
        return {"backend": self.name}

    def process(self, dataset, indices):
        out = []
        for i in indices:
            if self.crash_after is not None and len(self.calls) >= self.crash_after:
                raise KeyboardInterrupt("simulated interruption")
            self.calls.append(i)
            if i % 4 == 0:
                out.append(LandmarkResult(None, LandmarkStatus.FAILED))
            else:
                out.append(LandmarkResult(_points(i), LandmarkStatus.FALLBACK if i == 1 else LandmarkStatus.DETECTED, 0.5))
        return out


def test_round_trip_and_failure_records(tmp_path) -> None:
    ds = TinyFaces(10)
    out = tmp_path / "tiny_train.npz"
    cache = extract_landmarks(ds, FakeBackend(), out, batch_size=3, progress=False, meta={"dataset": "tiny"})
    loaded = LandmarkCache.load(out)
    np.testing.assert_array_equal(loaded.landmarks, cache.landmarks)
    np.testing.assert_array_equal(loaded.status, cache.status)
    assert loaded.ids.tolist() == ds.ids and loaded.meta["dataset"] == "tiny" and loaded.meta["backend"] == {"backend": "fake"}
    assert loaded.failed.tolist() == [0, 4, 8]
    s = loaded.summary()
    assert (s["detected"], s["fallback"], s["failed"], s["done"]) == (6, 1, 3, 10)
    assert s["failure_rate"] == pytest.approx(0.3) and s["seconds_per_image"] >= 0
    for i in range(10):
        if i % 4 == 0:
            assert np.isnan(loaded.landmarks[i]).all()
        else:
            np.testing.assert_array_equal(loaded.landmarks[i], _points(i))


def test_extraction_resumes_after_an_interruption(tmp_path) -> None:
    ds = TinyFaces(10)
    out = tmp_path / "c.npz"
    with pytest.raises(KeyboardInterrupt):
        extract_landmarks(ds, FakeBackend(crash_after=5), out, batch_size=2, save_every=1, progress=False)
    partial = LandmarkCache.load(out)
    assert partial.summary()["done"] == 4 and partial.pending.tolist() == [4, 5, 6, 7, 8, 9]
    second = FakeBackend()
    resumed = extract_landmarks(ds, second, out, batch_size=2, progress=False)
    assert second.calls == [4, 5, 6, 7, 8, 9]  # only the pending samples
    full = extract_landmarks(ds, FakeBackend(), tmp_path / "full.npz", progress=False)
    np.testing.assert_array_equal(resumed.landmarks, full.landmarks)
    np.testing.assert_array_equal(resumed.status, full.status)
    # nothing left: a third run processes nothing
    third = FakeBackend()
    extract_landmarks(ds, third, out, progress=False)
    assert third.calls == []
    # no-resume starts over
    fresh = FakeBackend()
    extract_landmarks(ds, fresh, out, resume=False, progress=False)
    assert fresh.calls == list(range(10))


def test_resume_refuses_a_cache_of_other_data(tmp_path) -> None:
    out = tmp_path / "c.npz"
    extract_landmarks(TinyFaces(10), FakeBackend(), out, progress=False)
    with pytest.raises(DataError, match="do not match"):
        extract_landmarks(TinyFaces(10, prefix="other"), FakeBackend(), out, progress=False)


def test_attach_sets_nan_for_failed_faces_and_checks_ids(tmp_path) -> None:
    ds = TinyFaces(10)
    extract_landmarks(ds, FakeBackend(), tmp_path / "tiny_train.npz", progress=False)
    attach_landmarks(ds, tmp_path / "tiny_train.npz")
    assert ds.landmarks.shape == (10, 68, 2)
    assert np.isnan(ds.landmarks[[0, 4, 8]]).all() and np.isfinite(ds.landmarks[[1, 2, 3]]).all()
    item = ds[2]
    assert item["landmarks"].shape == (68, 2)
    # fallback points can be refused
    ds2 = TinyFaces(10)
    attach_landmarks(ds2, tmp_path / "tiny_train.npz", accept_fallback=False)
    assert np.isnan(ds2.landmarks[1]).all() and np.isfinite(ds2.landmarks[2]).all()
    with pytest.raises(DataError, match="not in it"):
        attach_landmarks(TinyFaces(10, prefix="other"), tmp_path / "tiny_train.npz")


def test_attach_finds_the_split_file_in_a_folder_and_matches_by_id(tmp_path) -> None:
    ds = TinyFaces(10)
    extract_landmarks(ds, FakeBackend(), tmp_path / "tiny_train.npz", progress=False)
    extract_landmarks(TinyFaces(3, prefix="t"), FakeBackend(), tmp_path / "tiny_test.npz", progress=False)
    # a reordered selection of the samples (another label mode, a subset): matched by id
    sub = SubsetFER(ds, [7, 2, 5])
    sub.landmarks = None
    attach_landmarks(sub, tmp_path, split="train")
    np.testing.assert_array_equal(sub.landmarks, np.stack([_points(7), _points(2), _points(5)]))
    with pytest.raises(FileNotFoundError, match="val"):
        attach_landmarks(ds, tmp_path, split="val")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        attach_landmarks(ds, tmp_path / "nope")


def test_incomplete_cache_attaches_with_missing_rows(tmp_path, caplog) -> None:
    ds = TinyFaces(6)
    extract_landmarks(ds, FakeBackend(), tmp_path / "c.npz", limit=3, progress=False)
    attach_landmarks(ds, tmp_path / "c.npz")
    assert np.isfinite(ds.landmarks[[1, 2]]).all() and np.isnan(ds.landmarks[3:]).all()
    assert "never processed" in caplog.text


def test_extracted_split_files_attach_through_the_datamodule(tmp_path) -> None:
    # (the command line that writes these files, ``ferkit landmarks extract``, is tested with the commands)
    from ferkit.data import FERDataModule, SyntheticSource
    from ferkit.data.synthetic import SyntheticFaces
    from ferkit.landmarks.extract import create_backend

    source = SyntheticSource(num_train=12, num_val=5, num_test=4, image_size=32)
    for split in ("train", "val", "test"):
        extract_landmarks(source.build(split), create_backend("dataset"), tmp_path / "lm" / cache_file_name("synthetic", split),
                          progress=False)
    assert sorted(p.name for p in (tmp_path / "lm").iterdir()) == ["synthetic_test.npz", "synthetic_train.npz", "synthetic_val.npz"]
    for split, shift in (("train", 1.0), ("val", 2.0)):  # mark each file, to see that the data module reads it
        file = tmp_path / "lm" / cache_file_name("synthetic", split)
        cache = LandmarkCache.load(file)
        cache.landmarks += shift
        cache.save(file)
    dm = FERDataModule(dataset=source, img_size=32, batch_size=4, landmarks_cache=str(tmp_path / "lm"))
    dm.setup("fit")
    truth = SyntheticFaces(num_samples=12, split="train", image_size=32)
    np.testing.assert_allclose(dm.train_set.landmarks, truth.landmarks + 1.0)
    np.testing.assert_allclose(dm.val_set.landmarks, source.build("val").landmarks + 2.0)
