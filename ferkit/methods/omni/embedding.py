"""Embedding a pool through Lightning's predict loop into an on-disk :class:`ferkit.state.embedding_store.EmbeddingStore`.

:class:`PoolEmbedder` wraps a trained ferkit module: its ``predict_step`` returns each image's L2-normalised
penultimate features (the network's ``forward_features``) and softmax probabilities. :class:`EmbeddingWriter`
writes them by dataset index into the memory-mapped store as the batches come. Under DDP, Lightning gives every
rank its shard of the pool (``DistributedSampler``, not shuffled) and every rank writes its own rows into the same
files, so the store equals a single-process run's (rows padded onto a rank are written twice, identically).
Rows already written are skipped on a second run (:func:`embed_pool`), so an interrupted embedding resumes.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset, Subset

from ferkit.state.embedding_store import EmbeddingStore

log = logging.getLogger(__name__)

__all__ = ["PoolEmbedder", "EmbeddingWriter", "embed_pool", "feature_size"]


def _network(module: torch.nn.Module) -> torch.nn.Module:
    net = getattr(module, "model", module)
    if not (hasattr(net, "forward_features") and hasattr(net, "forward_head")):
        raise TypeError(f"{type(net).__name__} has no forward_features/forward_head: Omni mining needs a network "
                        "with penultimate features (a ferkit FERNet, as FERClassifier, ARMClassifier and "
                        "OmniClassifier build)")
    return net


def feature_size(module: torch.nn.Module) -> int:
    """The penultimate feature size of ``module``'s network."""
    return int(_network(module).num_features)


class PoolEmbedder(L.LightningModule):
    """Predict-only wrapper: ``{"index", "features" (unit length), "probs"}`` per batch from ``module``'s network."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module
        _network(module)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = _network(self.module)
        feats = net.forward_features(x)
        probs = torch.softmax(net.forward_head(feats).float(), dim=1)
        return F.normalize(feats.float(), dim=1), probs

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        feats, probs = self.embed(batch["image"])
        return {"index": batch["index"], "features": feats, "probs": probs}


class EmbeddingWriter(BasePredictionWriter):
    """Writes each predicted batch into the store at ``folder`` (which must exist: see :meth:`EmbeddingStore.create`)."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__(write_interval="batch")
        self.folder = Path(folder)
        self.store: EmbeddingStore | None = None
        self.rows = 0

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self.store = EmbeddingStore(self.folder, mode="r+")
        self.rows = 0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx) -> None:
        assert self.store is not None
        self.store.write(prediction["index"], prediction["features"], prediction["probs"])
        self.rows += int(prediction["index"].numel())
        if batch_idx % 50 == 0:
            self.store.flush()  # an interruption loses at most 50 batches

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        if self.store is not None:
            self.store.flush()
        log.info("rank %d wrote %d embeddings to %s", trainer.global_rank, self.rows, self.folder)


def embed_pool(module: torch.nn.Module, dataset: Dataset, folder: str | Path, num_classes: int,
               trainer: L.Trainer | None = None, batch_size: int = 256, num_workers: int = 0,
               ids: list[str] | None = None, wait_s: float = 600.0) -> EmbeddingStore:
    """Embed ``dataset`` (items ``{"image", "index"}``, in the evaluation transform) into the store at ``folder``.

    Creates the store (or reopens it), predicts only the rows not yet written, and returns the store. ``trainer``
    defaults to a one-process CPU trainer with a progress bar; pass one with ``strategy="ddp"`` to shard the pool.
    Under DDP every process calls this function: rank 0 creates (or reopens) the store, the others wait up to
    ``wait_s`` seconds for it. The folder must be on a file system that every process sees.
    """
    dim = feature_size(module)   # builds a lazily built network first, so that eval() reaches it
    module.eval()
    folder = Path(folder)
    # the process group may not exist yet (Lightning launches the other processes inside predict), so the rank
    # comes from the launcher's environment, and the other ranks wait for rank 0's store to appear
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    if rank == 0:
        EmbeddingStore.create(folder, len(dataset), dim, num_classes, ids=ids)  # type: ignore[arg-type]
    else:
        deadline = time.monotonic() + wait_s
        while not (folder / "meta.json").is_file():
            if time.monotonic() > deadline:
                raise TimeoutError(f"rank {rank}: {folder}/meta.json did not appear within {wait_s} s; is {folder} on "
                                   "a file system every process sees?")
            time.sleep(0.2)
    store = EmbeddingStore(folder, mode="r")
    todo = store.missing()
    if todo.size == 0:
        log.info("%s: every row is embedded already", folder)
        return store
    if todo.size < len(store):
        log.info("%s: resuming, %d of %d rows left", folder, todo.size, len(store))
    subset = dataset if todo.size == len(store) else Subset(dataset, todo.tolist())
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    trainer = trainer or L.Trainer(accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                                   enable_model_summary=False)
    writer = EmbeddingWriter(folder)
    trainer.callbacks.append(writer)
    try:
        trainer.predict(PoolEmbedder(module).eval(), dataloaders=loader, return_predictions=False)
    finally:
        trainer.callbacks.remove(writer)
    return EmbeddingStore(folder, mode="r")


def labelled_features(module: torch.nn.Module, loader: DataLoader, progress: Any = None):
    """Yield ``(features, labels)`` of a labelled loader (for :meth:`PrototypeMiner.fit`), in eval mode, on the
    module's device."""
    embedder = PoolEmbedder(module).eval()
    device = next(module.parameters()).device
    for batch in loader:
        feats, _ = embedder.embed(batch["image"].to(device))
        if progress is not None:
            progress(int(batch["image"].shape[0]))
        yield feats.cpu(), torch.as_tensor(np.asarray(batch["label"]))
