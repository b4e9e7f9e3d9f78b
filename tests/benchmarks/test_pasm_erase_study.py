"""``benchmarks/pasm_erase_study.py``: the located and the random erasing use the same box, the result file's shares are
consistent, a centre file of other data is refused, and the test split is never read (tiny fake FER+ folder)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import pasm_erase_study as study
from conftest import write_network_checkpoint
from ferkit.data.erasing import save_centres

USAGES = ["Training"] * 24 + ["PublicTest"] * 10 + ["PrivateTest"] * 4


@pytest.fixture()
def fer_root(fake_ferplus) -> Path:
    votes = [[0] * 10 for _ in USAGES]
    for r, v in enumerate(votes):
        v[r % 8] = 10  # a clear majority for every image, all 8 classes used
    return fake_ferplus(USAGES, votes, name="fer")


def test_located_and_random_erasing_draw_the_same_box() -> None:
    x = torch.zeros(6, 1, 48, 48)
    centres = np.array([[10, 10], [40, 40], [24, 24], [5, 30], [30, 5], [24, 40]])
    views, areas = study.erased_views(x, centres, {"area": (0.02, 0.2), "aspect": (0.3, 3.3), "fill": 5.0}, seed=3)
    for i, (cx, cy) in enumerate(centres):
        loc, rnd = views["located"][i, 0] == 5.0, views["random"][i, 0] == 5.0
        assert loc.sum() == rnd.sum() == round(areas[i] * 48 * 48)  # the same box size, every image erased
        assert 0.02 * 0.9 <= areas[i] <= 0.2 * 1.1
        ys, xs = torch.nonzero(loc, as_tuple=True)
        assert xs.min() <= cx <= xs.max() and ys.min() <= cy <= ys.max()  # the located box holds its centre


def test_study_writes_consistent_shares_and_never_reads_the_test_split(fer_root: Path, tmp_path: Path,
                                                                       monkeypatch) -> None:
    from ferkit.data import FERPlusSource

    built = []
    real_build = FERPlusSource.build
    monkeypatch.setattr(FERPlusSource, "build", lambda self, split, **kw: built.append(split) or real_build(self, split, **kw))
    teacher = write_network_checkpoint(tmp_path / "teacher.ckpt")
    centres = save_centres(tmp_path / "c.pt", np.tile([[23, 31]], (24, 1)))
    out, plot = tmp_path / "study.json", tmp_path / "centres.png"
    threads = torch.get_num_threads()
    try:
        study.main(["--ferplus-root", str(fer_root), "--teacher", str(teacher), "--centres", str(centres),
                    "--net", f"a={teacher}", "--train-images", "16", "--val-images", "8", "--max-points", "8",
                    "--batch-size", "8", "--output", str(out), "--plot", str(plot)])
    finally:
        torch.set_num_threads(threads)
    assert "test" not in built and {"train", "val"} <= set(built)
    r = json.loads(out.read_text())
    assert plot.is_file() and r["train_side"]["images"] == 16 and r["val_side"]["images"] == 8
    for side in (r["train_side"]["teacher"], r["val_side"]["networks"]["a"]):
        assert set(side) == {"clean", "located", "random"}
        for k in ("located", "random"):
            assert 0 <= side[k]["flipped_from_right"] <= side["clean"]["acc"]
            # P(right erased) >= P(right clean and right erased) = P(right clean) - P(right clean, wrong erased)
            assert side[k]["acc"] >= side["clean"]["acc"] - side[k]["flipped_from_right"] - 1e-4
    bins = r["train_side"]["teacher"]["located"]["by_area"]
    assert sum(b["images"] for b in bins) == 16
    assert r["centres"]["images"] == 24 and r["centres"]["distinct_positions"] == 1
    assert r["centres"]["top5_positions"][0] == {"xy": [23, 31], "share": 1.0}
    assert r["centres"]["rows_top_middle_bottom"] == [0.0, 1.0, 0.0]  # y = 31 lies in the middle third (16..32)


def test_a_centre_file_of_other_data_is_refused(fer_root: Path, tmp_path: Path) -> None:
    teacher = write_network_checkpoint(tmp_path / "teacher.ckpt")
    centres = save_centres(tmp_path / "c.pt", np.zeros((5, 2)))
    with pytest.raises(SystemExit, match="holds 5 centres but the FER\\+ training split has 24"):
        study.main(["--ferplus-root", str(fer_root), "--teacher", str(teacher), "--centres", str(centres),
                    "--output", str(tmp_path / "x.json"), "--plot", str(tmp_path / "x.png")])
    assert not (tmp_path / "x.json").exists()
