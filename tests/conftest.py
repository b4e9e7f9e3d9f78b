"""Generic fixtures shared by the whole test suite."""
from __future__ import annotations

import os
from pathlib import Path

# On a small shared CPU, busy-waiting OpenMP threads slow every other process down; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_path() -> Path:
    """Where the real datasets live: ``$FERKIT_SHARED_DATA``, else ``<repo>/../shared/data``."""
    env = os.environ.get("FERKIT_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The shared real-data folder; the test is skipped (with the path it looked at) when it is absent."""
    path = shared_data_path()
    if not path.is_dir():
        pytest.skip(f"real data not available: {path} does not exist (set FERKIT_SHARED_DATA to point at it)")
    return path


@pytest.fixture
def one_thread():
    """Many tiny CPU ops: intra-op threading only adds synchronisation cost (severe on a shared 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
