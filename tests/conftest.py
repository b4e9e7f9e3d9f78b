"""Fixtures shared by the whole test suite.

The synthetic data module and the CLI's data arguments are built in ONE place each (:func:`make_synthetic_dm`,
:func:`make_synthetic_data_args`, :func:`synthetic_source_args`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

# On a small shared CPU, busy-waiting OpenMP threads slow every other process down; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Under pytest-xdist (two workers by default, see ``pytest_cmdline_main`` below) each worker is one of the machine's
# cores: one intra-op thread per worker (and per process a test starts, which inherits it), instead of two workers each
# spreading over both cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_BACKBONE = "resnet10t"  # the smallest timm ResNet: the same code paths as resnet18 at a fraction of the cost
#: worker processes when pytest-xdist (the ``dev`` extra) is installed and ``-n`` is not given
DEFAULT_WORKERS = 2


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Two pytest-xdist workers, each test file on one worker (``--dist loadfile``), when xdist is installed and the
    command line does not say ``-n``; one process without xdist, under ``--pdb`` or ``--trace``, or with ``-n 0``.

    This default lives here rather than in ``addopts``: there ``-n 2`` made plain ``pytest`` fail with "unrecognized
    arguments: -n" wherever the ``dev`` extra (which brings xdist) was not installed. Runs before xdist's own hook
    (registered later, so called first among ``tryfirst`` hooks), which turns the count into worker processes."""
    option = config.option
    if getattr(option, "numprocesses", 0) is not None:  # no xdist (no such option), or -n given
        return
    if hasattr(config, "workerinput") or option.usepdb or getattr(option, "trace", False) or option.collectonly:
        return
    option.numprocesses = DEFAULT_WORKERS
    if option.dist == "no" and not option.distload:
        option.dist = "loadfile"


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


def make_synthetic_dm(num_train: int = 64, num_val: int = 32, num_test: int = 32, image_size: int = 32, **kw: Any):
    """A FERDataModule over the synthetic faces (``img_size`` defaults to ``image_size``)."""
    from ferkit.data import FERDataModule, SyntheticSource

    kw.setdefault("img_size", image_size)
    kw.setdefault("batch_size", 16)
    source = SyntheticSource(num_train=num_train, num_val=num_val, num_test=num_test, image_size=image_size)
    return FERDataModule(dataset=source, **kw)


@pytest.fixture
def synthetic_dm() -> Callable[..., Any]:
    """Factory: ``synthetic_dm(num_train=64, num_val=32, num_test=32, image_size=32, **datamodule_kwargs)``."""
    return make_synthetic_dm


def make_synthetic_data_args(num_train: int = 48, num_val: int = 24, num_test: int = 24, image_size: int = 32) -> list[str]:
    """CLI arguments that shrink a packaged synthetic config's data to a tiny set at ``image_size`` px."""
    return [f"--data.dataset.init_args.num_train={num_train}", f"--data.dataset.init_args.num_val={num_val}",
            f"--data.dataset.init_args.num_test={num_test}", f"--data.dataset.init_args.image_size={image_size}",
            f"--data.img_size={image_size}", "--data.batch_size=16", "--data.eval_batch_size=32"]


def synthetic_source_args(num_train: int = 8, num_val: int = 8, num_test: int = 8) -> list[str]:
    """CLI arguments that replace a config's dataset by a few synthetic faces (its sampler dropped)."""
    sizes = f"{{num_train: {num_train}, num_val: {num_val}, num_test: {num_test}}}"
    return [f"--data.dataset={{class_path: ferkit.data.SyntheticSource, init_args: {sizes}}}", "--data.sampler=null"]


@pytest.fixture
def synthetic_data_args() -> Callable[..., list[str]]:
    return make_synthetic_data_args


