"""FER classification metrics that are exact under DDP.

:class:`FERMetrics` stores (dataset index, prediction, target) triples and computes everything once at the
end from the de-duplicated set: ``DistributedSampler`` pads the last batch with duplicates, which a plain
running accuracy would count twice; keyed by index, every sample counts exactly once on any world size.
The numbers themselves come from torchmetrics' functional forms (:func:`classification_scores`).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_recall,
)

__all__ = ["FERMetrics", "classification_scores", "format_report"]


def classification_scores(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> dict[str, torch.Tensor]:
    """Overall accuracy, mean-class accuracy, per-class recall, confusion matrix and sample count of predicted and
    true class ids ``[N]`` (each sample once).

    Per-class recall is NaN for a class absent from ``targets``, and mean-class accuracy is the mean recall over the
    classes present in ``targets``. That is why it is not torchmetrics' ``MulticlassAccuracy(average="macro")``:
    torchmetrics counts a class that is predicted but absent from the targets as recall 0, which would lower the
    score of any evaluation split that lacks a class (a small FER+ subset without "contempt", say).
    """
    c = int(num_classes)
    preds, targets = preds.reshape(-1).long(), targets.reshape(-1).long()
    if targets.numel() == 0:  # torchmetrics refuses empty inputs
        nan = torch.tensor(float("nan"), device=targets.device)
        return {"acc": nan, "mean_class_acc": nan.clone(), "per_class_recall": torch.full((c,), float("nan"), device=targets.device),
                "confusion_matrix": torch.zeros(c, c, dtype=torch.long, device=targets.device),
                "num_samples": torch.zeros((), dtype=torch.long, device=targets.device)}
    cm = multiclass_confusion_matrix(preds, targets, c)
    support = cm.sum(dim=1)
    present = support > 0
    recall = multiclass_recall(preds, targets, c, average="none").float()
    recall = torch.where(present, recall, torch.full_like(recall, float("nan")))
    return {
        "acc": multiclass_accuracy(preds, targets, c, average="micro").float(),
        "mean_class_acc": recall[present].mean(),
        "per_class_recall": recall,
        "confusion_matrix": cm,
        "num_samples": support.sum(),
    }


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
        c = self.num_classes
        if preds.ndim == 2:
            if preds.shape[1] != c:
                raise ValueError(f"FERMetrics: logits have {preds.shape[1]} classes but the metric was built for {c}")
            preds = preds.argmax(dim=1)
        elif preds.is_floating_point():
            raise TypeError(f"FERMetrics: pass B x {c} logits or integer predicted ids [B], got a 1-D {preds.dtype} tensor")
        if target.is_floating_point():
            raise TypeError(f"FERMetrics: targets must be integer class ids, got {target.dtype} (soft labels: pass their argmax)")
        target = target.long()
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= c):
            raise ValueError(f"FERMetrics: target ids must lie in 0..{c - 1}, got {target.min().item()}..{target.max().item()}")
        if preds.numel() and (int(preds.min()) < 0 or int(preds.max()) >= c):
            raise ValueError(f"FERMetrics: predicted ids must lie in 0..{c - 1}, got {preds.min().item()}..{preds.max().item()}")
        if not (preds.numel() == target.numel() == index.numel()):
            raise ValueError(f"FERMetrics: {preds.numel()} predictions, {target.numel()} targets and {index.numel()} "
                             "indices; pass one of each per sample (index = batch['index'])")
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
        return classification_scores(preds, targets, self.num_classes)


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
