"""Every packaged config parses and instantiates (model, data module, trainer; no training), keeps one checkpoint
copy per role; the benchmark scripts' helpers choose result paths that a smoke run cannot write over."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import shared_data_path, synthetic_source_args
from ferkit.commands.lightning_cli import build_cli, packaged_configs
from ferkit.methods import FERModule

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(packaged_configs().items())


def test_configs_are_packaged() -> None:
    names = {name for name, _ in CONFIGS}
    assert {"arm_ferplus", "asm_synthetic", "lanet_synthetic", "avg_synthetic", "demo"} <= names
    assert not (REPO / "configs").exists(), "configs live in ferkit/configs (package data), not at the top level"


@pytest.mark.parametrize("name,path", CONFIGS, ids=[n for n, _ in CONFIGS])
def test_every_config_keeps_one_checkpoint_copy_per_role(name: str, path: Path) -> None:
    cfg = yaml.safe_load(path.read_text())
    ckpts = [cb.get("init_args") or {} for cb in (cfg.get("trainer") or {}).get("callbacks") or []
             if str(cb.get("class_path", "")).endswith("ModelCheckpoint")]
    assert ckpts, f"{name} keeps no checkpoint"
    # save_last on a callback that also keeps its own top-k file writes the same checkpoint twice
    assert not any(a.get("save_last") for a in ckpts), name
    assert sum(1 for a in ckpts if a.get("monitor")) <= 1, name
    unmonitored = [a for a in ckpts if not a.get("monitor")]
    assert all(a.get("filename") == "last" for a in unmonitored), name  # last.ckpt, rewritten every epoch


def _offline(args: list[str], cfg: dict) -> list[str]:
    """No pretrained weights, no GPU: instantiation must not need files or devices this machine lacks."""
    out = ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.logger=false", "--trainer.precision=32-true",
           "--model.init_args.net.pretrained=null"]
    if (cfg.get("trainer") or {}).get("strategy"):
        out.append("--trainer.strategy=auto")
    if (cfg.get("trainer") or {}).get("sync_batchnorm"):
        out.append("--trainer.sync_batchnorm=false")
    return args + out


@pytest.mark.parametrize("name,path", CONFIGS, ids=[n for n, _ in CONFIGS])
def test_every_config_parses_and_instantiates(name: str, path: Path, tmp_path, monkeypatch, one_thread) -> None:
    cfg = yaml.safe_load(path.read_text())
    monkeypatch.chdir(tmp_path)
    args = _offline(["--config", name], cfg)
    source = cfg["data"]["dataset"]
    root = (source.get("init_args") or {}).get("root")
    if root is not None and str(root).startswith("../shared/data/"):  # relative to the repository root
        root = shared_data_path() / str(root)[len("../shared/data/"):]
        args.append(f"--data.dataset.init_args.root={root}")
    if root is not None and not Path(root).exists():
        # the dataset is not on this machine: check the model part against a synthetic data module of the same
        # geometry and label-space size (the data section itself is parsed; only reading its files is skipped)
        n = (source.get("init_args") or {}).get("num_classes", 7 if "FERPlus" not in source["class_path"] else 8)
        if n != 7:
            pytest.skip(f"{name}: {root} is absent and synthetic faces have 7 classes, the config {n}")
        args += synthetic_source_args() + ["--data.landmarks_cache=null"]
    cli = build_cli(args=args, run=False)
    assert isinstance(cli.model, FERModule)
    assert cli.model.hparams.num_classes == cli.datamodule.num_classes
    assert cli.model.hparams.img_size == cfg["data"]["img_size"]
    cli.model.configure_model()
    x = torch.zeros(2, cli.model.hparams.in_chans, cfg["data"]["img_size"], cfg["data"]["img_size"])
    cli.model.eval()
    with torch.no_grad():
        assert cli.model(x).shape == (2, cli.model.hparams.num_classes)


def _common():
    spec = importlib.util.spec_from_file_location("ferkit_bench_common", REPO / "benchmarks" / "common.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("ferkit_bench_common", mod)
    spec.loader.exec_module(mod)
    return mod


def test_result_path_keeps_smoke_runs_away_from_the_committed_results(tmp_path: Path) -> None:
    common = _common()
    results = REPO / "benchmarks" / "results"
    assert common.result_path(None, "arm_speed", smoke=False) == results / "arm_speed.json"
    assert common.result_path(None, "arm_speed", smoke=True) == common.smoke_dir() / "arm_speed.json"
    assert not common.smoke_dir().resolve().is_relative_to(REPO)
    assert common.result_path(tmp_path / "r.json", "arm_speed", smoke=True) == (tmp_path / "r.json").resolve()
    # an explicit path into the results folder is a real run's choice, refused for a smoke run
    assert common.result_path(results / "x.json", "arm_speed", smoke=False) == (results / "x.json").resolve()
    with pytest.raises(SystemExit, match="committed"):
        common.result_path(results / "sub" / "x.json", "arm_speed", smoke=True)


def test_shared_data_root_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    common = _common()
    monkeypatch.setenv("FERKIT_SHARED_DATA", str(tmp_path))
    assert common.shared_data_root() == tmp_path
    monkeypatch.delenv("FERKIT_SHARED_DATA")
    assert common.shared_data_root() == REPO.parent / "shared" / "data"
