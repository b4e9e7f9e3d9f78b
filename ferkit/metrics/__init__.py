"""Evaluation metrics: overall accuracy, mean-class accuracy, per-class recall, confusion matrix."""
from ferkit.metrics.classification import FERMetrics, classification_scores, format_report
from ferkit.metrics.confusion import save_confusion_matrix

__all__ = ["FERMetrics", "classification_scores", "format_report", "save_confusion_matrix"]
