"""Datasets in their real on-disk formats, typed dataset sources, transforms, samplers and the DataModule."""
from ferkit.core.errors import DataError
from ferkit.core.labels import BASIC7, BASIC8, CANONICAL_CLASSES, LabelSpace, canonical_name
from ferkit.data.base import FERDataset, SubsetFER
from ferkit.data.datamodule import FERDataModule, check_data
from ferkit.data.erasing import InformativeRegionEraser, RegionErasingTransform, load_centres, save_centres
from ferkit.data.manifest import ManifestDataset, overlap_mask, pixel_hash, read_manifest, write_manifest
from ferkit.data.omni import OmniSource, OmniTrainSet
from ferkit.data.distilled import DistilledImages
from ferkit.data.noise import (DEFAULT_CLASS_MAPPING, apply_label_noise, class_dependent_noise, load_noisy_labels,
                               save_noisy_labels, symmetric_noise)
from ferkit.data.progressive_sampler import ProgressivelyBalancedSampler
from ferkit.data.samplers import ClassBalancedSampler, MinimalRandomResamplingSampler, ShuffleSampler
from ferkit.data.sampling import BalancedSampling, MRRSampling, ProgressiveSampling, SamplerFactory
from ferkit.data.sources import (AffectNetSource, DatasetSource, FER2013Source, FERPlusSource, FolderSource,
                                 RAFDBSource, SyntheticSource, available_sources)
from ferkit.data.synthetic import ACTION_UNITS, EXPRESSION_PROTOTYPES, SyntheticFaces
from ferkit.data.visual import contact_sheet

__all__ = [
    "ACTION_UNITS", "AffectNetSource", "BASIC7", "BASIC8", "BalancedSampling", "CANONICAL_CLASSES",
    "ClassBalancedSampler", "DEFAULT_CLASS_MAPPING", "DataError", "DatasetSource", "EXPRESSION_PROTOTYPES",
    "FER2013Source", "FERDataModule", "FERDataset", "FERPlusSource", "FolderSource", "LabelSpace", "MRRSampling",
    "MinimalRandomResamplingSampler", "ProgressiveSampling", "ProgressivelyBalancedSampler", "RAFDBSource",
    "SamplerFactory", "ShuffleSampler", "SubsetFER", "SyntheticFaces", "SyntheticSource", "apply_label_noise", "available_sources",
    "canonical_name", "check_data", "class_dependent_noise", "contact_sheet", "load_noisy_labels",
    "save_noisy_labels", "symmetric_noise",
    "DistilledImages", "ManifestDataset", "OmniSource", "OmniTrainSet", "overlap_mask", "pixel_hash", "read_manifest", "write_manifest",
    "InformativeRegionEraser", "RegionErasingTransform", "load_centres", "save_centres",
]
