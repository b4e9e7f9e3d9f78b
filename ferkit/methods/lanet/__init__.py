"""LA-Net (Wu & Cui, ICCV 2023, arXiv 2307.09023): landmark-aware learning for FER under label noise.

:class:`LANetModel` (the network), :class:`LANet` (the LightningModule with the paper's recipe) and
:func:`export_inference_model` (the expression path as a plain FERNet). See README.md in this folder.
"""
from ferkit.methods.lanet.export import export_inference_model, save_inference_model
from ferkit.methods.lanet.lightning_model import LANet
from ferkit.methods.lanet.torch_model import LANetModel

__all__ = ["LANet", "LANetModel", "export_inference_model", "save_inference_model"]
