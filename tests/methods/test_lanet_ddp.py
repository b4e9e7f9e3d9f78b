"""LA-Net's batch-relational state under DDP: a 2-process gloo run on CPU equals one process on the concatenated
batch -- the label-distribution memory, the targets, the queues, and the gradients (exact distributed training: every rank sees the global batch)."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ferkit.losses.expression_landmark_contrastive import ExpressionLandmarkContrastiveLoss
from ferkit.losses.label_distribution import LabelDistributionEstimator
from ferkit.state.label_distribution_bank import LabelDistributionBank

WORLD, B, C, STEPS = 2, 6, 4, 2
M = WORLD * B


def _data(step: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    return {
        "h_e": torch.randn(M, 16, generator=g, dtype=torch.float64),
        "h_l": torch.randn(M, 8, generator=g, dtype=torch.float64),
        "logits": 2 * torch.randn(M, C, generator=g, dtype=torch.float64),
        "index": torch.randperm(M, generator=g),  # a different sample -> rank assignment every step
        "q_e": torch.nn.functional.normalize(torch.randn(M, 8, generator=g, dtype=torch.float64), dim=1),
        "q_l": torch.nn.functional.normalize(torch.randn(M, 8, generator=g, dtype=torch.float64), dim=1),
        "k_e": torch.nn.functional.normalize(torch.randn(M, 8, generator=g, dtype=torch.float64), dim=1),
        "k_l": torch.nn.functional.normalize(torch.randn(M, 8, generator=g, dtype=torch.float64), dim=1),
    }


def _modules(gather: bool = True, align: str = "none"):
    torch.manual_seed(0)
    lde = LabelDistributionEstimator(16, 8, k=3, gather_distributed=gather, align=align, num_classes=C,
                                     align_momentum=0.5).double()
    bank = LabelDistributionBank(0, C, momentum=0.9)
    bank.init_from_labels(torch.arange(M) % C)
    bank.double()
    el = ExpressionLandmarkContrastiveLoss(dim=8, queue_size=2 * M, temperature=0.1, conf_thresh=0.5,
                                           gather_distributed=gather).double()
    return lde, bank, el


def _run(sl: slice, gather: bool = True, align: str = "none") -> list[dict[str, torch.Tensor]]:
    """STEPS training steps on the rows ``sl`` of each global batch; returns the state and gradients per step."""
    lde, bank, el = _modules(gather, align)
    out = []
    for step in range(STEPS):
        d = _data(step)
        leaves = {k: d[k][sl].clone().requires_grad_(True) for k in ("h_e", "h_l", "logits", "q_e", "q_l")}
        lde.zero_grad()
        res = lde(leaves["h_e"], leaves["h_l"], leaves["logits"], d["index"][sl], bank)
        loss_el = el(leaves["q_e"], leaves["q_l"], d["k_e"][sl], d["k_l"][sl], target=res.target, index=d["index"][sl]).total
        (res.total + loss_el).backward()  # every ferkit loss returns a LossOutput: .total is the scalar
        rec = {f"grad_{k}": v.grad.clone() for k, v in leaves.items()}
        rec.update({f"param_{n}": p.grad.clone() for n, p in lde.named_parameters()})
        rec.update(target=res.target.detach().clone(), memory=bank.memory.clone(), queue_keys=el.queue.keys.clone(),
                   queue_labels=el.queue.labels.clone(), ptr=el.queue.ptr.clone(), loss_kl=res.loss.detach(),
                   loss_el=loss_el.detach())
        if align != "none":  # the class-prior alignment's moving average, from the gathered batch
            rec.update(align_running=lde.align_running.clone(), align_prior=lde.align_prior.clone())
        out.append(rec)
    return out


def _worker(rank: int, init_file: str, out_dir: str, align: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        sl = slice(rank * B, (rank + 1) * B)
        torch.save({"ddp": _run(sl, align=align), "local_only": _run(sl, gather=False, align=align)},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module", params=["none", "given"])
def runs(request, tmp_path_factory) -> tuple[list[dict], list[dict]]:
    """LA-Net as published (``align="none"``) and with ferkit's class-prior alignment of the estimate."""
    tmp = tmp_path_factory.mktemp("lanet_ddp")
    mp.spawn(_worker, args=(str(tmp / "init"), str(tmp), request.param), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]
    return ranks, _run(slice(0, M), align=request.param)


@pytest.mark.slow
def test_memory_and_queues_equal_single_process_on_every_rank(runs) -> None:
    ranks, single = runs
    for step in range(STEPS):
        for r in ranks:
            torch.testing.assert_close(r["ddp"][step]["memory"], single[step]["memory"])
            torch.testing.assert_close(r["ddp"][step]["queue_keys"], single[step]["queue_keys"])
            assert torch.equal(r["ddp"][step]["queue_labels"], single[step]["queue_labels"])
            assert int(r["ddp"][step]["ptr"]) == int(single[step]["ptr"])
            for k in ("align_running", "align_prior"):
                if k in single[step]:
                    torch.testing.assert_close(r["ddp"][step][k], single[step][k])


@pytest.mark.slow
def test_targets_and_input_gradients_equal_single_process(runs) -> None:
    ranks, single = runs
    for step in range(STEPS):
        for rank, r in enumerate(ranks):
            sl = slice(rank * B, (rank + 1) * B)
            torch.testing.assert_close(r["ddp"][step]["target"], single[step]["target"][sl])
            # each rank averages over its B anchors, the single process over M = W B: a factor W (DDP's
            # gradient averaging then gives the single-process parameter update, see ferkit.state.distributed)
            for k in ("h_e", "h_l", "logits", "q_e", "q_l"):
                torch.testing.assert_close(r["ddp"][step][f"grad_{k}"], WORLD * single[step][f"grad_{k}"][sl])


@pytest.mark.slow
def test_averaged_parameter_gradients_equal_single_process(runs) -> None:
    ranks, single = runs
    names = [k for k in single[0] if k.startswith("param_")]
    assert names
    for step in range(STEPS):
        for n in names:
            avg = sum(r["ddp"][step][n] for r in ranks) / WORLD
            torch.testing.assert_close(avg, single[step][n])


@pytest.mark.slow
def test_without_gathering_the_results_differ(runs) -> None:
    """Guard: the comparison above can fail -- rank-local estimation gives other targets and memory."""
    ranks, single = runs
    assert not torch.allclose(ranks[0]["local_only"][0]["target"], single[0]["target"][:B])
    assert not torch.allclose(ranks[0]["local_only"][1]["memory"], ranks[1]["local_only"][1]["memory"])
