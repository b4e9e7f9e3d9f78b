"""ferkit: reusable facial-expression-recognition components for PyTorch Lightning.

Top-level names are imported lazily, so ``from ferkit import ARM`` does not import Lightning.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    # layers and models (pure torch)
    "ARM": "ferkit.layers.arm",
    "ARMPool": "ferkit.layers.arm",
    "create_pool": "ferkit.layers.pools",
    "available_pools": "ferkit.layers.pools",
    "gather_with_grad": "ferkit.state.distributed",
    "Backbone": "ferkit.backbones",
    "register_pool": "ferkit.layers.pools",
    "FERNet": "ferkit.models",
    "FERNetConfig": "ferkit.models",
    "create_backbone": "ferkit.backbones",
    # data
    "LabelSpace": "ferkit.core.labels",
    "FERDataset": "ferkit.data.base",
    "DataError": "ferkit.core.errors",
    "SyntheticFaces": "ferkit.data.synthetic",
    "FER2013": "ferkit.data.fer2013",
    "FERPlus": "ferkit.data.ferplus",
    "RAFDB": "ferkit.data.rafdb",
    "AffectNet": "ferkit.data.affectnet",
    "ImageFolderFER": "ferkit.data.folder",
    "FERTransform": "ferkit.data.transforms",
    "FERDataModule": "ferkit.data.datamodule",
    "DatasetSource": "ferkit.data",
    "SyntheticSource": "ferkit.data",
    "FER2013Source": "ferkit.data",
    "FERPlusSource": "ferkit.data",
    "RAFDBSource": "ferkit.data",
    "AffectNetSource": "ferkit.data",
    "FolderSource": "ferkit.data",
    "BalancedSampling": "ferkit.data",
    "MRRSampling": "ferkit.data",
    "ProgressiveSampling": "ferkit.data",
    "MinimalRandomResamplingSampler": "ferkit.data.samplers",
    "ClassBalancedSampler": "ferkit.data.samplers",
    "apply_label_noise": "ferkit.data.noise",
    # metrics
    "FERMetrics": "ferkit.metrics",
    # landmarks, losses, state (LA-Net, ASM)
    "HeatmapTargets": "ferkit.landmarks.heatmaps",
    "LANET19": "ferkit.landmarks.heatmaps",
    "AdaptiveWingLoss": "ferkit.losses",
    "LabelDistributionEstimator": "ferkit.losses",
    "ExpressionLandmarkContrastiveLoss": "ferkit.losses",
    "TriRegularization": "ferkit.losses",
    "LandmarkContrastiveHead": "ferkit.layers.landmark_contrastive_head",
    "MemoryBank": "ferkit.layers.memory_bank",
    "LabelDistributionBank": "ferkit.state.label_distribution_bank",
    "ProgressivelyBalancedSampler": "ferkit.data.progressive_sampler",
    "ASMMiner": "ferkit.miners",
    "SampleSplit": "ferkit.miners",
    "detection_scores": "ferkit.miners",
    "detection_scores_per_class": "ferkit.miners",
    "ClassThresholds": "ferkit.state.thresholds",
    "PerSampleBank": "ferkit.state.bank",
    # PASM
    "PointAttackLocator": "ferkit.miners.point_attack",
    "InformativeRegionEraser": "ferkit.data.erasing",
    "DistillationLoss": "ferkit.losses",
    "PASMClassifier": "ferkit.methods",
    # LightningModules and their torch models
    "FERModule": "ferkit.methods",
    "FERClassifier": "ferkit.methods",
    "ARMClassifier": "ferkit.methods",
    "ASMClassifier": "ferkit.methods",
    "ASMModel": "ferkit.methods",
    "LANetClassifier": "ferkit.methods",
    "LANetModel": "ferkit.methods",
    "OneCycle": "ferkit.methods",
    "LinearDecay": "ferkit.methods",
    "OmniClassifier": "ferkit.methods", "DatasetCondensation": "ferkit.methods", "PrototypeMiner": "ferkit.miners", "EmbeddingStore": "ferkit.state.embedding_store", "OmniSource": "ferkit.data",  # Omni
    # export
    "export_inference_model": "ferkit.export",
    "save_inference_model": "ferkit.export",
    "load_inference_model": "ferkit.export",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ferkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
