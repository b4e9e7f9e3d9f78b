"""Label spaces, datasets in their real on-disk formats, transforms, samplers and the DataModule."""
from ferkit.core.errors import DataError
from ferkit.data.base import FERDataset, SubsetFER
from ferkit.core.labels import BASIC7, BASIC8, CANONICAL_CLASSES, LabelSpace, canonical_name
from ferkit.data.noise import (DEFAULT_CLASS_MAPPING, apply_label_noise, class_dependent_noise, load_noisy_labels,
                               save_noisy_labels, symmetric_noise)
from ferkit.data.registry import available_datasets, build_dataset, register_dataset
from ferkit.data.samplers import ClassBalancedSampler, MinimalRandomResamplingSampler
from ferkit.data.progressive_sampler import ProgressivelyBalancedSampler
from ferkit.data.synthetic import ACTION_UNITS, EXPRESSION_PROTOTYPES, SyntheticFaces, contact_sheet

__all__ = [
    "ACTION_UNITS", "BASIC7", "BASIC8", "CANONICAL_CLASSES", "ClassBalancedSampler", "DEFAULT_CLASS_MAPPING", "DataError",
    "EXPRESSION_PROTOTYPES", "FERDataset", "LabelSpace", "MinimalRandomResamplingSampler", "ProgressivelyBalancedSampler",
    "SubsetFER", "SyntheticFaces", "apply_label_noise", "available_datasets", "build_dataset", "canonical_name",
    "class_dependent_noise", "contact_sheet", "load_noisy_labels", "register_dataset", "save_noisy_labels", "symmetric_noise",
]
