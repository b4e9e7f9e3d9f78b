"""timm backbones, unpooled, with local-weights loading (ferkit never downloads)."""
from ferkit.backbones.channels_last_pool import ChannelsLastMaxPool2d, convert_max_pools
from ferkit.backbones.small_map_conv import SmallMapConv2d, convert_small_map_convs, set_small_map_gemm
from ferkit.backbones.timm_backbone import Backbone, create_backbone
from ferkit.backbones.weights import load_pretrained, resolve_weights, weights_dir

__all__ = ["Backbone", "ChannelsLastMaxPool2d", "SmallMapConv2d", "convert_max_pools", "convert_small_map_convs",
           "create_backbone", "load_pretrained",
           "resolve_weights", "set_small_map_gemm", "weights_dir"]
