"""ASM (Zhang et al., PRCV 2023): adaptive sample mining with Tri-Regularization, two averaged networks.

The building blocks are independent: :class:`ferkit.state.thresholds.ClassThresholds`,
:class:`ferkit.miners.ASMMiner`, :class:`ferkit.losses.TriRegularization`; this package assembles them into the
network (:class:`ASMNet`), the LightningModule (:class:`ASM`), the inference export and the split report.
"""
from ferkit.methods.asm.export import export_inference_model, load_inference_model, save_inference_model
from ferkit.methods.asm.lightning_model import ASM
from ferkit.methods.asm.torch_model import ASMNet

__all__ = ["ASM", "ASMNet", "export_inference_model", "load_inference_model", "save_inference_model"]
