"""Extend a method: a new head, an extra loss term and a new argument, on top of ARMClassifier.

    python examples/extend_method.py          # a few steps on synthetic faces
    PYTHONPATH=. ferkit fit --config arm_synthetic --model examples.extend_method.ConfidentARM \
        --model.init_args.entropy_weight 0.1      # from the repository root

docs/extending.md walks through this file.
"""
from __future__ import annotations

import torch
from torch import nn

from ferkit import ARMClassifier


class ConfidentARM(ARMClassifier):
    """ARM with an MLP head and an entropy penalty on its predictions.

    Args (besides ARMClassifier's):
        hidden: width of the head's hidden layer.
        entropy_weight: weight of the mean prediction entropy added to the loss.
    """

    def __init__(self, hidden: int = 64, entropy_weight: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)  # saves every argument (yours too) in self.hparams and the checkpoint
        self.hidden = hidden  # set after super().__init__: the network is built later, in configure_model
        self.entropy_weight = entropy_weight

    def build_model(self) -> nn.Module:
        net = super().build_model()  # the FERNet described by `net:` (ARM pool for ARMClassifier)
        net.head = nn.Sequential(nn.Linear(net.num_features, self.hidden), nn.ReLU(), nn.Linear(self.hidden, net.num_classes))
        return net

    def training_step(self, batch, batch_idx):
        logits = self(batch["image"])
        ce = self.classification_loss(logits, batch)  # CE, or soft-label CE when the batch carries soft_label
        probs = logits.softmax(1)
        entropy = -(probs * probs.clamp_min(1e-8).log()).sum(1).mean()
        loss = ce + self.entropy_weight * entropy
        if not self.check_finite(loss, batch):  # the module's non-finite-loss policy
            return None
        for name, value in {"train/loss": loss, "train/ce": ce, "train/entropy": entropy}.items():
            self.log_train(name, value, batch_size=logits.shape[0])  # per step, and the epoch's mean as `name`
        return loss


def main() -> dict:
    import lightning as L
    from lightning.pytorch.callbacks import TQDMProgressBar

    from ferkit import FERDataModule, FERNetConfig
    from ferkit.data import SyntheticSource

    dm = FERDataModule(SyntheticSource(num_train=64, num_val=32, num_test=32, image_size=32), img_size=32, batch_size=16)
    model = ConfidentARM(hidden=16, entropy_weight=0.2, net=FERNetConfig(backbone="resnet10t", pool="arm", small_input=True),
                         num_classes=dm.num_classes, class_names=dm.class_names, img_size=32)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        callbacks=[TQDMProgressBar(refresh_rate=2)], enable_model_summary=False)
    trainer.fit(model, dm)
    return {"head": model.model.head, "metrics": dict(trainer.callback_metrics), "hparams": dict(model.hparams)}


if __name__ == "__main__":
    print(main()["head"])