def write_network_checkpoint(path: Path, backbone: str = TINY_BACKBONE, num_classes: int = 8, in_chans: int = 1,
                             img_size: int = 48) -> Path:
    """A checkpoint in ferkit's single-network layout (``net`` and shape hyper-parameters, ``model.*`` weights) of a
    freshly initialised average-pooling network (seeded): what :func:`ferkit.methods.pasm.load_network` reads."""
    import torch

    from ferkit.models import FERNetConfig

    cfg = {"backbone": backbone, "pool": "avg", "small_input": False}
    torch.manual_seed(0)
    net = FERNetConfig.coerce(cfg).build(num_classes=num_classes, in_chans=in_chans, img_size=img_size)
    torch.save({"hyper_parameters": {"net": cfg, "num_classes": num_classes, "in_chans": in_chans, "img_size": img_size},
                "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, path)
    return path


@pytest.fixture
def fake_ferplus(tmp_path, monkeypatch) -> Callable[..., Path]:
    """``make(usages, votes, name="data") -> folder``: a FER+ folder (``fer2013.csv`` with random pixels and FER2013
    label ``row % 7``, ``fer2013new.csv`` with the given 10-column vote rows) under ``tmp_path``; ferkit's dataset cache
    goes to ``tmp_path`` too and its in-process memo is cleared before and after."""
    import numpy as np

    from ferkit.data import fer2013 as fer2013_module

    monkeypatch.setenv("FERKIT_CACHE", str(tmp_path / "cache"))
    fer2013_module._MEMO.clear()

    def make(usages: list[str], votes: list[list[int]], name: str = "data") -> Path:
        d = tmp_path / name
        d.mkdir()
        rng = np.random.default_rng(0)
        rows = [f"{r % 7},{' '.join(map(str, rng.integers(0, 256, 2304)))},{u}\n" for r, u in enumerate(usages)]
        (d / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "".join(rows))
        head = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
        (d / "fer2013new.csv").write_text(head + "".join(
            f"{u},fer{r:07d}.png,{','.join(map(str, v))}\n" for r, (u, v) in enumerate(zip(usages, votes))))
        return d

    yield make
    fer2013_module._MEMO.clear()


@pytest.fixture
def tiny_trainer(tmp_path) -> Callable[..., Any]:
    """Factory: a CPU Trainer without logger, progress bar or summary (``**kw`` override)."""
    import lightning as L

    def make(root: Path | None = None, **kw: Any):
        args = dict(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(root or tmp_path),
                    log_every_n_steps=1)
        args.update(kw)
        return L.Trainer(**args)

    return make


@pytest.fixture
def tiny_module() -> Callable[..., Any]:
    """Factory: ``tiny_module(cls, dm, net=None, **kw)``, a method on ``dm``'s label space with a tiny backbone."""
    from ferkit.models import FERNetConfig

    def make(cls, dm, net: dict[str, Any] | None = None, **kw: Any):
        import torch

        torch.manual_seed(0)
        cfg = FERNetConfig(**{"backbone": TINY_BACKBONE, "small_input": True, **(net or {})})
        args = dict(net=cfg, num_classes=dm.num_classes, class_names=dm.class_names, img_size=dm.hparams.img_size,
                    in_chans=dm.hparams.channels)
        args.update(kw)
        return cls(**args)

    return make


# ---------------------------------------------------------------------------------------------------------------------
# Disk: many tests fit a real ResNet-18 and write 45-350 MB of checkpoints each; the whole suite wrote 6.5 GiB, which
# once filled the CI machine's disk. A passing test's checkpoints are deleted as soon as it ends (a failing test keeps
# them for inspection), and pytest keeps the temporary folders of failed tests only (pyproject.toml).
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    item.stash.setdefault(_OUTCOMES, {})[report.when] = report.passed
    return report


_OUTCOMES = pytest.StashKey[dict]()


@pytest.fixture(autouse=True)
def _drop_checkpoints_of_passing_tests(request):
    root = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if root is None or not request.node.stash.get(_OUTCOMES, {}).get("call", False):
        return
    for f in root.rglob("*.ckpt"):
        f.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _restore_threads_and_random_state():
    """Tests that set torch's thread count or seed the global generators (directly, or through Lightning's
    ``seed_everything``) leave them as they found them, so no test depends on which tests ran before it."""
    import random

    import numpy as np
    import torch

    threads = torch.get_num_threads()
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    yield
    torch.set_num_threads(threads)
    torch.set_rng_state(states[0])
    np.random.set_state(states[1])
    random.setstate(states[2])


def run_side_by_side(commands: dict[str, list[str]], timeout: float = 600, **popen_kw: Any) -> dict[str, tuple[int, str]]:
    """Start independent commands at once and wait for all: ``name -> (exit status, stdout and stderr together)``.
    Most of a small test process's time is its single-threaded start-up (importing torch and Lightning), which
    two cores overlap. A command past ``timeout`` seconds is killed (its status is then negative)."""
    import subprocess

    procs = {name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen_kw)
             for name, cmd in commands.items()}
    out = {}
    for name, proc in procs.items():
        try:
            text, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            text, _ = proc.communicate()
        out[name] = (proc.returncode, text)
    return out
