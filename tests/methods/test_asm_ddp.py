"""ASM under DDP: 2 gloo CPU processes against one process on the same data.

* Mining: each rank sees a different, shuffled, padded share of the training set (as ``DistributedSampler``
  gives, reshuffled every epoch, with uneven batch sizes); after two epochs of statistics every rank holds the
  same thresholds and split, equal to the single-process ones.
* Loss: Tri-Regularization on two real ``DistributedDataParallel`` networks, each rank holding an uneven share of a
  batch with different subset mixes; the averaged parameter gradients equal single-process gradients on the
  whole batch.
* End to end: the ASM LightningModule trained with Lightning's ``ddp`` strategy on the same 2 CPU processes mines the same
  thresholds and split on both ranks, equal to a single-process judging pass with the same weights.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch.callbacks import Callback
from torch import nn

from ferkit.losses import TriRegularization
from ferkit.miners import ASMMiner, SampleSplit

WORLD = 2
N, C, D = 37, 5, 6  # N odd: the sampler pads one duplicate


def _epoch_data(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + epoch)
    probs = torch.softmax(torch.randn(N, 2, C, generator=g, dtype=torch.float64) * 2.5, dim=2).float()
    labels = torch.randint(0, C, (N,), generator=torch.Generator().manual_seed(7))
    return probs, labels


def _assignment(epoch: int, rank: int) -> list[torch.Tensor]:
    """DistributedSampler-like share of rank ``rank``: a shuffled permutation padded by repeating its head,
    interleaved over ranks, then cut into uneven batches (different cuts on each rank)."""
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(epoch))
    total = -(-N // WORLD) * WORLD
    padded = torch.cat([perm, perm[: total - N]])
    share = padded[rank::WORLD]
    cuts = [4, 9, 6] if rank == 0 else [8, 2, 9]  # same number of calls, different sizes (19 each)
    return list(share.split(cuts))


def _mine_epochs(miner: ASMMiner, rank: int | None) -> list[dict[str, torch.Tensor]]:
    out = []
    for epoch in range(2):
        probs, labels = _epoch_data(epoch)
        if rank is None:  # single process, natural order, one batch
            miner.accumulate(torch.arange(N), probs, labels)
        else:
            for idx in _assignment(epoch, rank):
                miner.accumulate(idx, probs[idx], labels[idx])
        miner.mine(epoch=epoch + 1)
        out.append({"clean": miner.thresholds.clean.clone(), "noisy": miner.thresholds.noisy.clone(),
                    "subset": miner.subset.values.clone(), "confidence": miner.confidence.values.clone()})
    return out


class TwoNets(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.f1, self.f2 = nn.Linear(D, C), nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, C))

    def forward(self, x: torch.Tensor, xs: torch.Tensor):
        return self.f1(x), self.f2(x), self.f1(xs), self.f2(xs)


def _batch():
    g = torch.Generator().manual_seed(3)
    b = 13
    x, xs = torch.randn(b, D, generator=g), torch.randn(b, D, generator=g)
    y = torch.randint(0, C, (b,), generator=g)
    ids = torch.tensor([0, 2, 1, 0, 2, 2, 1, 0, 0, 1, 2, 0, 1], dtype=torch.int8)
    return x, xs, y, SampleSplit(ids)


SHARES = [torch.tensor([5, 0, 12, 7, 3]), torch.tensor([1, 2, 4, 6, 8, 9, 10, 11])]  # uneven, shuffled


def _loss_grads(model: nn.Module, x, xs, y, split: SampleSplit):
    z1, z2, z1s, z2s = model(x, xs[split.noisy])
    out = TriRegularization()(z1, z2, z1s, z2s, y, split, epoch=4, max_epochs=10)
    out.total.backward()
    return out.total.detach(), {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        res: dict[str, object] = {"mining": _mine_epochs(ASMMiner(C, N), rank)}
        x, xs, y, split = _batch()
        share = SHARES[rank]
        ddp = nn.parallel.DistributedDataParallel(TwoNets())
        loss, grads = _loss_grads(ddp, x[share], xs[share], y[share], split[share])
        res["loss"], res["grads"] = loss, {k.removeprefix("module."): v for k, v in grads.items()}
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
        # the LightningModule, on the same two processes: Lightning finds the launched processes (LOCAL_RANK set)
        # and the initialised process group, and uses them
        os.environ.update({"LOCAL_RANK": str(rank), "NODE_RANK": "0", "WORLD_SIZE": str(WORLD), "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": "29577"})
        _lightning_ddp(Path(out_dir))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("asm_ddp")
    mp.spawn(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD, join=True)
    res = [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    for r in res:
        r["dir"] = tmp
    return res


@pytest.mark.slow
def test_assignments_differ_and_pad(ddp_results) -> None:
    """Guard the test: the ranks' shares are shuffled differently per epoch and contain a duplicate."""
    a0, a1 = torch.cat(_assignment(0, 0)), torch.cat(_assignment(0, 1))
    assert len(torch.cat([a0, a1])) == N + 1 and set(torch.cat([a0, a1]).tolist()) == set(range(N))
    assert not torch.equal(torch.cat(_assignment(1, 0)), a0)


