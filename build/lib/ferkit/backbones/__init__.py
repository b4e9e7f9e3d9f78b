"""timm backbones, unpooled, with local-weights loading (ferkit never downloads)."""
from ferkit.backbones.timm_backbone import Backbone, create_backbone
from ferkit.backbones.weights import load_pretrained, resolve_weights, weights_dir

__all__ = ["Backbone", "create_backbone", "load_pretrained", "resolve_weights", "weights_dir"]
