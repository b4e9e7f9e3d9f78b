"""LA-Net's network (Wu & Cui, ICCV 2023): a shared trunk, an expression branch, and a landmark branch with a
top-down heatmap decoder. Pure torch (no Lightning); works with any timm CNN that reports its stages.

=================  ==========================================================================================
part               operation
=================  ==========================================================================================
trunk              the backbone up to its second feature stage (timm's ``feature_info[1]``, stride 4) -> ``F1``
expression branch  the backbone's own later stages -> pool (``"avg"``, ``"arm"``, ...) -> ``h_expr`` -> Linear
landmark branch    a copy of the later stages -> one map per remaining feature stage ``L2 .. Ln``; top-down path
                   ``Pn = lat_n(Ln)``, ``P_i = up(P_{i+1}) + lat_i(L_i)``, ``P1 = up(P2) + lat_1(F1)``; lat = 1x1
                   conv without bias to ``C1`` channels (``F1``'s), up = bilinear to the finer map's size
heatmaps / h_lmk   1x1 conv(P1) -> ``num_points`` heatmaps at ``F1``'s resolution; GAP(P1) -> ``h_lmk`` (``C1``)
=================  ==========================================================================================

The stages come from timm's feature API: ``forward_intermediates`` runs the expression path and returns ``F1``
on the way, and ``feature_info`` names the modules where each stage ends, so ResNets, EfficientNets and
MobileNets all work. The expression path is exactly a :class:`ferkit.models.FERNet` (module names ``backbone``,
``pool``, ``head``): :func:`ferkit.export.export_inference_model` copies it out, so the deployed model costs the
same as the plain backbone. ``forward(x)`` gives the expression logits only; ``forward_train(x)`` returns
``(logits, h_expr, h_lmk, heatmaps)``; ``forward_keys(x)`` returns ``(h_expr, h_lmk)`` without the classifier or
the heatmap convolution (all the momentum key encoder computes).

Init: the trunk and both branches' later stages start from the same (pretrained) backbone weights; the lateral,
heatmap and classifier layers are random.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ferkit.models import FERNet, FERNetConfig

__all__ = ["LANetModel"]


def _flat_modules(model: nn.Module, points: list[str]) -> list[tuple[str, nn.Module]]:
    """The model's children in order, with any container that holds a stage end (``"blocks.1"``) expanded."""
    out = []
    for name, child in model.named_children():
        if any(p.startswith(name + ".") for p in points):
            out.extend((f"{name}.{sub}", m) for sub, m in child.named_children())
        else:
            out.append((name, child))
    return out


