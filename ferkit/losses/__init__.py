"""Loss functions with one call convention (pure torch, no Lightning)."""
from ferkit.losses.tri_regularization import LossOutput, TriRegularization, mutual_kl, ramp_weight

__all__ = ["LossOutput", "TriRegularization", "mutual_kl", "ramp_weight"]
