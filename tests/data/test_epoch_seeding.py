"""Inside a run, an item's augmentation and the training order are functions of (seed, epoch, index) only: the same
with any number of DataLoader workers, and the same after a restart at epoch e (exact resume)."""
from __future__ import annotations

import lightning as L
import torch

from ferkit.data import FERDataModule, ShuffleSampler, SyntheticSource

SMALL = dict(num_train=24, num_val=8, num_test=8, image_size=32)


def _dm(workers: int = 0, **kw) -> FERDataModule:
    dm = FERDataModule(dataset=SyntheticSource(**SMALL), img_size=32, batch_size=8, num_workers=workers,
                       train_preset="strong", strong_preset="weak", hflip=0.5, **kw)
    dm.setup("fit")
    return dm


def _epoch(loader, epoch: int) -> dict[int, torch.Tensor]:
    """What Lightning does each epoch: sampler.set_epoch, then a fresh iterator. Returns index -> both views."""
    loader.sampler.set_epoch(epoch)
    out = {}
    for b in loader:
        for i, idx in enumerate(b["index"].tolist()):
            out[idx] = torch.cat([b["image"][i].flatten(), b["image_strong"][i].flatten()])
    return out


def _order(loader, epoch: int) -> list[int]:
    loader.sampler.set_epoch(epoch)
    return list(loader.sampler)


def test_an_item_is_augmented_the_same_with_any_number_of_workers():
    L.seed_everything(3)
    single = _epoch(_dm(0).train_dataloader(), 1)
    L.seed_everything(3)
    workers = _epoch(_dm(2).train_dataloader(), 1)
    assert single.keys() == workers.keys() == set(range(24))
    assert all(torch.equal(single[i], workers[i]) for i in single)


def test_a_fresh_process_at_epoch_e_sees_what_an_uninterrupted_run_saw():
    L.seed_everything(0)
    loader = _dm().train_dataloader()
    seen = [(_order(loader, e), _epoch(loader, e)) for e in range(3)]
    # a resumed run: a new data module whose first epoch is 2
    L.seed_everything(0)
    resumed = _dm().train_dataloader()
    order2, views2 = _order(resumed, 2), _epoch(resumed, 2)
    assert order2 == seen[2][0]
    assert all(torch.equal(views2[i], seen[2][1][i]) for i in views2)
    # and epochs differ from each other, in order and in augmentation
    assert seen[0][0] != seen[1][0]
    assert sum(torch.equal(seen[0][1][i], seen[1][1][i]) for i in range(24)) < 24


def test_seed_everything_changes_order_and_augmentation():
    L.seed_everything(0)
    a = _dm().train_dataloader()
    L.seed_everything(1)
    b = _dm().train_dataloader()
    assert _order(a, 0) != _order(b, 0)
    va, vb = _epoch(a, 0), _epoch(b, 0)
    assert sum(torch.equal(va[i], vb[i]) for i in va) < 24


def test_shuffle_sampler_shards_one_global_permutation():
    full = ShuffleSampler(10, seed=5, num_replicas=1, rank=0)
    parts = [ShuffleSampler(10, seed=5, num_replicas=2, rank=r) for r in range(2)]
    for s in (full, *parts):
        s.set_epoch(4)
    g = list(full)
    assert sorted(g) == list(range(10))
    assert list(parts[0]) == g[0::2] and list(parts[1]) == g[1::2]
