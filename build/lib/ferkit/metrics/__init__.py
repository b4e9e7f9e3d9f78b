"""Evaluation metrics: overall accuracy, mean-class accuracy, per-class recall, confusion matrix."""
from ferkit.metrics.classification import FERMetrics, format_report
from ferkit.metrics.confusion import save_confusion_matrix

__all__ = ["FERMetrics", "format_report", "save_confusion_matrix"]
