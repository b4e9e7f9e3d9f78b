"""The package's layering (``[tool.importlinter]`` in pyproject.toml) holds: no import cycle between layers and no
import back up, function-local imports included."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_layers_contract_is_kept():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install -e .[dev])")
    env = dict(os.environ, PYTHONPATH=str(REPO))  # analyse this checkout, not another installed copy
    proc = subprocess.run([exe, "--config", str(REPO / "pyproject.toml")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
