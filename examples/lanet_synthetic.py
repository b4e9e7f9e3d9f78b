"""LA-Net on the embedded synthetic faces (which ship exact 68-point landmarks), with 30 % symmetric label noise.

1. The components on their own, in plain PyTorch: heatmap targets + Adaptive Wing, the label-distribution estimator
   with its memory, the expression-landmark contrastive loss.
2. The LightningModule: LA-Net and the CE baseline trained the same way (the same module with the auxiliary loss
   weights at 0), tested on clean labels.
3. Export: the deployed model is a plain FERNet (the expression path), as cheap as the backbone.

    python examples/lanet_synthetic.py                  # ~10 min on a 2-core CPU
    python examples/lanet_synthetic.py --tiny           # a smoke run (used by the tests)

On FER+ use the config: ``ferkit fit --config lanet_ferplus --data.label_noise 0.3``.
"""
from __future__ import annotations

import argparse

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar

from ferkit.data import FERDataModule, SyntheticSource
from ferkit.export import export_inference_model
from ferkit.landmarks import HeatmapTargets
from ferkit.layers.landmark_contrastive_head import LandmarkContrastiveHead
from ferkit.losses import AdaptiveWingLoss, ExpressionLandmarkContrastiveLoss, LabelDistributionEstimator
from ferkit.methods import LANetClassifier, LANetModel
from ferkit.models import FERNetConfig
from ferkit.state.label_distribution_bank import LabelDistributionBank


def components_demo(backbone: str, size: int) -> None:
    """One LA-Net step by hand, without Lightning."""
    torch.manual_seed(0)
    net = LANetModel(FERNetConfig(backbone=backbone, small_input=True), num_classes=7, img_size=size)
    x = torch.randn(8, 3, size, size)
    landmarks = torch.rand(8, 68, 2) * (size - 1)            # 68 iBUG points in input pixels
    index, labels = torch.arange(8), torch.randint(0, 7, (8,))
    logits, h_expr, h_lmk, heatmaps = net.forward_train(x)
    targets = HeatmapTargets(19, stride=net.heatmap_stride, subset="lanet19")  # 19 of the 68 points
    heat, weight = targets(landmarks, heatmaps.shape[-2:])
    l_lmk = AdaptiveWingLoss()(heatmaps, heat, weight).total  # every ferkit loss returns a LossOutput
    bank = LabelDistributionBank(0, 7)
    bank.init_from_labels(labels)                             # per-sample memory, a registered buffer
    lde = LabelDistributionEstimator(net.num_features, net.lmk_dim, k=4)
    out = lde(h_expr, h_lmk, logits, index, bank)             # q_tilde for the batch + KL loss; updates the memory
    head = LandmarkContrastiveHead(net.num_features, net.lmk_dim, dim=64)  # projections + momentum key heads
    q_expr, q_lmk = head(h_expr, h_lmk)
    k_expr, k_lmk = head.keys(h_expr.detach(), h_lmk.detach())  # LANet takes the keys from a momentum encoder
    el = ExpressionLandmarkContrastiveLoss(dim=64, queue_size=64)
    l_el = el(q_expr, q_lmk, k_expr, k_lmk, target=out.target, index=index).total  # confidence-gated pseudo-labels
    print(f"[components] heatmaps {tuple(heatmaps.shape)}, L_lmk {l_lmk.item():.3f}, L_KL {out.total.item():.3f}, "
          f"L_EL {l_el.item():.3f}, memory row 0 {bank.memory[0].numpy().round(3)}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--noise", type=float, default=0.3)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--out", default="runs/examples_lanet")
    p.add_argument("--tiny", action="store_true", help="a few samples and one epoch (smoke test)")
    a = p.parse_args(argv)

    size = 24 if a.tiny else 48
    components_demo(a.backbone, size)
    sizes = {"num_train": 16, "num_val": 8, "num_test": 8} if a.tiny else {"num_train": 3000, "num_val": 1000, "num_test": 1000}
    results = {}
    for name, weights in (("ce", {"landmark_weight": 0.0, "kl_weight": 0.0, "el_weight": 0.0}), ("lanet", {})):
        L.seed_everything(0, verbose=False)
        common = dict(img_size=size, channels=3, batch_size=8 if a.tiny else 64, label_noise=a.noise, train_preset="default",
                      hflip=0.5, drop_last=True)
        dm = FERDataModule(dataset=SyntheticSource(**sizes, image_size=size), **common)
        model = LANetClassifier(net=FERNetConfig(backbone=a.backbone, small_input=True), img_size=size,
                                num_classes=dm.num_classes, class_names=dm.class_names, queue_size=64 if a.tiny else 4096,
                                lde_k=4 if a.tiny else 8, **weights)
        trainer = L.Trainer(max_epochs=1 if a.tiny else a.epochs, accelerator="cpu", logger=False,
                            enable_checkpointing=False, enable_progress_bar=not a.tiny, enable_model_summary=False,
                            callbacks=[TQDMProgressBar(refresh_rate=10)] if not a.tiny else None,
                            default_root_dir=a.out, num_sanity_val_steps=0)
        trainer.fit(model, dm)
        trainer.test(model, datamodule=dm, verbose=False)
        r = model.last_results["test"]
        results[name] = {"overall_acc": float(r["acc"]), "mean_class_acc": float(r["mean_class_acc"]),
                         "test_samples": int(r["num_samples"])}
        if name == "lanet":
            plain = export_inference_model(model)
            x = torch.randn(2, 3, size, size)
            with torch.no_grad():
                assert torch.allclose(plain(x), model.eval()(x), atol=1e-5)
            results["exported"] = type(plain).__name__
            results["memory_clean_agreement"] = float(
                (model.lde_bank.memory.argmax(1).numpy() == dm.train_set.clean_labels).mean())
    print(f"synthetic faces, {int(100 * a.noise)} % symmetric noise: test overall accuracy "
          f"CE {100 * results['ce']['overall_acc']:.2f} % vs LA-Net {100 * results['lanet']['overall_acc']:.2f} %; "
          f"exported as {results['exported']}")
    return results


if __name__ == "__main__":
    main()
