"""Collectives in ferkit.state.distributed: single-process behaviour, and a 2-process gloo run on CPU compared
against one process on the concatenated batch."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ferkit.state import distributed as fd

WORLD = 2
# uneven local batch sizes on purpose: rank 0 holds rows 0..2, rank 1 rows 3..7
SLICES = [slice(0, 3), slice(3, 8)]


def _data() -> torch.Tensor:
    return torch.randn(8, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _anchor_loss(anchors: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """A contrastive-style loss: sum over anchors of logsumexp of similarities to the whole batch.

    Summing it over disjoint anchor sets gives the loss of their union, which is the convention under test.
    """
    return torch.logsumexp(anchors @ batch.T / 0.5, dim=1).sum()


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        res: dict[str, object] = {"rank": fd.get_rank(), "world": fd.get_world_size(), "dist": fd.is_distributed()}
        x_all = _data()
        x = x_all[SLICES[rank]].clone().requires_grad_(True)
        gathered = fd.gather_with_grad(x)
        res["gathered"] = gathered.detach().clone()
        # each rank: loss of its LOCAL anchors against the GATHERED batch
        loss = _anchor_loss(gathered[SLICES[rank]], gathered)
        loss.backward()
        res["grad"] = x.grad.clone()

        # uneven gather without grad: rank r contributes r + 2 rows of value r
        res["uneven"] = fd.all_gather_uneven(torch.full((rank + 2, 3), float(rank)))
        # weighted mean: local means of the two slices weighted by their sizes = global mean
        local_mean = x_all[SLICES[rank]].mean(0)
        res["wmean"] = fd.all_reduce_mean(local_mean, weight=x.shape[0])
        res["mean"] = fd.all_reduce_mean(torch.tensor([float(rank)]))
        res["bcast"] = fd.broadcast(torch.tensor([10.0 + rank]), src=1)
        res["sum"] = fd.all_reduce_sum(torch.tensor([rank + 1, 10 * (rank + 1)]))
        # gather_batch: one tensor with gradient, one without, and this rank's slice of the gathered rows
        y = x_all[SLICES[rank]].clone().requires_grad_(True)
        idx = torch.arange(8)[SLICES[rank]]
        (y_all, idx_all), local = fd.gather_batch(y, idx, with_grad=(True, False))
        res["gb_local"], res["gb_idx"], res["gb_idx_grad"] = (local.start, local.stop), idx_all, idx_all.requires_grad
        _anchor_loss(y_all[local], y_all).backward()
        res["gb_grad"] = y.grad.clone()
        (off,), off_local = fd.gather_batch(y, enabled=False)
        res["gb_disabled"] = (off is y, off_local.start, off_local.stop)
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("ddp_state")
    mp.spawn(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.slow
def test_ranks_and_world(ddp_results: list[dict]) -> None:
    assert [r["rank"] for r in ddp_results] == [0, 1]
    assert all(r["world"] == 2 and r["dist"] for r in ddp_results)


@pytest.mark.slow
def test_gather_with_grad_forward_is_concatenation(ddp_results: list[dict]) -> None:
    for r in ddp_results:
        torch.testing.assert_close(r["gathered"], _data(), rtol=0, atol=0)


@pytest.mark.slow
def test_gather_with_grad_gradient_equals_single_process(ddp_results: list[dict]) -> None:
    x = _data().requires_grad_(True)
    _anchor_loss(x, x).backward()  # single process, whole batch
    for rank, r in enumerate(ddp_results):
        torch.testing.assert_close(r["grad"], x.grad[SLICES[rank]], rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_gather_without_summing_backward_would_be_wrong(ddp_results: list[dict]) -> None:
    """Guard the test itself: the local-only gradient (what a gather without the all-reduce gives) differs."""
    x_all = _data()
    x0 = x_all[SLICES[0]].clone().requires_grad_(True)
    batch = torch.cat([x0, x_all[SLICES[1]]])
    _anchor_loss(x0, batch).backward()
    assert not torch.allclose(x0.grad, ddp_results[0]["grad"])


@pytest.mark.slow
def test_all_gather_uneven(ddp_results: list[dict]) -> None:
    expected = torch.cat([torch.zeros(2, 3), torch.ones(3, 3)])
    for r in ddp_results:
        torch.testing.assert_close(r["uneven"], expected, rtol=0, atol=0)


@pytest.mark.slow
def test_all_reduce_mean_and_broadcast(ddp_results: list[dict]) -> None:
    for r in ddp_results:
        torch.testing.assert_close(r["wmean"], _data().mean(0))
        torch.testing.assert_close(r["mean"], torch.tensor([0.5]))
        torch.testing.assert_close(r["bcast"], torch.tensor([11.0]))
        assert r["sum"].tolist() == [3, 30]


@pytest.mark.slow
def test_gather_batch_slices_and_gradients(ddp_results: list[dict]) -> None:
    x = _data().requires_grad_(True)
    _anchor_loss(x, x).backward()  # single process, whole batch
    for rank, r in enumerate(ddp_results):
        assert r["gb_local"] == (SLICES[rank].start, SLICES[rank].stop)
        assert r["gb_idx"].tolist() == list(range(8)) and not r["gb_idx_grad"]
        torch.testing.assert_close(r["gb_grad"], x.grad[SLICES[rank]], rtol=1e-10, atol=1e-12)
        assert r["gb_disabled"] == (True, 0, SLICES[rank].stop - SLICES[rank].start)


def test_single_process_helpers_are_identities() -> None:
    assert not fd.is_distributed()
    assert fd.get_world_size() == 1 and fd.get_rank() == 0
    x = torch.randn(4, 3, requires_grad=True)
    g = fd.gather_with_grad(x)
    assert g is x
    (g * 2).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((4, 3), 2.0))
    torch.testing.assert_close(fd.all_gather_uneven(x), x.detach())
    torch.testing.assert_close(fd.all_reduce_mean(x, weight=3), x.detach())
    assert fd.all_reduce_mean(torch.tensor([1, 2])).dtype == torch.float32
    assert fd.broadcast(x) is x
    torch.testing.assert_close(fd.all_reduce_sum(x), x.detach())
    idx = torch.arange(4)
    (gx, gi), local = fd.gather_batch(x, idx, with_grad=(True, False))
    assert gx is x and gi is idx and local == slice(0, 4)


def test_gather_batch_errors() -> None:
    with pytest.raises(ValueError, match="at least one tensor"):
        fd.gather_batch()
    with pytest.raises(ValueError, match="share their first dimension"):
        fd.gather_batch(torch.zeros(3, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="2 with_grad flags for 1 tensors"):
        fd.gather_batch(torch.zeros(3), with_grad=(True, False))
