"""``ferkit omni embed | mine | distill``: Omni's offline steps on your own pool, each resumable.

::

    # 1. embed the pool (any folder of faces, recursive) with the primitive model, into memory-mapped float16 files
    ferkit omni embed   --config omni_ferplus10 --ckpt runs/primitive/last.ckpt --pool /data/faces --out omni/emb
    # 2. class prototypes from the labelled training set, then the confident pool images -> a manifest CSV
    ferkit omni mine    --config omni_ferplus10 --ckpt runs/primitive/last.ckpt --store omni/emb --out omni/mined.csv
    # 3. distil the mined set into a few images per class
    ferkit omni distill --config omni_ferplus10 --manifest omni/mined.csv --pool /data/faces --out omni/distilled.pt

``--config`` (and any ``--data.*`` override after it) gives the labelled data and the transform, exactly as for
``ferkit fit``; ``--ckpt`` the primitive model. Without ``--pool``, a config whose dataset is an
:class:`ferkit.data.OmniSource` with ``labelled_fraction < 1`` uses its ``pool`` split (the unlabelled rest of the
training set, whose hidden labels then give mining precision / recall).

Resuming: ``embed`` writes only rows not yet written; ``mine`` reuses the prototypes saved beside the store for the
same checkpoint; ``distill`` continues from ``<out>.state.pt`` and also writes a contact sheet ``<out>.png``. ``embed --exclude id,pixels`` leaves out pool images
that also appear in the data's validation / test splits (by id and / or by pixel hash).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from tqdm.auto import tqdm

from ferkit.commands.lightning_cli import build_cli
from ferkit.data.base import FERDataset, SubsetFER
from ferkit.data.datamodule import FERDataModule
from ferkit.data.distilled import DistilledImages
from ferkit.data.folder import UnlabelledImageFolder
from ferkit.data.manifest import ManifestDataset, ManifestRow, overlap_mask, read_manifest, write_manifest
from ferkit.data.omni import OmniSource
from ferkit.data.visual import contact_sheet, save_rgb
from ferkit.export import load_module
from ferkit.methods.omni import CondensedSet, DatasetCondensation, embed_pool, labelled_features
from ferkit.miners.prototype import PrototypeMiner
from ferkit.state.embedding_store import EmbeddingStore

log = logging.getLogger(__name__)

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ferkit omni", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="step", required=True)
    e = sub.add_parser("embed", help="embed a pool into memory-mapped float16 features + probabilities")
    e.add_argument("--ckpt", required=True, help="the primitive model's checkpoint")
    e.add_argument("--pool", help="a folder of unlabelled face images (recursive); default: the config's pool split")
    e.add_argument("--out", required=True, help="the store folder (created; reopened to resume)")
    e.add_argument("--exclude", default="id,pixels",
                   help="leave out pool images found in the validation/test splits, by 'id', 'pixels', both "
                        "(default) or 'none'")
    e.add_argument("--batch_size", type=int, default=256)
    e.add_argument("--num_workers", type=int, default=0)
    e.add_argument("--accelerator", default="auto")
    e.add_argument("--devices", type=int, default=1, help="several processes shard the pool (DDP)")
    m = sub.add_parser("mine", help="prototypes from the labelled set; confident pool images -> manifest CSV")
    m.add_argument("--ckpt", required=True)
    m.add_argument("--store", required=True, help="the folder written by `ferkit omni embed`")
    m.add_argument("--out", required=True, help="the manifest CSV to write")
    m.add_argument("--tau_sim", type=float, nargs="+", default=[0.8], help="one cosine, or one per class")
    m.add_argument("--tau_conf", type=float, default=0.9)
    m.add_argument("--margin", type=float, default=0.1)
    m.add_argument("--max_per_class", type=int, default=None)
    m.add_argument("--chunk_size", type=int, default=65536)
    m.add_argument("--curve", type=float, nargs="*", default=None,
                   help="also report precision/recall at these tau_sim values (pools with hidden labels)")
    d = sub.add_parser("distill", help="distil the mined (or the labelled) set into a few images per class")
    d.add_argument("--manifest", help="the mined set; default: the labelled training set")
    d.add_argument("--pool", help="the folder the manifest's paths are relative to (a folder pool)")
    d.add_argument("--out", required=True, help="the distilled set (.pt)")
    d.add_argument("--method", default="gradient_matching", choices=["gradient_matching", "distribution_matching"])
    d.add_argument("--ipc", type=int, default=10)
    d.add_argument("--iterations", type=int, default=200)
    d.add_argument("--lr_img", type=float, default=0.1)
    d.add_argument("--batch_real", type=int, default=64)
    d.add_argument("--init", default="real", choices=["real", "noise"])
    d.add_argument("--device", default="cpu")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--missing", default="labelled", choices=["labelled", "error"],
                   help="a class with no mined images: distil it from the labelled training set (default), or stop")
    return p


def _datamodule(config_args: Sequence[str]) -> FERDataModule:
    if not config_args:
        raise SystemExit("ferkit omni: give the labelled data as for `ferkit fit`: --config NAME_OR_PATH [--data.* ...]")
    cli = build_cli(args=list(config_args), run=False)
    return cli.datamodule


def _eval_transform(dm: FERDataModule):
    return dm.make_transform(dm.hparams.eval_preset, 0.0, "eval")


def _pool(dm: FERDataModule, folder: str | None) -> FERDataset:
    if folder:
        ds: FERDataset = UnlabelledImageFolder(folder, dm.label_space, grayscale=dm.hparams.channels == 1)
    elif isinstance(dm.source, OmniSource) and dm.source.has_split("pool"):
        ds = dm.source.build("pool")
    else:
        raise SystemExit("ferkit omni: give --pool FOLDER, or a config whose dataset is an OmniSource with "
                         "labelled_fraction < 1 (its pool split)")
    ds.transform = _eval_transform(dm)
    return ds


def _eval_sets(dm: FERDataModule) -> list[FERDataset]:
    out = []
    for split in ("val", "test"):
        if dm.source.has_split(split):
            out.append(dm.source.build(split))
    return out


def embed(args: argparse.Namespace, config_args: Sequence[str]) -> EmbeddingStore:
    dm = _datamodule(config_args)
    pool = _pool(dm, args.pool)
    by = tuple(b for b in args.exclude.split(",") if b and b != "none")
    out = Path(args.out)
    keep_file = out / "pool_rows.npy"
    if keep_file.is_file():  # resuming: the exclusion was computed already
        keep = np.load(keep_file)
    else:
        keep = np.arange(len(pool))
        if by:
            with tqdm(desc="overlap check", unit="img") as bar:
                mask = overlap_mask(pool, _eval_sets(dm), by=by, progress=bar.update)
            keep = np.flatnonzero(~mask)
            print(f"[ferkit] excluded {int(mask.sum())} pool image(s) found in the evaluation sets")
        out.mkdir(parents=True, exist_ok=True)
        np.save(keep_file, keep)
        hidden = getattr(pool, "hidden_labels", None)
        if hidden is not None:
            np.save(out / "hidden_labels.npy", np.asarray(hidden)[keep])
    ds = pool if len(keep) == len(pool) else SubsetFER(pool, keep)
    if ds is not pool:
        ds.ids = [pool.ids[i] for i in keep]
    # absolute paths for a folder pool, so the manifest can point at the files
    ids = [str(p) for p in np.asarray(pool.paths, dtype=object)[keep]] if hasattr(pool, "paths") else list(ds.ids)
    module = load_module(args.ckpt)
    trainer = L.Trainer(accelerator=args.accelerator, devices=args.devices, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, strategy="ddp" if args.devices > 1 else "auto")
    store = embed_pool(module, ds, out, dm.num_classes, trainer=trainer, batch_size=args.batch_size,
                       num_workers=args.num_workers, ids=ids)
    (out / "source.json").write_text(json.dumps({"ckpt": str(Path(args.ckpt).resolve()), "pool": args.pool,
                                                 "class_names": dm.class_names}, indent=2))
    print(f"[ferkit] {out}: {len(store)} pool embeddings ({store.dim}-d, float16), complete={store.complete}")
    return store


def _prototypes(args: argparse.Namespace, dm: FERDataModule, miner: PrototypeMiner, store_dir: Path) -> None:
    path = store_dir / "prototypes.pt"
    ckpt = str(Path(args.ckpt).resolve())
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("ckpt") == ckpt:
            miner.prototypes = saved["prototypes"]
            miner.class_counts.copy_(saved["class_counts"])
            print(f"[ferkit] reusing the prototypes in {path}")
            return
    module = load_module(args.ckpt).eval()
    loader = dm.judge_dataloader(preset="eval")
    with tqdm(total=len(loader.dataset), desc="prototypes", unit="img") as bar:
        miner.fit(labelled_features(module, loader, progress=bar.update))
    torch.save({"ckpt": ckpt, "prototypes": miner.prototypes, "class_counts": miner.class_counts}, path)


def _precision_recall(mined_labels: np.ndarray, mined_rows: np.ndarray, hidden: np.ndarray, c: int) -> dict[str, Any]:
    per_class = []
    for k in range(c):
        sel = mined_labels == k
        tp = int((hidden[mined_rows[sel]] == k).sum())
        per_class.append({"mined": int(sel.sum()), "precision": tp / max(int(sel.sum()), 1),
                          "recall": tp / max(int((hidden == k).sum()), 1)})
    correct = int((hidden[mined_rows] == mined_labels).sum())
    return {"mined": int(len(mined_rows)), "precision": correct / max(len(mined_rows), 1),
            "recall": correct / max(len(hidden), 1), "per_class": per_class}


def mine(args: argparse.Namespace, config_args: Sequence[str]) -> Path:
    dm = _datamodule(config_args)
    dm.setup("fit")
    store_dir = Path(args.store)
    store = EmbeddingStore(store_dir)
    if not store.complete:
        raise SystemExit(f"ferkit omni mine: {store_dir} has {len(store.missing())} rows not embedded yet; run "
                         "`ferkit omni embed` again to finish it")
    taus = args.tau_sim[0] if len(args.tau_sim) == 1 else args.tau_sim
    miner = PrototypeMiner(dm.num_classes, tau_sim=taus, tau_conf=args.tau_conf, margin=args.margin,
                           max_per_class=args.max_per_class, chunk_size=args.chunk_size)
    _prototypes(args, dm, miner, store_dir)
    with tqdm(total=len(store), desc="mining", unit="row") as bar:
        mined = miner.mine(store.features, store.probs, progress=bar.update)
    ids = store.ids() or [str(i) for i in range(len(store))]
    pool_rows = np.load(store_dir / "pool_rows.npy") if (store_dir / "pool_rows.npy").is_file() else np.arange(len(store))
    rows = [ManifestRow(ids[i], int(k), float(s), float(c), int(pool_rows[i]))
            for i, k, s, c in zip(mined.indices.tolist(), mined.pseudo_labels.tolist(), mined.similarity.tolist(),
                                  mined.confidence.tolist())]
    out = write_manifest(args.out, rows, dm.class_names)
    counts = mined.per_class_counts(dm.num_classes).tolist()
    summary: dict[str, Any] = {"pool": len(store), "mined": len(mined), "per_class": dict(zip(dm.class_names, counts)),
                               "tau_sim": miner.tau_sim.tolist(), "tau_conf": args.tau_conf, "margin": args.margin}
    hidden_path = store_dir / "hidden_labels.npy"
    if hidden_path.is_file():  # the pool's true labels are known: how good is the mining?
        hidden = np.load(hidden_path)
        summary["quality"] = _precision_recall(mined.pseudo_labels.numpy(), mined.indices.numpy(), hidden, dm.num_classes)
        if args.curve:
            curve = []
            for tau in args.curve:
                m = PrototypeMiner(dm.num_classes, tau_sim=tau, tau_conf=args.tau_conf, margin=args.margin,
                                   max_per_class=args.max_per_class, chunk_size=args.chunk_size)
                m.prototypes = miner.prototypes
                got = m.mine(store.features, store.probs)
                q = _precision_recall(got.pseudo_labels.numpy(), got.indices.numpy(), hidden, dm.num_classes)
                curve.append({"tau_sim": tau, **{k: q[k] for k in ("mined", "precision", "recall")}})
            summary["curve"] = curve
    Path(str(out) + ".json").write_text(json.dumps(summary, indent=2))
    print(f"[ferkit] mined {len(mined)} of {len(store)} pool images -> {out} (per class: {summary['per_class']})")
    if "quality" in summary:
        print(f"[ferkit] against the hidden labels: precision {summary['quality']['precision']:.3f}, "
              f"recall {summary['quality']['recall']:.3f}")
    return out


def distill(args: argparse.Namespace, config_args: Sequence[str]) -> CondensedSet:
    dm = _datamodule(config_args)
    transform = _eval_transform(dm)
    if args.manifest:
        if args.pool:
            ds: FERDataset = ManifestDataset(args.manifest, dm.label_space, root=args.pool,
                                             grayscale=dm.hparams.channels == 1)
        elif isinstance(dm.source, OmniSource) and dm.source.has_split("pool"):
            pool = dm.source.build("pool")
            rows = read_manifest(args.manifest, dm.label_space)
            ds = SubsetFER(pool, [r.pool_index for r in rows])
            ds.labels = np.asarray([r.pseudo_label for r in rows], dtype=np.int64)
        else:
            ds = ManifestDataset(args.manifest, dm.label_space)
    else:
        dm.setup("fit")
        ds = dm.judge_dataloader(preset="eval").dataset
    ds.transform = transform
    labels = np.asarray(ds.labels)
    missing = [k for k in range(dm.num_classes) if not (labels == k).any()]
    filled: dict[str, int] = {}
    if args.manifest and missing and args.missing == "labelled":
        # a class the mining found nothing for (common for rare classes at strict thresholds): its distilled images
        # start from, and match, the labelled training images of that class instead
        dm.setup("fit")
        labelled = dm.judge_dataloader(preset="eval").dataset
        labelled.transform = transform
        rows = np.flatnonzero(np.isin(np.asarray(labelled.labels), missing))
        if len(rows):
            filled = {dm.class_names[k]: int((np.asarray(labelled.labels) == k).sum()) for k in missing}
            print(f"[ferkit] no mined images of {[dm.class_names[k] for k in missing]}: those classes are distilled "
                  f"from the labelled training set ({filled})")
            ds = torch.utils.data.ConcatDataset([ds, torch.utils.data.Subset(labelled, rows.tolist())])
            labels = np.concatenate([labels, np.asarray(labelled.labels)[rows]])
    dc = DatasetCondensation(method=args.method, ipc=args.ipc, init=args.init, iterations=args.iterations,
                             lr_img=args.lr_img, batch_real=args.batch_real, seed=args.seed, device=args.device)
    out = Path(args.out)
    if out.is_file():
        print(f"[ferkit] {out} exists; delete it to distil again")
        return CondensedSet.load(out)
    state = out.with_suffix(".state.pt")
    with tqdm(total=args.iterations, desc=f"distilling ({args.method}, ipc {args.ipc})", unit="it") as bar:
        if state.is_file():
            bar.update(int(torch.load(state, map_location="cpu", weights_only=True)["iteration"]))
        condensed = dc.run(ds, labels, dm.class_names, checkpoint=state, progress=bar.update)
    if filled:
        condensed.info["from_labelled"] = filled
    condensed.save(out)
    state.unlink(missing_ok=True)
    sheet = out.with_suffix(".png")
    view = DistilledImages(condensed.images, condensed.labels, condensed.class_names, transform.mean.tolist(),
                           transform.std.tolist())
    save_rgb(sheet, contact_sheet(view, per_class=min(condensed.ipc, 10), upscale=2, draw_landmarks=False))
    print(f"[ferkit] wrote {out}: {tuple(condensed.images.shape)} in {condensed.info['seconds']} s; contact sheet {sheet}")
    return condensed


def main(argv: list[str] | None = None) -> Any:
    argv = list(argv or [])
    args, config_args = _parser().parse_known_args(argv)
    return {"embed": embed, "mine": mine, "distill": distill}[args.step](args, config_args)
