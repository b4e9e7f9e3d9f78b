"""ARM (Shi et al., arXiv 2103.10189): the amend-representation pool, its network and LightningModule."""
from ferkit.methods.arm.lightning_model import ARMClassifier
from ferkit.methods.arm.torch_model import ARMNet

__all__ = ["ARMClassifier", "ARMNet"]
