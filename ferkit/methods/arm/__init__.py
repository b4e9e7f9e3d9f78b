"""ARM (Shi et al., arXiv 2103.10189): the FER network with the amend-representation pool. The layer itself is
:class:`ferkit.layers.ARM`; the network is a :class:`ferkit.models.FERNet` with ``pool="arm"``."""
from ferkit.methods.arm.lightning_model import ARMClassifier, arm_optimizer, arm_scheduler

__all__ = ["ARMClassifier", "arm_optimizer", "arm_scheduler"]
