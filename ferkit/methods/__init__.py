"""The LightningModules, one folder per paper (torch model + LightningModule + README).

:class:`FERModule` (``base.py``) is what every method shares; :class:`FERClassifier` is the plain CE baseline;
:class:`OneCycle` and :class:`LinearDecay` are schedules sized to the run.
"""
from ferkit.methods.arm import ARMClassifier
from ferkit.methods.asm import ASMClassifier, ASMModel
from ferkit.methods.base import FERModule, default_optimizer
from ferkit.methods.classifier import FERClassifier
from ferkit.methods.lanet import LANetClassifier, LANetModel
from ferkit.methods.omni import CondensedSet, DatasetCondensation, OmniClassifier
from ferkit.methods.pasm import PASMClassifier, precompute_centres
from ferkit.methods.schedulers import LinearDecay, OneCycle

__all__ = ["FERModule", "FERClassifier", "ARMClassifier", "ASMClassifier", "ASMModel", "LANetClassifier", "LANetModel",
           "OneCycle", "LinearDecay", "default_optimizer", "OmniClassifier", "DatasetCondensation", "CondensedSet",
           "PASMClassifier", "precompute_centres"]