@pytest.mark.slow
def test_thresholds_and_split_equal_single_process(ddp_results) -> None:
    single = _mine_epochs(ASMMiner(C, N), None)
    for r in ddp_results:
        for epoch, (got, ref) in enumerate(zip(r["mining"], single)):
            assert torch.equal(got["subset"], ref["subset"]), f"epoch {epoch + 1}"
            torch.testing.assert_close(got["clean"], ref["clean"], rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(got["noisy"], ref["noisy"], rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(got["confidence"], ref["confidence"], rtol=1e-6, atol=1e-7)
    # every subset occurs, so the comparison is not vacuous
    assert set(single[-1]["subset"].tolist()) == {0, 1, 2}
    # ranks agree exactly
    for a, b in zip(ddp_results[0]["mining"], ddp_results[1]["mining"]):
        assert all(torch.equal(a[k], b[k]) for k in ("subset", "clean", "noisy"))


@pytest.mark.slow
def test_loss_gradients_equal_single_process(ddp_results) -> None:
    x, xs, y, split = _batch()
    loss, grads = _loss_grads(TwoNets(), x, xs, y, split)
    # the mean of the ranks' losses is the single-process loss; DDP's averaged gradients equal its gradients
    torch.testing.assert_close(sum(r["loss"] for r in ddp_results) / WORLD, loss, rtol=1e-5, atol=1e-6)
    for r in ddp_results:
        for k, g in grads.items():
            torch.testing.assert_close(r["grads"][k], g, rtol=1e-5, atol=1e-6)
    # guard: the shares' subset mixes differ, so a per-rank mean would have given other gradients
    c0, c1 = split[SHARES[0]].counts(), split[SHARES[1]].counts()
    assert not torch.equal(c0 * len(SHARES[1]), c1 * len(SHARES[0]))


# -- the LightningModule under Lightning's DDP ----------------------------------------------------------------
IMG = 32


def _dm():
    from conftest import make_synthetic_dm

    return make_synthetic_dm(num_train=45, num_val=8, num_test=8, image_size=IMG, channels=3, batch_size=8,
                             train_preset="weak", strong_preset="strong", label_noise=0.3, noise_seed=0)


def _model(dm):
    from ferkit.methods.asm import ASMClassifier
    from ferkit.models import FERNetConfig

    return ASMClassifier(net=FERNetConfig(backbone="test_resnet", small_input=True), num_classes=dm.num_classes,
                         class_names=dm.class_names, img_size=IMG, in_chans=3, warmup_epochs=1, threshold_momentum=0.0,
                         t_clean=0.6, t_noisy=0.3)


class Recorder(Callback):
    """Saves rank 0's weights just before epoch 2's mining, and every rank's miner buffers at the end."""

    def __init__(self, tmp: Path) -> None:
        super().__init__()
        self.tmp = tmp

    def on_train_epoch_start(self, trainer, module) -> None:  # callbacks run before the module's hook (mining)
        if trainer.current_epoch == 1 and trainer.is_global_zero:
            torch.save(module.model.state_dict(), self.tmp / "weights_at_mining.pt")

    def on_train_end(self, trainer, module) -> None:
        state = {k: v.clone() for k, v in module.miner.state_dict().items()}
        state["_world_size"] = trainer.world_size
        state["_train_batches"] = trainer.num_training_batches
        torch.save(state, self.tmp / f"miner_rank{trainer.global_rank}.pt")


def _lightning_ddp(tmp: Path) -> None:
    import lightning as L

    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=WORLD, strategy="ddp", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[Recorder(tmp)])
    trainer.fit(_model(_dm()), _dm())


@pytest.mark.slow
def test_lightning_ddp_split_equals_single_process_judging(ddp_results) -> None:
    import numpy as np
    from torch.utils.data import DataLoader

    from ferkit.data.base import SubsetFER
    from ferkit.data.transforms import FERTransform

    tmp_path = ddp_results[0]["dir"]
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ranks = [torch.load(tmp_path / f"miner_rank{r}.pt") for r in range(WORLD)]
        for r in ranks:  # really one 2-process run: 45 samples -> 23 per rank -> 3 batches of 8
            assert r.pop("_world_size") == WORLD and r.pop("_train_batches") == 3
        for k in ranks[0]:
            assert torch.equal(torch.nan_to_num(ranks[0][k], nan=-1.0), torch.nan_to_num(ranks[1][k], nan=-1.0)), k
        # one process, the same weights: judge the whole training set and mine
        dm = _dm()
        dm.setup("fit")
        model = _model(dm)
        model.model.load_state_dict(torch.load(tmp_path / "weights_at_mining.pt"))
        model.miner.resize(len(dm.train_set))
        judge = SubsetFER(dm.train_set, np.arange(len(dm.train_set)), transform=FERTransform(img_size=IMG, channels=3))
        model.judge(DataLoader(judge, batch_size=16))
        model.miner.mine(epoch=2)
    finally:
        torch.set_num_threads(old)
    ref = model.miner.state_dict()
    got = ranks[0]
    assert int(got["mined_epoch"]) == 2
    assert torch.equal(got["subset.values"], ref["subset.values"])
    torch.testing.assert_close(got["thresholds.clean"], ref["thresholds.clean"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["thresholds.noisy"], ref["thresholds.noisy"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["confidence.values"], ref["confidence.values"], rtol=1e-4, atol=1e-5)
    assert torch.equal(got["labels.values"], ref["labels.values"])
