"""The data module under a real 2-process gloo group: judging shards cover the training set in order, and the
augmentation streams differ between ranks while staying reproducible."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    os.environ.update(OMP_NUM_THREADS="1")
    # a file rendezvous: no TCP port that another process could take between choosing and binding it
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        import lightning as L

        from ferkit.data import FERDataModule, SyntheticSource

        L.seed_everything(0)
        dm = FERDataModule(dataset=SyntheticSource(num_train=21, num_val=4, num_test=4, image_size=24), img_size=24,
                           train_preset="strong", hflip=0.5)
        dm.setup("fit")
        judged = [i for b in dm.judge_dataloader(batch_size=4) for i in b["index"].tolist()]
        view = dm.train_set[0]["image"]
        Path(out, f"rank{rank}.json").write_text(json.dumps({"judged": judged, "view": view.flatten().tolist()}))
    finally:
        dist.destroy_process_group()


def _run(tmp: Path) -> list[dict]:
    mp.spawn(_worker, args=(2, str(tmp / "init"), str(tmp)), nprocs=2, join=True)
    return [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(2)]


def test_judge_shards_and_per_rank_augmentation(tmp_path, monkeypatch):
    import lightning as L

    from ferkit.data import FERDataModule, SyntheticSource

    r0, r1 = _run(tmp_path)
    # DistributedSampler without shuffling: rank r takes positions r, r + 2, ... (the last one padded)
    assert r0["judged"] == list(range(0, 21, 2)) and r1["judged"] == list(range(1, 21, 2)) + [0]
    assert r0["view"] != r1["view"]  # ranks draw different augmentations of the same item
    # reproducible: this process, told it is rank 1, draws rank 1's view again
    monkeypatch.setenv("RANK", "1")
    L.seed_everything(0)
    dm = FERDataModule(dataset=SyntheticSource(num_train=21, num_val=4, num_test=4, image_size=24), img_size=24,
                       train_preset="strong", hflip=0.5)
    dm.setup("fit")
    assert torch.equal(dm.train_set[0]["image"].flatten(), torch.tensor(r1["view"], dtype=torch.float32))
