"""Typed dataset sources: config parsing, listing, and FER2013 with FER+ clean labels (real label noise)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ferkit.core.errors import DataError
from ferkit.core.labels import CANONICAL_CLASSES
from ferkit.data import FER2013Source, FERDataModule, FERPlusSource, MRRSampling, SyntheticSource, available_sources
from ferkit.data import fer2013 as fer2013_module
from ferkit.data import ferplus as ferplus_module
from ferkit.data.fer2013 import read_fer2013_csv
from ferkit.data.ferplus import FER2013RealNoise

CID = {name: i for i, name in enumerate(CANONICAL_CLASSES)}

YAML = """
data:
  dataset:
    class_path: ferkit.data.SyntheticSource
    init_args: {num_train: 40, num_val: 14, num_test: 14, image_size: 32, seed: 3}
  img_size: 32
  channels: 1
  batch_size: 8
  sampler:
    class_path: ferkit.data.MRRSampling
    init_args: {per_class_cap: 4}
"""


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FERKIT_CACHE", str(tmp_path / "cache"))
    fer2013_module._MEMO.clear()
    ferplus_module._MEMO.clear()


def test_jsonargparse_builds_the_data_module_from_class_path_yaml(tmp_path):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(FERDataModule, "data")
    cfg = parser.parse_string(YAML)
    dm = parser.instantiate_classes(cfg).data
    assert isinstance(dm.source, SyntheticSource) and dm.source.seed == 3 and dm.source.num_train == 40
    assert isinstance(dm.sampler_factory, MRRSampling) and dm.sampler_factory.per_class_cap == 4
    dm.setup("fit")
    assert len(dm.train_set) == 40
    sampler = dm.train_dataloader().sampler
    assert type(sampler).__name__ == "MinimalRandomResamplingSampler" and len(sampler) == 4 * 7


def test_lightning_cli_builds_the_data_module_from_a_config_file(tmp_path):
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.demos.boring_classes import BoringModel

    config = tmp_path / "config.yaml"
    config.write_text(YAML + "trainer: {logger: false, enable_checkpointing: false}\n")
    cli = LightningCLI(BoringModel, FERDataModule, run=False, args=["--config", str(config)],
                       save_config_callback=None)
    dm = cli.datamodule
    assert isinstance(dm.source, SyntheticSource) and dm.hparams.channels == 1
    assert isinstance(dm.sampler_factory, MRRSampling)


def test_available_sources_lists_every_source_with_one_line():
    sources = available_sources()
    assert set(sources) == {f"ferkit.data.{n}" for n in ("SyntheticSource", "FER2013Source", "FERPlusSource",
                                                          "RAFDBSource", "AffectNetSource", "FolderSource")}
    for path, line in sources.items():
        assert line and "\n" not in line, path


def test_ferplus_source_single_soft_switch_and_errors(tmp_path):
    with pytest.raises(ValueError, match="'soft'"):
        FERPlusSource(str(tmp_path), label_mode="probability")
    with pytest.raises(DataError, match="root="):
        FERPlusSource(str(tmp_path)).build("train")


# -- FER2013 with FER+ clean labels on fake files in the real layout -------------------------------------
USAGES = ["Training", "Training", "Training", "Training", "PublicTest", "PrivateTest"]
# FER2013's own labels (0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral)
EMOTIONS = [0, 3, 6, 4, 3, 5]
# neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
VOTES = [
    [8, 2, 0, 0, 0, 0, 0, 0, 0, 0],  # r0: FER+ neutral, FER2013 angry -> disagree
    [0, 9, 1, 0, 0, 0, 0, 0, 0, 0],  # r1: happy, happy -> agree
    [4, 4, 2, 0, 0, 0, 0, 0, 0, 0],  # r2: no FER+ majority -> dropped
    [0, 0, 0, 0, 0, 0, 0, 7, 3, 0],  # r3: contempt: no 7-class majority -> dropped
    [0, 10, 0, 0, 0, 0, 0, 0, 0, 0],  # r4: happy
    [0, 0, 0, 0, 6, 4, 0, 0, 0, 0],  # r5: FER+ angry, FER2013 surprise
]


def _write_fake(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{e},{' '.join(['7'] * 2304)},{u}\n" for e, u in zip(EMOTIONS, USAGES))
    (root / "fer2013.csv").write_text("emotion,pixels,Usage\n" + rows)
    head = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
    (root / "fer2013new.csv").write_text(head + "".join(
        f"{u},fer{r:07d}.png,{','.join(map(str, v))}\n" for r, (u, v) in enumerate(zip(USAGES, VOTES))))
    return root


def test_fer2013_with_ferplus_clean_labels_on_fake_files(tmp_path):
    src = FER2013Source(str(_write_fake(tmp_path / "fer")), clean_labels="ferplus")
    train = src.build("train")
    assert isinstance(train, FER2013RealNoise)
    assert train.rows.tolist() == [0, 1] and train.dropped == 2
    assert train.labels.tolist() == [CID["angry"], CID["happy"]]  # FER2013's own labels train
    assert train.clean_labels.tolist() == [CID["neutral"], CID["happy"]]  # FER+ majority is the ground truth
    assert train.agreement == 0.5
    item = train[0]
    assert item["label"] == CID["angry"] and item["clean_label"] == CID["neutral"]
    test = src.build("test")  # evaluation against the clean labels
    assert test.labels.tolist() == [CID["angry"]] and test.clean_labels.tolist() == [CID["surprise"]]
    dm = FERDataModule(dataset=src, img_size=48, channels=1, batch_size=2)
    dm.setup("fit")
    assert dm.train_set.clean_labels is not None and len(dm.val_set) == 1
    with pytest.raises(ValueError, match="clean_labels"):
        FER2013Source(str(tmp_path), clean_labels="majority")


def test_fer2013_without_header_quotes_at_most_80_characters(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("".join(f"0,{' '.join(['7'] * 2304)},Training\n" for _ in range(3)))
    with pytest.raises(DataError) as info:
        read_fer2013_csv(path)
    message = str(info.value)
    assert len(message) < 400 and "..." in message and "emotion,pixels,Usage" in message


def test_ferplus_soft_training_is_evaluated_on_the_majority_images_and_labels(tmp_path):
    root = str(_write_fake(tmp_path / "fer"))
    soft, majority = FERPlusSource(root, label_mode="soft"), FERPlusSource(root)
    assert soft.build("train").soft_labels is not None and majority.build("train").soft_labels is None
    for split in ("val", "test"):
        s, m = soft.build(split), majority.build(split)
        assert s.soft_labels is None
        assert list(s.ids) == list(m.ids) and s.labels.tolist() == m.labels.tolist()
    assert FERPlusSource(root, label_mode="soft", eval_label_mode="soft").build("test").soft_labels is not None
