"""Omni at scale: selection over 1 M x 512 embeddings, embedding throughput, condensation cost.

* **selection**: a store of ``--pool`` synthetic class-conditional embeddings (float16, memory-mapped, on disk) is
  mined by :class:`ferkit.miners.PrototypeMiner` in chunks; reports seconds, rows/s and the peak *anonymous* memory
  (``RssAnon``, sampled every 5 ms: the process's own allocations, excluding the file pages of the memory map, which
  the kernel can drop at will) above the level before mining. Precision of the pseudo-labels against the generating
  classes is reported as a sanity check.
* **embedding**: images/s of ``embed_pool`` (Lightning predict -> memory-mapped store) on CPU for a small sample of
  synthetic faces with the FER+ network (ResNet-18, 48 px, small input).
* **condensation**: seconds per iteration of both methods at ipc 1 and 10 on 48 px synthetic faces (7 classes).

Run once, single-threaded (writes ``benchmarks/results/omni_scale.json``; needs ~1.1 GB of free disk in ``--tmp``)::

    OMP_NUM_THREADS=1 python benchmarks/omni_scale.py
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402

from ferkit.miners import PrototypeMiner  # noqa: E402
from ferkit.state.embedding_store import EmbeddingStore  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakSampler:
    """Samples RssAnon in a thread; ``peak`` is the highest value seen."""

    def __init__(self, every_s: float = 0.005) -> None:
        self.every_s, self.peak, self._stop = every_s, rss_anon_mb(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon_mb())
            time.sleep(self.every_s)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon_mb())


def selection(args, tmp: Path) -> dict:
    n, d, c = args.pool, args.dim, 8
    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(c, d, generator=g), dim=1)
    t0 = time.perf_counter()
    store = EmbeddingStore.create(tmp / "store", n, d, c)
    truth = np.empty(n, dtype=np.int64)
    step = 65536
    for a in range(0, n, step):
        b = min(a + step, n)
        y = torch.randint(0, c, (b - a,), generator=g)
        f = torch.nn.functional.normalize(centres[y] + 0.035 * torch.randn(b - a, d, generator=g), dim=1)
        logits = 12 * f @ centres.T
        store.write(torch.arange(a, b), f, torch.softmax(logits, 1))
        truth[a:b] = y.numpy()
    store.flush()
    write_s = time.perf_counter() - t0
    del store
    labelled_y = torch.randint(0, c, (10_000,), generator=g)
    labelled = centres[labelled_y] + 0.035 * torch.randn(10_000, d, generator=g)
    miner = PrototypeMiner(c, tau_sim=args.tau_sim, tau_conf=0.9, margin=0.1, chunk_size=args.chunk).fit(labelled, labelled_y)
    store = EmbeddingStore(tmp / "store")
    before = rss_anon_mb()
    with PeakSampler() as peak:
        t0 = time.perf_counter()
        mined = miner.mine(store.features, store.probs)
        mine_s = time.perf_counter() - t0
    precision = float((mined.pseudo_labels.numpy() == truth[mined.indices.numpy()]).mean()) if len(mined) else float("nan")
    file_gb = sum(p.stat().st_size for p in (tmp / "store").iterdir()) / 1e9
    return {"pool": n, "dim": d, "classes": c, "chunk_size": args.chunk, "store_gb_on_disk": round(file_gb, 3),
            "write_store_seconds": round(write_s, 1), "select_seconds": round(mine_s, 2),
            "select_rows_per_second": int(n / mine_s), "peak_anon_mb_above_baseline": round(peak.peak - before, 1),
            "anon_mb_before": round(before, 1), "mined": len(mined), "mined_fraction": round(len(mined) / n, 4),
            "precision_vs_generating_class": round(precision, 4), "tau_sim": args.tau_sim, "tau_conf": 0.9,
            "margin": 0.1}


def embedding(args, tmp: Path) -> dict:
    from ferkit.data import FERDataModule, SyntheticSource
    from ferkit.methods.omni import OmniClassifier, embed_pool
    from ferkit.models import FERNetConfig
    import lightning as L

    dm = FERDataModule(dataset=SyntheticSource(num_train=8, num_val=8, num_test=args.embed_images, image_size=48),
                       img_size=48, channels=3)
    dm.setup("test")
    module = OmniClassifier(net=FERNetConfig(backbone="resnet18", small_input=True), num_classes=7, img_size=48)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    _ = [dm.test_set[i] for i in range(args.embed_images)]  # render the synthetic faces once (not part of the cost)
    t0 = time.perf_counter()
    embed_pool(module, dm.test_set, tmp / "emb", 7, trainer=trainer, batch_size=64)
    s = time.perf_counter() - t0
    return {"backbone": "resnet18 (small_input)", "img_size": 48, "images": args.embed_images, "batch_size": 64,
            "seconds": round(s, 2), "images_per_second": round(args.embed_images / s, 1)}


def condensation(args) -> list[dict]:
    from ferkit.data import FERDataModule, SyntheticSource
    from ferkit.methods.omni import DatasetCondensation

    dm = FERDataModule(dataset=SyntheticSource(num_train=8, num_val=8, num_test=350, image_size=48), img_size=48,
                       channels=3)
    dm.setup("test")
    ds = dm.test_set
    items = [ds[i] for i in range(len(ds))]
    out = []
    for method in ("distribution_matching", "gradient_matching"):
        for ipc in (1, 10):
            dc = DatasetCondensation(method=method, ipc=ipc, iterations=args.dc_iterations, batch_real=64)
            res = dc.run(items, ds.labels, list(ds.class_names))
            out.append({"method": method, "ipc": ipc, "iterations": args.dc_iterations, "batch_real": 64,
                        "img_size": 48, "classes": 7, "seconds_per_iteration": round(res.info["seconds"] / args.dc_iterations, 3),
                        "file_kb": round(res.images.numel() * 4 / 1024, 1)})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pool", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--chunk", type=int, default=65536)
    p.add_argument("--tau_sim", type=float, default=0.8)
    p.add_argument("--embed_images", type=int, default=512)
    p.add_argument("--dc_iterations", type=int, default=3)
    p.add_argument("--tmp", default=None, help="where the 1 GB store is written (deleted afterwards)")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/omni_scale.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="omni_scale_", dir=args.tmp))
    try:
        sel = selection(args, tmp)
        print("selection", sel, flush=True)
        emb = embedding(args, tmp)
        print("embedding", emb, flush=True)
        dc = condensation(args)
        print("condensation", dc, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows_per_s = sel["select_rows_per_second"]
    scaling = (f"Selection is one pass over the store in fixed-size chunks: time grows linearly with the pool "
               f"(10 M x 512 at this rate: about {10_000_000 / rows_per_s:.0f} s of selection, plus reading 10 GB "
               "from disk when it is not in the page cache), memory does not grow (it is set by chunk_size), and "
               f"the store takes {sel['store_gb_on_disk'] * 10_000_000 / sel['pool']:.1f} GB of disk; embedding 10 M images at "
               f"{emb['images_per_second']} images/s on this CPU would take {10_000_000 / emb['images_per_second'] / 3600:.0f} "
               "hours, so embedding (sharded over GPUs with DDP), not selection, is the cost at that scale.")
    write_results(args.out, {"benchmark": "omni_scale", "command": "OMP_NUM_THREADS=1 python benchmarks/omni_scale.py",
                             "environment": environment(), "selection": sel, "embedding": emb, "condensation": dc,
                             "scaling_to_10M": scaling})
    print(scaling)


if __name__ == "__main__":
    main()
