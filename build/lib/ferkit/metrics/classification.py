"""FER classification metrics that are exact under DDP.

:class:`FERMetrics` stores (dataset index, prediction, target) triples and computes everything once at the
end from the de-duplicated set: ``DistributedSampler`` pads the last batch with duplicates, which a plain
running accuracy would count twice; keyed by index, every sample counts exactly once on any world size.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torchmetrics import Metric


class FERMetrics(Metric):
    """Overall accuracy (micro), mean-class accuracy (macro recall), per-class recall and the confusion matrix.

    ``update(logits_or_preds, target, index)``: logits B x C (argmax is taken) or predicted ids B;
    ``index`` the dataset indices of the batch (any batch composition gives the same result).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {num_classes} classes")
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")
        self.add_state("indices", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor, index: torch.Tensor) -> None:
        if preds.ndim == 2:
            preds = preds.argmax(dim=1)
        target = target.long()
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= self.num_classes):
            raise ValueError(f"target ids must lie in 0..{self.num_classes - 1}, got {target.min().item()}..{target.max().item()}")
        self.preds.append(preds.detach().long().flatten())
        self.targets.append(target.detach().flatten())
        self.indices.append(index.detach().long().flatten())

    def _gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        def cat(x):
            if isinstance(x, list):
                return torch.cat(x) if x else torch.zeros(0, dtype=torch.long, device=self.device)
            return x

        preds, targets, idx = cat(self.preds), cat(self.targets), cat(self.indices)
        if idx.numel() == 0:
            return preds, targets
        # keep one entry per dataset index (DistributedSampler padding duplicates carry identical values)
        order = torch.argsort(idx, stable=True)
        idx_sorted = idx[order]
        first = torch.ones_like(idx_sorted, dtype=torch.bool)
        first[1:] = idx_sorted[1:] != idx_sorted[:-1]
        keep = order[first]
        return preds[keep], targets[keep]

    def compute(self) -> dict[str, torch.Tensor]:
        preds, targets = self._gathered()
        c = self.num_classes
        cm = torch.bincount(targets * c + preds, minlength=c * c).reshape(c, c) if targets.numel() else torch.zeros(c, c, dtype=torch.long, device=self.device)
        support = cm.sum(dim=1)
        recall = torch.where(support > 0, cm.diag().float() / support.clamp(min=1).float(), torch.full_like(support, float("nan"), dtype=torch.float))
        present = support > 0
        overall = cm.diag().sum().float() / support.sum().clamp(min=1).float()
        mean_class = recall[present].mean() if present.any() else torch.tensor(float("nan"), device=cm.device)
        return {
            "acc": overall,
            "mean_class_acc": mean_class,
            "per_class_recall": recall,
            "confusion_matrix": cm,
            "num_samples": support.sum(),
        }


def format_report(result: dict[str, torch.Tensor], class_names: Sequence[str], title: str = "") -> str:
    """A plain-text table of the metrics for logs and the CLI."""
    lines = [title] if title else []
    n = int(result["num_samples"])
    lines.append(f"  samples              {n}")
    lines.append(f"  overall accuracy     {100 * float(result['acc']):.2f} %")
    lines.append(f"  mean-class accuracy  {100 * float(result['mean_class_acc']):.2f} %")
    support = result["confusion_matrix"].sum(dim=1)
    for name, r, s in zip(class_names, result["per_class_recall"].tolist(), support.tolist()):
        shown = "   n/a" if s == 0 else f"{100 * r:6.2f}"
        lines.append(f"    recall {name:<10} {shown} %  (n={s})")
    return "\n".join(lines)
