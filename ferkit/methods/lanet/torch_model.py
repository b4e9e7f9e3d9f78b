"""LA-Net's network (METHODS.md 3.2): shared stem, expression branch, landmark branch with a top-down heatmap
decoder. Pure torch (no Lightning).

=================  ==========================================================================================
part               operation
=================  ==========================================================================================
trunk              the backbone's stem (conv1, BN, act, max-pool) and layer1 -> ``F1`` (64e channels, stride 4)
expression branch  the backbone's own layer2-4 -> pool (``"avg"``, ``"arm"``, ...) -> ``h_expr`` -> Linear -> logits
landmark branch    a copy of layer2-4 -> ``L2, L3, L4``; top-down path ``P4 = lat4(L4)``,
                   ``P_i = up(P_{i+1}) + lat_i(L_i)`` (i = 3, 2), ``P1 = up(P2) + lat1(F1)``; lat = 1x1 conv to 64e
                   channels without bias, up = bilinear x2 (to the exact size of the finer map)
heatmaps / h_lmk   1x1 conv(P1) -> ``num_points`` heatmaps at the resolution of ``F1``; GAP(P1) -> ``h_lmk`` (64e)
=================  ==========================================================================================

The expression path is *exactly* a :class:`ferkit.models.FERNet` (same module names ``backbone``, ``pool``,
``head``): :func:`ferkit.methods.lanet.export.export_inference_model` copies it out, so the deployed model costs the
same as the plain backbone. ``forward(x)`` runs the expression path only (logits), in training and evaluation;
``forward_train(x)`` returns ``(logits, h_expr, h_lmk, heatmaps)``; ``forward_keys(x)`` returns ``(h_expr, h_lmk)``
without the classifier or heatmap convolution (what LA-Net's momentum key encoder needs, pitfall #7).

Init: the trunk and *both* branches' layer2-4 start from the same (pretrained) backbone; the lateral, heatmap and
classifier layers are random.
"""
from __future__ import annotations

import copy
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ferkit.backbones import create_backbone
from ferkit.layers.pools import create_pool

__all__ = ["LANetModel"]

_STAGES = ("layer2", "layer3", "layer4")


def _stage_channels(stage: nn.Module) -> int:
    """Output channels of a ResNet stage (last conv / BN of its last block)."""
    last = None
    for m in stage.modules():
        if isinstance(m, nn.BatchNorm2d):
            last = m.num_features
        elif isinstance(m, nn.Conv2d):
            last = m.out_channels
    if last is None:
        raise ValueError("cannot infer the output channels of a backbone stage")
    return int(last)


