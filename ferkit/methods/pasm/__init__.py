"""PASM: Point Adversarial Self Mining (Liu et al., IEEE TCYB 2022, arXiv 2008.11401); see README.md."""
from ferkit.methods.pasm.lightning_model import CentreLocatorModule, PASMClassifier, precompute_centres
from ferkit.methods.pasm.torch_model import freeze, load_network

__all__ = ["PASMClassifier", "CentreLocatorModule", "precompute_centres", "load_network", "freeze"]
