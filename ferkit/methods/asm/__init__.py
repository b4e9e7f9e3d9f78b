"""ASM (Zhang et al., PRCV 2023): adaptive sample mining with Tri-Regularization, two averaged networks.

The building blocks are independent: :class:`ferkit.state.ClassThresholds`, :class:`ferkit.miners.ASMMiner`,
:class:`ferkit.losses.TriRegularization`; this package assembles them into the network (:class:`ASMModel`) and the
LightningModule (:class:`ASMClassifier`). Export: :mod:`ferkit.export`; split report: ``ferkit asm-report``.
"""
from ferkit.methods.asm.lightning_model import ASMClassifier, asm_optimizer, asm_scheduler
from ferkit.methods.asm.torch_model import ASMModel

__all__ = ["ASMClassifier", "ASMModel", "asm_optimizer", "asm_scheduler"]
