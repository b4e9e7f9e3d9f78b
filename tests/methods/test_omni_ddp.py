"""Embedding a pool under Lightning DDP (2 gloo CPU processes) fills the store exactly as one process does."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD, N, IMG = 2, 37, 32   # N odd: the DistributedSampler pads one duplicate row


def _dataset():
    from conftest import make_synthetic_dm

    dm = make_synthetic_dm(num_train=8, num_val=8, num_test=N, image_size=IMG)
    dm.setup("test")
    return dm.test_set


def _module(weights=None):
    from ferkit.methods.omni import OmniClassifier
    from ferkit.models import FERNetConfig

    m = OmniClassifier(net=FERNetConfig(backbone="test_resnet", small_input=True), num_classes=7, img_size=IMG, in_chans=3)
    m.configure_model()
    if weights is not None:
        m.load_state_dict(weights)
    return m


def _worker(rank: int, init_file: str, out_dir: str, weights_path: str) -> None:
    import lightning as L

    from ferkit.methods.omni import embed_pool

    torch.set_num_threads(1)
    os.environ.update({"LOCAL_RANK": str(rank), "RANK": str(rank), "NODE_RANK": "0", "WORLD_SIZE": str(WORLD),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29581"})
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        trainer = L.Trainer(accelerator="cpu", devices=WORLD, strategy="ddp", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
        module = _module(torch.load(weights_path, weights_only=True))
        embed_pool(module, _dataset(), os.path.join(out_dir, "ddp"), 7, trainer=trainer, batch_size=8, wait_s=120)
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_embedding_equals_single_process(tmp_path, one_thread):
    import lightning as L

    from ferkit.methods.omni import embed_pool
    from ferkit.state.embedding_store import EmbeddingStore

    torch.manual_seed(0)
    ref_module = _module()
    torch.save(ref_module.state_dict(), tmp_path / "w.pt")
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path), str(tmp_path / "w.pt")), nprocs=WORLD, join=True)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    single = embed_pool(ref_module, _dataset(), tmp_path / "single", 7, trainer=trainer, batch_size=16)
    ddp = EmbeddingStore(tmp_path / "ddp")
    assert ddp.complete and single.complete
    # every row written (by one rank or the other), equal to one process's up to float16 rounding of
    # batch-size-dependent kernels
    torch.testing.assert_close(ddp.features.read(0, N), single.features.read(0, N), atol=1e-3, rtol=0)
    torch.testing.assert_close(ddp.probs.read(0, N), single.probs.read(0, N), atol=1e-3, rtol=0)
    assert ddp.features.read(0, N).abs().sum(1).min() > 0   # no row left at its initial zeros
