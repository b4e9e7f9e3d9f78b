"""Evaluation metrics: overall accuracy, mean-class accuracy, per-class recall, confusion matrix; a label memory against
known clean labels."""
from ferkit.metrics.classification import FERMetrics, classification_scores, format_report
from ferkit.metrics.confusion import save_confusion_matrix
from ferkit.metrics.label_memory import label_memory_stats, rank_auroc

__all__ = ["FERMetrics", "classification_scores", "format_report", "label_memory_stats", "rank_auroc",
           "save_confusion_matrix"]
