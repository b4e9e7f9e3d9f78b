"""Loss functions with one call convention (pure torch, no Lightning)."""
from ferkit.losses.adaptive_wing import AdaptiveWingLoss, adaptive_wing_loss
from ferkit.losses.expression_landmark_contrastive import ExpressionLandmarkContrastiveLoss, confidence_pseudo_labels
from ferkit.losses.label_distribution import LabelDistributionEstimator, LDEOutput
from ferkit.losses.tri_regularization import LossOutput, TriRegularization, mutual_kl, ramp_weight

__all__ = [
    "AdaptiveWingLoss", "ExpressionLandmarkContrastiveLoss", "LDEOutput", "LabelDistributionEstimator", "LossOutput",
    "TriRegularization", "adaptive_wing_loss", "confidence_pseudo_labels", "mutual_kl", "ramp_weight",
]
