"""Loss functions with one call convention (pure torch, no Lightning)."""
from ferkit.losses.tri_regularization import LossOutput, TriRegularization, mutual_kl, ramp_weight

__all__ = ["LossOutput", "TriRegularization", "mutual_kl", "ramp_weight"]

# LA-Net (appended by the LA-Net work)
from ferkit.losses.adaptive_wing import AdaptiveWingLoss, adaptive_wing_loss  # noqa: E402
from ferkit.losses.expression_landmark_contrastive import (  # noqa: E402
    ExpressionLandmarkContrastiveLoss,
    confidence_pseudo_labels,
)
from ferkit.losses.label_distribution import LabelDistributionEstimator, LDEOutput  # noqa: E402

__all__ += [
    "AdaptiveWingLoss",
    "ExpressionLandmarkContrastiveLoss",
    "LDEOutput",
    "LabelDistributionEstimator",
    "adaptive_wing_loss",
    "confidence_pseudo_labels",
]
