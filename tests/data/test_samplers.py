"""Class-imbalance samplers: balance, determinism by (seed, epoch), DDP slicing, Lightning compatibility."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from ferkit.data.samplers import ClassBalancedSampler, MinimalRandomResamplingSampler

# imbalanced: class 0 x 200, class 1 x 50, class 2 x 10, class 3 x 100 (median count = 75)
LABELS = np.repeat([0, 1, 2, 3], [200, 50, 10, 100])
rng = np.random.default_rng(0)
LABELS = LABELS[rng.permutation(LABELS.size)]

SAMPLERS = [
    lambda **kw: MinimalRandomResamplingSampler(LABELS, **kw),
    lambda **kw: ClassBalancedSampler(LABELS, **kw),
]
IDS = ["mrr", "balanced"]


def _hist(indices) -> np.ndarray:
    return np.bincount(LABELS[np.asarray(list(indices))], minlength=4)


def test_mrr_epoch_is_exactly_balanced_with_median_cap() -> None:
    s = MinimalRandomResamplingSampler(LABELS)
    assert s.per_class_cap == 75
    idx = list(s)
    assert len(idx) == len(s) == 300
    assert _hist(idx).tolist() == [75, 75, 75, 75]


def test_mrr_minimal_resampling() -> None:
    s = MinimalRandomResamplingSampler(LABELS, per_class_cap=60)
    idx = np.asarray(list(s))
    counts = Counter(idx.tolist())
    # majority classes (200, 100 >= 60) are subsampled WITHOUT replacement: no duplicates
    for c in (0, 3):
        members = idx[LABELS[idx] == c]
        assert members.size == 60 and np.unique(members).size == 60
    # minority classes contain every one of their samples at least once, then extra draws
    for c, n in ((1, 50), (2, 10)):
        members = np.flatnonzero(LABELS == c)
        assert all(counts[m] >= 1 for m in members)
        assert sum(counts[m] for m in members) == 60
    # class 1 (50 samples, target 60) needs only 10 duplicates
    assert sum(counts[m] - 1 for m in np.flatnonzero(LABELS == 1)) == 10


def test_mrr_custom_class_probs_and_num_samples() -> None:
    s = MinimalRandomResamplingSampler(LABELS, class_probs=[0.4, 0.2, 0.2, 0.2], num_samples=100)
    assert _hist(s).tolist() == [40, 20, 20, 20]
    with pytest.raises(ValueError, match="no samples"):
        MinimalRandomResamplingSampler(LABELS, class_probs=[0.2, 0.2, 0.2, 0.2, 0.2])
    with pytest.raises(ValueError, match="entries"):
        MinimalRandomResamplingSampler(LABELS, class_probs=[0.5, 0.5])
    with pytest.raises(ValueError, match="inverse_freq"):
        MinimalRandomResamplingSampler(LABELS, class_probs="uniform")
    with pytest.raises(ValueError, match="negative"):
        MinimalRandomResamplingSampler(np.array([0, 1, -1]))


def test_class_balanced_histogram_is_roughly_uniform() -> None:
    s = ClassBalancedSampler(LABELS, num_samples=8000)
    h = _hist(s)
    assert h.sum() == 8000
    assert np.all(np.abs(h - 2000) < 200), h  # ~6 sigma of a binomial(8000, 1/4)


def test_class_balanced_without_replacement_limits() -> None:
    s = ClassBalancedSampler(LABELS, replacement=False, num_samples=100)
    idx = list(s)
    assert len(set(idx)) == 100
    with pytest.raises(ValueError, match="without replacement"):
        ClassBalancedSampler(LABELS, replacement=False, num_samples=LABELS.size + 1)


@pytest.mark.parametrize("make", SAMPLERS, ids=IDS)
def test_deterministic_by_seed_and_epoch(make) -> None:
    a, b = make(seed=3), make(seed=3)
    a.set_epoch(5)
    b.set_epoch(5)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating twice gives the same epoch
    b.set_epoch(6)
    assert list(a) != list(b)
    c = make(seed=4)
    c.set_epoch(5)
    assert list(a) != list(c)


@pytest.mark.parametrize("make", SAMPLERS, ids=IDS)
@pytest.mark.parametrize("world", [2, 3])
def test_rank_slices_partition_the_global_list(make, world: int) -> None:
    single = make(seed=1, num_replicas=1, rank=0)
    single.set_epoch(2)
    global_list = list(single)
    ranks = []
    for r in range(world):
        s = make(seed=1, num_replicas=world, rank=r)
        s.set_epoch(2)
        ranks.append(list(s))
    n = -(-len(global_list) // world)
    assert all(len(x) == n == len(s) for x, s in zip(ranks, [make(num_replicas=world, rank=r) for r in range(world)]))
    # interleave back by position: rank r holds positions r, r + W, ...; padding wraps to the list's start
    rebuilt = [ranks[p % world][p // world] for p in range(n * world)]
    assert rebuilt[: len(global_list)] == global_list
    assert rebuilt[len(global_list) :] == global_list[: n * world - len(global_list)]


def test_uneven_length_is_padded_by_wrapping() -> None:
    s = [MinimalRandomResamplingSampler(LABELS, num_samples=101, num_replicas=2, rank=r) for r in range(2)]
    assert len(s[0]) == len(s[1]) == 51
    full = MinimalRandomResamplingSampler(LABELS, num_samples=101)
    g = list(full)
    assert list(s[1])[-1] == g[0]  # position 101 wraps to position 0


@pytest.mark.parametrize("make", SAMPLERS, ids=IDS)
def test_is_a_distributed_sampler_without_process_group(make) -> None:
    """Lightning re-wraps a sampler unless isinstance(sampler, DistributedSampler) (_requires_distributed_sampler)."""
    s = make()
    assert isinstance(s, DistributedSampler)
    assert not torch.distributed.is_initialized()
    assert s.num_replicas == 1 and s.rank == 0
    # and it drives a DataLoader
    ds = TensorDataset(torch.arange(LABELS.size))
    batches = list(DataLoader(ds, batch_size=32, sampler=s))
    assert sum(len(b[0]) for b in batches) == len(s)


def test_accepts_tensors_and_dataset_like_objects() -> None:
    class DS:
        labels = LABELS

    a = list(MinimalRandomResamplingSampler(torch.as_tensor(LABELS)))
    b = list(MinimalRandomResamplingSampler(DS()))
    assert a == b == list(MinimalRandomResamplingSampler(LABELS.tolist()))


def _lazy_rank_worker(rank: int, init_file: str, out_dir: str) -> None:
    import os

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        # built without num_replicas / rank: both are read from the process group at iteration time
        s = MinimalRandomResamplingSampler(LABELS, seed=7)
        s.set_epoch(1)
        torch.save({"indices": list(s), "len": len(s), "rank": s.rank, "world": s.num_replicas},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_rank_and_world_size_resolved_lazily_from_process_group(tmp_path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_lazy_rank_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    res = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [(r["rank"], r["world"]) for r in res] == [(0, 2), (1, 2)]
    single = MinimalRandomResamplingSampler(LABELS, seed=7)
    single.set_epoch(1)
    g = list(single)
    assert res[0]["indices"] == g[0::2] and res[1]["indices"] == g[1::2]
    assert res[0]["len"] == res[1]["len"] == len(g) // 2
