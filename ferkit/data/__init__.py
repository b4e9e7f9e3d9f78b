"""Label spaces, datasets in their real on-disk formats, transforms, samplers and the DataModule."""
from ferkit.data.base import DataError, FERDataset, SubsetFER
from ferkit.data.labels import BASIC7, BASIC8, CANONICAL_CLASSES, LabelSpace, canonical_name
from ferkit.data.registry import available_datasets, build_dataset, register_dataset

__all__ = ["BASIC7", "BASIC8", "CANONICAL_CLASSES", "DataError", "FERDataset", "LabelSpace", "SubsetFER",
           "available_datasets", "build_dataset", "canonical_name", "register_dataset"]
