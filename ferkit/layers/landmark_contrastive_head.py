"""Projection heads of LA-Net's expression-landmark contrast, with their momentum (key) copies.

Wu & Cui, *LA-Net: Landmark-Aware Learning for Reliable Facial Expression Recognition under Label Noise*, ICCV 2023;
the momentum key encoder follows MoCo (He et al., CVPR 2020).

``g_e: expr_dim -> dim -> ReLU -> dim`` and ``g_l: lmk_dim -> dim -> ReLU -> dim``, outputs L2-normalised. The key
heads are exponential moving averages (momentum 0.999) of the query heads, never trained by gradient. The loss and
its queues live in :class:`ferkit.losses.ExpressionLandmarkContrastiveLoss`; :func:`momentum_update` is the EMA
used for both these heads and LA-Net's key encoder.

Why not ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``: ferkit's key encoder *copies* the
BatchNorm statistics of the query encoder, while ``AveragedModel`` either averages them (``use_buffers=True``) or
leaves them at their initial values (``use_buffers=False``); its decay is fixed at construction, while
:meth:`LandmarkContrastiveHead.momentum_update` accepts a per-call momentum (a schedule); and it nests the copy under
``.module`` with an extra ``n_averaged`` buffer, which would rename every key-encoder entry of existing LA-Net
checkpoints. The copies here are plain submodules, so their parameters and buffers are in the state dict and are
restored exactly on resume.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LandmarkContrastiveHead", "momentum_update", "make_momentum_copy"]


@torch.no_grad()
def momentum_update(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """``target <- m * target + (1 - m) * source`` for parameters; buffers (BN statistics) are copied."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum_update: momentum must be in [0, 1], got {momentum}")
    t_params, s_params = dict(target.named_parameters()), dict(source.named_parameters())
    if t_params.keys() != s_params.keys():
        missing = sorted(set(s_params) ^ set(t_params))[:5]
        raise ValueError(f"momentum_update: target and source have different parameters (e.g. {missing}); the target "
                         "must be a copy of the source (make_momentum_copy)")
    bad = [n for n, p in t_params.items() if p.shape != s_params[n].shape]
    if bad:
        raise ValueError(f"momentum_update: parameter shapes differ for {bad[:5]}; rebuild the copy with make_momentum_copy")
    for name, p in t_params.items():
        p.mul_(momentum).add_(s_params[name].detach(), alpha=1.0 - momentum)
    s_bufs = dict(source.named_buffers())
    for name, b in target.named_buffers():
        b.copy_(s_bufs[name])


def make_momentum_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` with gradients disabled (the initial momentum encoder)."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def _mlp(in_dim: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))


class LandmarkContrastiveHead(nn.Module):
    """Query heads ``g_e``, ``g_l`` and their momentum key heads.

    Args:
        expr_dim: size of the expression feature (512e, or the pool's ``out_features``).
        lmk_dim: size of the landmark feature (64e).
        dim: embedding size (64e in LA-Net; also the hidden size).
        momentum: EMA momentum of the key heads (0.999).

    ``head(h_expr, h_lmk) -> (q_expr, q_lmk)``; ``head.keys(hk_expr, hk_lmk) -> (k_expr, k_lmk)`` (no gradient);
    ``head.momentum_update()`` after (or before) each optimisation step.
    """

    def __init__(self, expr_dim: int, lmk_dim: int, dim: int = 64, momentum: float = 0.999) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.dim, self.momentum = int(dim), float(momentum)
        self.expr_proj = _mlp(expr_dim, dim)
        self.lmk_proj = _mlp(lmk_dim, dim)
        self.key_expr_proj = make_momentum_copy(self.expr_proj)
        self.key_lmk_proj = make_momentum_copy(self.lmk_proj)

    def _check(self, h_expr: torch.Tensor, h_lmk: torch.Tensor) -> None:
        for name, h, proj in (("h_expr", h_expr, self.expr_proj), ("h_lmk", h_lmk, self.lmk_proj)):
            d = proj[0].in_features
            if h.ndim != 2 or h.shape[1] != d:
                raise ValueError(f"LandmarkContrastiveHead: {name} must be [B, {d}], got {tuple(h.shape)}")
        if h_expr.shape[0] != h_lmk.shape[0]:
            raise ValueError(f"LandmarkContrastiveHead: batch sizes differ: h_expr {h_expr.shape[0]}, h_lmk {h_lmk.shape[0]}")

    def forward(self, h_expr: torch.Tensor, h_lmk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(h_expr, h_lmk)
        return F.normalize(self.expr_proj(h_expr), dim=1), F.normalize(self.lmk_proj(h_lmk), dim=1)

    @torch.no_grad()
    def keys(self, hk_expr: torch.Tensor, hk_lmk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(hk_expr, hk_lmk)
        return F.normalize(self.key_expr_proj(hk_expr), dim=1), F.normalize(self.key_lmk_proj(hk_lmk), dim=1)

    @torch.no_grad()
    def momentum_update(self, momentum: float | None = None) -> None:
        m = self.momentum if momentum is None else float(momentum)
        momentum_update(self.key_expr_proj, self.expr_proj, m)
        momentum_update(self.key_lmk_proj, self.lmk_proj, m)
