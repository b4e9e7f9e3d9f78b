"""Complete pure-torch networks assembled from backbones, pools and heads."""
from ferkit.models.fernet import FERNet

__all__ = ["FERNet"]
