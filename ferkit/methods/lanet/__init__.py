"""LA-Net (Wu & Cui, ICCV 2023, arXiv 2307.09023): landmark-aware learning for FER under label noise.

:class:`LANetModel` (the network) and :class:`LANetClassifier` (the LightningModule with the paper's recipe).
Export the expression path as a plain FERNet with :func:`ferkit.export.export_inference_model`. See README.md.
"""
from ferkit.methods.lanet.lightning_model import LANetClassifier, lanet_optimizer
from ferkit.methods.lanet.torch_model import LANetModel

__all__ = ["LANetClassifier", "LANetModel", "lanet_optimizer"]
