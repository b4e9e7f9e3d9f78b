"""PASM's centre pass under DDP: 2 gloo CPU processes locate the centres of their shards of the training set
(an odd number of images, so the sampler pads a duplicate); gathered by index, the file equals a one-process run's."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD, N, IMG = 2, 37, 24
LOCATOR = dict(max_points=12, points_per_step=4, window=8, stride=2)


def _dm():
    from ferkit.data import FERDataModule, SyntheticSource

    return FERDataModule(dataset=SyntheticSource(num_train=N, num_val=8, num_test=8, image_size=IMG), img_size=IMG,
                         batch_size=8, eval_batch_size=6)


def _teacher():
    from ferkit.models import FERNetConfig

    torch.manual_seed(0)
    return FERNetConfig(backbone="test_resnet", small_input=True).build(num_classes=7, in_chans=3, img_size=IMG)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    from ferkit.methods import precompute_centres

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        os.environ.update({"LOCAL_RANK": str(rank), "NODE_RANK": "0", "WORLD_SIZE": str(WORLD), "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": "29581"})
        centres = precompute_centres(_teacher(), _dm(), os.path.join(out_dir, "centres.pt"),
                                     trainer_kwargs=dict(devices=WORLD, strategy="ddp"), **LOCATOR)
        torch.save(centres, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_centres_equal_one_process(tmp_path, one_thread) -> None:
    from ferkit.data.erasing import load_centres
    from ferkit.methods import precompute_centres

    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    single = precompute_centres(_teacher(), _dm(), tmp_path / "single.pt", batch_size=N, **LOCATOR)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    assert single.shape == (N, 2)
    for r in ranks:
        assert torch.equal(r, single)  # every rank holds every sample's centre, by index
    assert torch.equal(torch.from_numpy(load_centres(tmp_path / "centres.pt")["centres"]), single)
