"""Loss functions with one call convention (pure torch, no Lightning).

Every loss is an ``nn.Module`` whose ``forward`` returns a :class:`LossOutput` (``total`` plus named ``terms``),
or a subclass of it with extra typed fields; see :mod:`ferkit.losses.base`.
"""
from ferkit.losses.adaptive_wing import AdaptiveWingLoss, adaptive_wing_loss
from ferkit.losses.base import LossOutput
from ferkit.losses.distillation import DistillationLoss, distillation_kl
from ferkit.losses.expression_landmark_contrastive import ExpressionLandmarkContrastiveLoss, confidence_pseudo_labels
from ferkit.losses.label_distribution import LabelDistributionEstimator, LDEOutput
from ferkit.losses.tri_regularization import TriRegularization, TriRegularizationOutput, mutual_kl, ramp_weight

__all__ = [
    "AdaptiveWingLoss", "DistillationLoss", "distillation_kl", "ExpressionLandmarkContrastiveLoss", "LDEOutput", "LabelDistributionEstimator", "LossOutput",
    "TriRegularization", "TriRegularizationOutput", "adaptive_wing_loss", "confidence_pseudo_labels", "mutual_kl",
    "ramp_weight",
]