class LANetModel(FERNet):
    """The landmark-aware network: a :class:`FERNet` (the expression path) plus the landmark branch.

    Args:
        net: the architecture of the expression path (:class:`ferkit.models.FERNetConfig`); the backbone must be a
            timm CNN with at least three feature stages (``feature_info``).
        num_classes: expression classes. num_points: heatmap channels (19 for LA-Net).
        in_chans / img_size: image channels and training side (fixes the pool's feature-map size).
    """

    def __init__(self, net: FERNetConfig | dict[str, Any] | None = None, num_classes: int = 7, num_points: int = 19,
                 in_chans: int = 3, img_size: int = 224) -> None:
        super().__init__(net, num_classes=num_classes, in_chans=in_chans, img_size=img_size)
        self.num_points = int(num_points)
        body = self.backbone.model
        info = list(getattr(body, "feature_info", None) or [])
        if len(info) < 3 or not hasattr(body, "forward_intermediates"):
            raise ValueError(f"LANetModel needs a timm CNN with feature stages (feature_info, forward_intermediates); "
                             f"{self.config.backbone!r} has {len(info)} stage(s)")
        points = [str(f["module"]) for f in info]
        flat = _flat_modules(body, points)
        names = [n for n, _ in flat]
        missing = [p for p in points[1:] if p not in names]
        if missing:
            raise ValueError(f"LANetModel: cannot find the stage modules {missing} of {self.config.backbone!r}")
        first, last = names.index(points[1]) + 1, names.index(points[-1]) + 1
        # landmark branch: its own copy of the stages after the trunk, from the same initial weights
        self.lmk_names = names[first:last]
        self.lmk_layers = nn.ModuleDict({n.replace(".", "_"): copy.deepcopy(m) for n, m in flat[first:last]})
        self._lmk_outputs = {n.replace(".", "_") for n in points[2:]}
        chans = [int(f["num_chs"]) for f in info[1:]]
        self.lmk_dim = chans[0]  # 64e for a ResNet
        self.laterals = nn.ModuleList([nn.Conv2d(c, self.lmk_dim, kernel_size=1, bias=False) for c in chans])
        self.heatmap_conv = nn.Conv2d(self.lmk_dim, self.num_points, kernel_size=1)
        # input pixels per heatmap cell: 4 with the usual stem, 2 with small_input (no max-pool)
        self.heatmap_stride = max(1, round(self.img_size / self.heatmap_size()))

    # -- pieces ---------------------------------------------------------------------------------------------------
    def trunk_and_expression(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(F1, h_expr)``: the shared trunk's map and the pooled expression features, in one backbone pass."""
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"LANetModel expects B x {self.in_chans} x H x W images, got {tuple(x.shape)}")
        final, (f1,) = self.backbone.model.forward_intermediates(x, indices=[1])
        return f1, self.pool(final)

    def landmark_features(self, f1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P1, h_lmk)``: the top-down map at the resolution of ``F1`` and its global average."""
        feats, h = [f1], f1
        for key, module in self.lmk_layers.items():
            h = module(h)
            if key in self._lmk_outputs:
                feats.append(h)
        p = self.laterals[-1](feats[-1])
        for lat, feat in zip(reversed(self.laterals[:-1]), reversed(feats[:-1])):
            p = F.interpolate(p, size=feat.shape[-2:], mode="bilinear", align_corners=False) + lat(feat)
        return p, p.mean(dim=(2, 3))

    # -- entry points -----------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Expression logits only (the inference path; the landmark branch is not run)."""
        return super().forward(x)

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits B x C, h_expr B x D, h_lmk B x C1, heatmaps B x K x H/s x W/s)``."""
        f1, h_expr = self.trunk_and_expression(x)
        p1, h_lmk = self.landmark_features(f1)
        return self.forward_head(h_expr), h_expr, h_lmk, self.heatmap_conv(p1)

    def forward_keys(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h_expr, h_lmk)`` only: no classifier, no heatmap convolution (the key encoder's work)."""
        f1, h_expr = self.trunk_and_expression(x)
        return h_expr, self.landmark_features(f1)[1]

    def inference_network(self) -> FERNet:
        """The expression path alone as a plain :class:`FERNet` (weights copied; same logits as ``self(x)``)."""
        plain = FERNet(self.config, num_classes=self.num_classes, in_chans=self.in_chans, img_size=self.img_size)
        keep = ("backbone.", "pool.", "head.")
        plain.load_state_dict({k: v for k, v in self.state_dict().items() if k.startswith(keep)}, strict=True)
        return plain.to(next(self.parameters()).device).train(self.training)

    def heatmap_size(self, img_size: int | None = None) -> int:
        """Side of the heatmaps for a square input of ``img_size`` (default: the training size)."""
        s = self.img_size if img_size is None else int(img_size)
        with torch.no_grad():
            was = self.training
            self.eval()
            try:
                ref = next(self.parameters())
                x = torch.zeros(1, self.in_chans, s, s, device=ref.device, dtype=ref.dtype)
                f1 = self.backbone.model.forward_intermediates(x, indices=[1], intermediates_only=True)[0]
            finally:
                self.train(was)
        return int(f1.shape[-1])
