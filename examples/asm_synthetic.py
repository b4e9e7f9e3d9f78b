"""ASM on the embedded synthetic faces with 30 % symmetric label noise, in three flavours.

1. **Plain PyTorch**: the components on their own -- two networks (:class:`ASMModel`), the miner
   (:class:`ferkit.miners.ASMMiner`: adaptive per-class thresholds, clean / ambiguous / noisy split keyed by
   dataset index) and the loss (:class:`ferkit.losses.TriRegularization`) in a hand-written training loop.
2. **Lightning**: the :class:`ferkit.methods.ASMClassifier` LightningModule, tested on clean labels, then the split
   report (CSV + contact sheet of the most suspicious samples per class) and the inference export.
3. **Lightning DDP**: the same with ``--devices 2`` (2 CPU processes, gloo): thresholds and split are identical
   on both processes.

    python examples/asm_synthetic.py                       # Lightning, ~15 min on a 2-core CPU
    python examples/asm_synthetic.py --flavour torch       # the plain-PyTorch loop
    python examples/asm_synthetic.py --devices 2           # Lightning DDP on 2 CPU processes
    python examples/asm_synthetic.py --tiny                # a smoke run (used by the tests)

On FER+: ``ferkit fit --config asm_ferplus`` (see ferkit/methods/asm/README.md).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar

from ferkit.commands.asm_report import build_report
from ferkit.data import FERDataModule, SyntheticSource
from ferkit.export import export_inference_model
from ferkit.losses import TriRegularization
from ferkit.methods import ASMClassifier, ASMModel
from ferkit.miners import ASMMiner, detection_scores
from ferkit.models import FERNetConfig


def make_data(a) -> FERDataModule:
    sizes = {"num_train": 96, "num_val": 32, "num_test": 64} if a.tiny else {"num_train": 3000, "num_val": 1000, "num_test": 1000}
    common = dict(img_size=a.img_size, channels=3, batch_size=32 if a.tiny else 64, eval_batch_size=128, train_preset="weak",
                  strong_preset="strong", label_noise=0.3, noise_mode="symmetric", noise_seed=0)
    return FERDataModule(dataset=SyntheticSource(**sizes, image_size=a.img_size), **common)


def torch_flavour(a) -> dict:
    """The components in a plain training loop (single process)."""
    dm = make_data(a)
    dm.setup("fit")
    dm.setup("test")
    train = dm.train_set
    net = ASMModel(FERNetConfig(backbone=a.backbone, small_input=True), num_classes=dm.num_classes, in_chans=3,
                   img_size=a.img_size)
    miner = ASMMiner(num_classes=dm.num_classes, num_samples=len(train))   # [T_n, T_c] = [0.2, 0.8], EMA 0.9
    loss_fn = TriRegularization(omega=0.6, gamma=1.0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    loader = dm.train_dataloader()
    # the judging loader: the same samples (same dataset indices), no augmentation
    judge = dm.judge_dataloader(preset="eval")
    flipped = torch.as_tensor(train.labels != train.clean_labels)
    for epoch in range(1, a.epochs + 1):  # 1-based, as the lambda ramp expects
        if epoch > a.warmup:
            net.eval()
            with torch.no_grad():
                for b in judge:
                    z1, z2 = net.forward_pair(b["image"])
                    miner.accumulate(b["index"], torch.stack([z1.softmax(1), z2.softmax(1)], 1), b["label"])
            split = miner.mine(epoch)
            s = detection_scores(split, flipped)
            print(f"epoch {epoch}: {split}, noisy-subset precision {s['noisy_precision']:.2f} recall {s['noisy_recall']:.2f}")
        net.train()
        for b in loader:
            x, y = b["image"], b["label"]
            z1, z2 = net.forward_pair(x)
            if epoch <= a.warmup:
                loss = 0.5 * (F.cross_entropy(z1, y) + F.cross_entropy(z2, y))
            else:
                bs = miner.split_for(b["index"])          # the batch's subsets, read by dataset index
                z1s = z2s = None
                if bool(bs.noisy.any()):                   # strong view only for the noisy samples
                    z1s, z2s = net.forward_pair(b["image_strong"][bs.noisy])
                loss = loss_fn(z1, z2, z1s, z2s, y, bs, epoch=epoch, max_epochs=a.epochs).total
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for b in dm.test_dataloader():
            correct += int((net(b["image"]).argmax(1) == b["label"]).sum())
            total += len(b["label"])
    acc = 100.0 * correct / total
    print(f"plain PyTorch ASM: test accuracy {acc:.2f} %")
    return {"test_acc": acc, "test_samples": total, "split": miner.split.counts().tolist()}


def lightning_flavour(a) -> dict:
    dm = make_data(a)
    model = ASMClassifier(net=FERNetConfig(backbone=a.backbone, small_input=True), num_classes=dm.num_classes,
                          class_names=dm.class_names, in_chans=3, img_size=a.img_size, warmup_epochs=a.warmup, stats=a.stats)
    out = Path(a.out)
    last = ModelCheckpoint(dirpath=out / "checkpoints", filename="last")  # rewritten every epoch
    trainer = L.Trainer(max_epochs=a.epochs, accelerator="cpu", devices=a.devices, strategy="ddp" if a.devices > 1 else "auto",
                        default_root_dir=str(out), log_every_n_steps=10, num_sanity_val_steps=0, enable_model_summary=False,
                        callbacks=[last, TQDMProgressBar(refresh_rate=10)], enable_progress_bar=True)
    trainer.fit(model, dm)
    result: dict = {}
    if a.devices > 1 and torch.distributed.is_initialized():
        # the DDP part is over: the other processes end here, rank 0 evaluates alone
        torch.distributed.destroy_process_group()
    # evaluate on one device (DistributedSampler would pad the test set with duplicates)
    tester = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                       default_root_dir=str(out / "test"))
    if trainer.is_global_zero:
        tester.test(model, datamodule=dm, verbose=False)
        r = model.last_results["test"]
        result = {"test_acc": 100 * float(r["acc"]), "test_mean_class_acc": 100 * float(r["mean_class_acc"]),
                  "test_samples": int(r["num_samples"])}
        print(f"Lightning ASM: test accuracy {result['test_acc']:.2f} %, mean-class {result['test_mean_class_acc']:.2f} %")
        rep = build_report(last.last_model_path or last.best_model_path, str(out / "report"), top=4)
        print("split report:", rep["files"], rep["counts"])
        net = export_inference_model(model)           # the averaged two-network model, a plain nn.Module
        torch.save(net.state_dict(), out / "asm_inference.pt")
        result["report"] = rep["files"]
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flavour", choices=["lightning", "torch"], default="lightning")
    p.add_argument("--devices", type=int, default=1, help="CPU processes for Lightning (2 = DDP on gloo)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--stats", choices=["extra_pass", "train_forward"], default="extra_pass")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--img-size", type=int, default=48)
    p.add_argument("--out", default="runs/examples/asm")
    p.add_argument("--tiny", action="store_true", help="tiny data and network (smoke test)")
    a = p.parse_args(argv)
    if a.tiny:
        a.epochs, a.warmup, a.backbone, a.img_size = 2, 1, "test_resnet", 32
    L.seed_everything(0, verbose=False)
    return torch_flavour(a) if a.flavour == "torch" else lightning_flavour(a)


if __name__ == "__main__":
    main()
