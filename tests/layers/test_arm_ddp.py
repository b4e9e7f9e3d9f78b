"""ARM under DDP: 2 gloo processes on CPU against one process on the concatenated batch.

* ``"ema"``: after N training steps ``g_ema`` is identical on both ranks and equals the single-process buffer
  (the batch mean is all-reduced, weighted by the per-rank batch sizes, which differ here on purpose).
* ``"batch"`` with ``gather_distributed=True``: forward output and input / parameter gradients equal one process.
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ferkit.layers import ARM

WORLD = 2
SLICES = [slice(0, 3), slice(3, 8)]  # uneven local batches: 3 and 5 samples
C, H, STEPS = 256, 4, 3


def _batch(step: int) -> torch.Tensor:
    return torch.randn(8, C, H, H, generator=torch.Generator().manual_seed(step), dtype=torch.float64)


def _weights() -> torch.Tensor:
    return torch.randn(8, 25, generator=torch.Generator().manual_seed(99), dtype=torch.float64)


def _make(affinity: str, gather: bool) -> ARM:
    torch.manual_seed(0)
    arm = ARM(C, H, affinity=affinity, ema_momentum=0.5, gather_distributed=gather).double()
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        arm.bn.running_mean.copy_(torch.rand(arm.bn.num_features, generator=g) - 0.5)
        arm.bn.running_var.copy_(torch.rand(arm.bn.num_features, generator=g) + 0.5)
    arm.train()
    # BN in eval mode: in training mode each rank would normalise with its OWN local batch statistics (like any
    # unsynchronised BatchNorm under DDP), so U_b and G would differ from the single-process values on the
    # concatenated batch for reasons unrelated to ARM's Sharing Affinity (use SyncBatchNorm for that).
    arm.bn.eval()
    return arm


def _run(arm: ARM, part: slice | None) -> dict[str, torch.Tensor]:
    """What one rank (``part``) or the single process (``None``) computes."""
    sel = part if part is not None else slice(None)
    res: dict[str, torch.Tensor] = {}
    for step in range(STEPS):
        x = _batch(step)[sel].clone().requires_grad_(True)
        out = arm(x)
        # convention of gather_with_grad: each rank's loss covers its local samples; summed over ranks it is the
        # single-process loss
        (out * _weights()[sel]).sum().backward()
        if step == STEPS - 1:
            res["out"] = out.detach().clone()
            res["x_grad"] = x.grad.clone()
    res["kernel_grad"] = arm.kernel.grad.clone()
    res["alpha_grad"] = arm.alpha.grad.clone()
    res["g_ema"] = arm.g_ema.clone()
    res["num_batches_tracked"] = arm.num_batches_tracked.clone()
    return res


CASES = [("ema", False), ("ema", True), ("batch", True), ("batch", False)]


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        res = {f"{a}-{g}": _run(_make(a, g), SLICES[rank]) for a, g in CASES}
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], dict]:
    tmp = tmp_path_factory.mktemp("arm_ddp")
    mp.spawn(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]
    single = {f"{a}-{g}": _run(_make(a, g), None) for a, g in CASES}
    return ranks, single


@pytest.mark.slow
@pytest.mark.parametrize("gather", [False, True])
def test_ema_buffer_synchronised_and_equal_to_single_process(results, gather: bool) -> None:
    ranks, single = results
    key = f"ema-{gather}"
    torch.testing.assert_close(ranks[0][key]["g_ema"], ranks[1][key]["g_ema"], rtol=0, atol=1e-12)
    torch.testing.assert_close(ranks[0][key]["g_ema"], single[key]["g_ema"], rtol=1e-10, atol=1e-12)
    assert int(ranks[0][key]["num_batches_tracked"]) == STEPS
    # guard: without the all-reduce rank 0's buffer would be the mean of its own 3 samples, which differs
    local = _run(_make("ema", False), SLICES[0])["g_ema"]
    assert not torch.allclose(local, single[key]["g_ema"])


@pytest.mark.slow
@pytest.mark.parametrize("key", ["batch-True", "ema-True"])
def test_gathered_affinity_matches_single_process(results, key: str) -> None:
    ranks, single = results
    for rank, part in enumerate(SLICES):
        torch.testing.assert_close(ranks[rank][key]["out"], single[key]["out"][part], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ranks[rank][key]["x_grad"], single[key]["x_grad"][part], rtol=1e-10, atol=1e-12)
    # parameter gradients: the per-rank gradients sum to the single-process gradient (DDP would average them,
    # which is the single-process gradient of the mean loss when each rank uses a mean over its local samples)
    for name in ("kernel_grad", "alpha_grad"):
        total = ranks[0][key][name] + ranks[1][key][name]
        torch.testing.assert_close(total, single[key][name], rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_ungathered_batch_affinity_differs_from_single_process(results) -> None:
    """Guard: under DDP without the gather (gather_distributed=False) each rank's G is its own batch mean, so the
    ranks' "batch"-mode outputs are not the single process's on the concatenated batch."""
    ranks, single = results
    for rank, part in enumerate(SLICES):
        assert not torch.allclose(ranks[rank]["batch-False"]["out"], single["batch-False"]["out"][part])
