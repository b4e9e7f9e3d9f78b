"""``ferkit omni embed | mine | distill`` end to end on a folder of synthetic faces, each step resumed."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch

from ferkit.cli import main
from ferkit.data import SyntheticFaces
from ferkit.methods.omni import CondensedSet
from ferkit.state.embedding_store import EmbeddingStore

IMG = 32


@pytest.mark.slow
def test_embed_mine_distill_on_a_folder_pool(tmp_path, monkeypatch, synthetic_data_args, one_thread, capsys):
    monkeypatch.chdir(tmp_path)
    data = [*synthetic_data_args(num_train=28, num_val=7, num_test=7, image_size=IMG),
            "--model.init_args.net.backbone=test_resnet"]
    config = ["--config", "avg_synthetic", *data]
    main(["fit", *config, "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
          "--trainer.enable_model_summary=false", "--trainer.limit_val_batches=0"])
    ckpt = tmp_path / "runs/avg_synthetic/version_0/checkpoints/last.ckpt"
    # a pool: 20 faces of another seed in nested folders, plus a planted copy of a test image
    faces = SyntheticFaces(num_samples=20, split="train", image_size=IMG, seed=5)
    for i in range(20):
        sub = tmp_path / "pool" / f"person{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sub / f"{i}.png"), cv2.cvtColor(faces.load_image(i), cv2.COLOR_RGB2BGR))
    test_face = SyntheticFaces(num_samples=7, split="test", image_size=IMG, seed=0).load_image(3)
    cv2.imwrite(str(tmp_path / "pool/copy_of_test.png"), cv2.cvtColor(test_face, cv2.COLOR_RGB2BGR))

    emb = tmp_path / "emb"
    embed = ["omni", "embed", "--ckpt", str(ckpt), "--pool", str(tmp_path / "pool"), "--out", str(emb),
             "--batch_size", "8", *config]
    main(embed)
    store = EmbeddingStore(emb)
    assert len(store) == 20 and store.complete   # the copy of a test image was left out
    assert not any("copy_of_test" in i for i in store.ids())
    first = store.features.read(0, 20).clone()
    written = (emb / "features.f16").stat().st_mtime_ns
    main(embed)   # resumed: nothing left to do, nothing changed
    assert torch.equal(EmbeddingStore(emb).features.read(0, 20), first)
    assert (emb / "features.f16").stat().st_mtime_ns == written  # not written again

    out = tmp_path / "mined.csv"
    mine = ["omni", "mine", "--ckpt", str(ckpt), "--store", str(emb), "--out", str(out), "--tau_sim", "-1",
            "--tau_conf", "0", "--margin", "0", "--max_per_class", "2", *config]
    main(mine)
    rows = list(csv.DictReader(out.open()))
    summary = json.loads(out.with_name("mined.csv.json").read_text())
    assert len(rows) == summary["mined"] and 1 <= len(rows) <= 14
    assert max(summary["per_class"].values()) <= 2
    assert all(r["path"].endswith(".png") and (tmp_path / "pool") .as_posix() in r["path"] for r in rows)
    assert (emb / "prototypes.pt").is_file()
    fitted = (emb / "prototypes.pt").stat().st_mtime_ns
    capsys.readouterr()
    main(mine)   # resumed: the prototypes are reused, the manifest is the same
    assert "reusing the prototypes in" in capsys.readouterr().out
    assert (emb / "prototypes.pt").stat().st_mtime_ns == fitted
    assert list(csv.DictReader(out.open())) == rows

    distilled = tmp_path / "distilled.pt"
    distill = ["omni", "distill", "--manifest", str(out), "--out", str(distilled), "--ipc", "1", "--iterations", "2",
               "--batch_real", "4", "--method", "distribution_matching", *config]
    main(distill)
    got = CondensedSet.load(distilled)
    assert got.class_names == list(summary["per_class"]) and got.images.shape[1:] == (3, IMG, IMG)
    assert torch.isfinite(got.images).all() and got.labels.tolist() == list(range(7))
    assert cv2.imread(str(tmp_path / "distilled.png")).shape[0] > 7 * IMG   # the contact sheet, a row per class
    made = distilled.stat().st_mtime_ns
    capsys.readouterr()
    main(distill)   # done already: the file is kept, not distilled again
    assert "exists; delete it to distil again" in capsys.readouterr().out
    assert distilled.stat().st_mtime_ns == made and torch.equal(CondensedSet.load(distilled).images, got.images)
    # a distilled set for the training module: OmniClassifier reads it at fit start
    main(["fit", *config, "--model=ferkit.methods.OmniClassifier", f"--model.init_args.distilled={distilled}",
          "--model.init_args.net.backbone=test_resnet", "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
          "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false"])
    # a manifest with one class only (strict thresholds often mine nothing of a rare class): the other classes are
    # distilled from the labelled training set, and the distilled file says so; --missing error stops instead
    one = [r for r in rows if r["pseudo_label"] == rows[0]["pseudo_label"]]
    single = tmp_path / "single.csv"
    with single.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(one)
    part = tmp_path / "part.pt"
    main(["omni", "distill", "--manifest", str(single), "--out", str(part), "--ipc", "1", "--iterations", "1",
          "--batch_real", "4", "--method", "distribution_matching", *config])
    got = CondensedSet.load(part)
    assert got.labels.tolist() == list(range(7)) and torch.isfinite(got.images).all()
    assert len(got.info["from_labelled"]) == 6 and rows[0]["pseudo_label"] not in got.info["from_labelled"]
    with pytest.raises(ValueError, match="no images of class"):
        main(["omni", "distill", "--manifest", str(single), "--out", str(tmp_path / "strict.pt"), "--ipc", "1",
              "--iterations", "1", "--missing", "error", *config])
