"""Omni-supervised FER via distilled data (Liu et al., arXiv 2005.08551): mine a large unlabelled pool by
similarity to class prototypes, distil the mined set into a few images per class, train on labelled + distilled
(+ mined) data. See this folder's README."""
from ferkit.methods.omni.condensation import CondensedSet, ConvNet, DatasetCondensation
from ferkit.methods.omni.embedding import EmbeddingWriter, PoolEmbedder, embed_pool, labelled_features
from ferkit.methods.omni.lightning_model import OmniClassifier

__all__ = ["OmniClassifier", "DatasetCondensation", "CondensedSet", "ConvNet", "PoolEmbedder", "EmbeddingWriter",
           "embed_pool", "labelled_features"]