class LANetModel(nn.Module):
    """The landmark-aware network.

    Args:
        backbone: a timm ResNet-family name with ``layer1..layer4`` (``"resnet18"``: e = 1; ``"resnet50"``: e = 4).
        pool: expression pool from the registry (``"avg"``; ``"arm"`` makes ARM the pool).
        pool_kwargs: pool arguments.
        num_classes: expression classes. num_points: heatmap channels (19 for LA-Net).
        in_chans: image channels. img_size: training input side (fixes the pool's feature-map size).
        pretrained: None, a weights file or a tag (``"msceleb"`` -> ``$FERKIT_WEIGHTS/resnet18_msceleb.pth``);
            loaded into the trunk and both branches; never downloaded.
        small_input: drop the stem max-pool (48-64 px inputs); heatmap stride becomes 2 instead of 4.
        dropout: dropout before the classifier.
        depth: shorthand for ``backbone=f"resnet{depth}"`` (the design card's signature); overrides ``backbone``.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        pool: str = "avg",
        pool_kwargs: dict[str, Any] | None = None,
        num_classes: int = 7,
        num_points: int = 19,
        in_chans: int = 3,
        img_size: int = 224,
        pretrained: str | os.PathLike | None = None,
        small_input: bool = False,
        dropout: float = 0.0,
        depth: int | None = None,
    ) -> None:
        super().__init__()
        if depth is not None:
            backbone = f"resnet{int(depth)}"
        self.img_size, self.num_classes, self.num_points = int(img_size), int(num_classes), int(num_points)
        self.backbone = create_backbone(backbone, pretrained=pretrained, in_chans=in_chans, small_input=small_input)
        body = self.backbone.model
        missing = [n for n in ("conv1", "bn1", "layer1", *_STAGES) if not hasattr(body, n)]
        if missing:
            raise ValueError(f"LANetModel needs a ResNet-family backbone with conv1, bn1, layer1..layer4; {backbone!r} lacks {missing}")
        self.feat_size = self.backbone.feature_size(self.img_size)
        self._pool_kwargs = dict(pool_kwargs) if pool_kwargs else None  # for export
        self.pool = create_pool(pool, in_channels=self.backbone.num_features, feat_size=self.feat_size, **(pool_kwargs or {}))
        self.num_features = int(self.pool.out_features)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(self.num_features, self.num_classes)

        # landmark branch: its own copy of layer2-4, from the same initial weights
        self.lmk_layers = nn.ModuleDict({name: copy.deepcopy(getattr(body, name)) for name in _STAGES})
        c1 = _stage_channels(body.layer1)
        chans = [c1] + [_stage_channels(getattr(body, n)) for n in _STAGES]
        self.lmk_dim = c1  # 64e
        self.laterals = nn.ModuleList([nn.Conv2d(c, self.lmk_dim, kernel_size=1, bias=False) for c in chans])
        self.heatmap_conv = nn.Conv2d(self.lmk_dim, self.num_points, kernel_size=1)
        # input pixels per heatmap cell: 4 with the usual stem, 2 with small_input (no max-pool)
        self.heatmap_stride = max(1, round(self.img_size / self.heatmap_size()))

    # -- pieces ---------------------------------------------------------------------------------------------------
    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Shared trunk: conv1, BN, act, max-pool, layer1 -> ``F1``."""
        if x.dim() != 4 or x.shape[1] != self.backbone.in_chans:
            raise ValueError(f"LANetModel expects B x {self.backbone.in_chans} x H x W images, got {tuple(x.shape)}")
        b = self.backbone.model
        x = b.conv1(x)
        x = b.bn1(x)
        x = b.act1(x) if hasattr(b, "act1") else F.relu(x, inplace=True)
        x = b.maxpool(x) if hasattr(b, "maxpool") else x
        return b.layer1(x)

    def expression_features(self, f1: torch.Tensor) -> torch.Tensor:
        b = self.backbone.model
        return self.pool(b.layer4(b.layer3(b.layer2(f1))))

    def landmark_features(self, f1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P1, h_lmk)``: the top-down map at the resolution of ``F1`` and its global average."""
        l2 = self.lmk_layers["layer2"](f1)
        l3 = self.lmk_layers["layer3"](l2)
        l4 = self.lmk_layers["layer4"](l3)
        p = self.laterals[3](l4)
        for lat, feat in ((self.laterals[2], l3), (self.laterals[1], l2), (self.laterals[0], f1)):
            p = F.interpolate(p, size=feat.shape[-2:], mode="bilinear", align_corners=False) + lat(feat)
        return p, p.mean(dim=(2, 3))

    # -- entry points -----------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Expression logits only (the inference path; the landmark branch is not run)."""
        return self.head(self.drop(self.expression_features(self.stem(x))))

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits B x C, h_expr B x D, h_lmk B x 64e, heatmaps B x K x H/s x W/s)``."""
        f1 = self.stem(x)
        h_expr = self.expression_features(f1)
        p1, h_lmk = self.landmark_features(f1)
        return self.head(self.drop(h_expr)), h_expr, h_lmk, self.heatmap_conv(p1)

    def forward_keys(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h_expr, h_lmk)`` only: no classifier, no heatmap convolution (the key encoder's work)."""
        f1 = self.stem(x)
        return self.expression_features(f1), self.landmark_features(f1)[1]

    def heatmap_size(self, img_size: int | None = None) -> int:
        """Side of the heatmaps for a square input of ``img_size`` (default: the training size)."""
        s = self.img_size if img_size is None else int(img_size)
        with torch.no_grad():
            was = self.training
            self.eval()
            try:
                ref = next(self.parameters())
                f1 = self.stem(torch.zeros(1, self.backbone.in_chans, s, s, device=ref.device, dtype=ref.dtype))
            finally:
                self.train(was)
        return int(f1.shape[-1])
