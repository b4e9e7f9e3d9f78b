"""ARM, the Amend Representation Module: a drop-in replacement for global average pooling.

Shi, Zhu, Liang, *Learning to Amend Facial Expression Representation via De-albino and Affinity*,
arXiv 2103.10189. Reimplemented from the specification; no official code is used.

The idea in words
-----------------
Zero padding inside the backbone corrupts ("albinises") the border cells of the last feature map, and global
average pooling weights those cells as much as the interior ones. ARM pools differently, in three steps:

1. **Feature Arrangement (FA)** trades channels for space with ``PixelShuffle(r)``: the ``B x C x H x H`` map
   becomes ``B x c' x S x S`` with ``c' = C / r^2`` and ``S = H r``.
2. **De-albino (DA)** convolves every one of the ``c'`` channels with **one shared** large ``k x k`` kernel,
   stride ``t``, no padding, no bias, then BatchNorm. Overlapping padding-free windows cover border pixels less
   often than interior pixels, so the border cells are down-weighted (the learned kernel can sharpen this).
   Output: ``B x c' x s x s`` with ``s = (S - k) // t + 1``.
3. **Sharing Affinity (SA)** takes the channel mean ``U_b`` (``s x s``) of each sample and adds ``alpha * G``, a
   map shared by all samples: ``E_b = U_b + alpha G``. Since ``G`` is shared, ``alpha A vec(G)`` (``A`` the
   classifier weight) is a single logit bias, a class-prior shift estimated from the data.

The flattened ``E_b`` (``s^2`` features; 121 for ResNet-18 at 224 px) feeds the classifier.

Problems of the official release that this implementation avoids
----------------------------------------------------------------
* **Batch-dependent evaluation.** The release computes ``G`` from the *test* batch, so predictions depend on
  the batch size, the companions and the loader shuffling. The default ``affinity="ema"`` evaluates with an
  exponential moving average ``g_ema`` kept in a registered buffer (as drawn in the paper's figure): eval
  logits of an image are the same alone or in any batch. ``affinity="batch"`` keeps the paper-faithful
  behaviour for reproduction; ``affinity="none"`` removes SA.
* **Per-GPU G under DDP** (like unsynchronised BatchNorm). In ``"ema"`` mode the batch mean used to update
  ``g_ema`` is all-reduced over ranks, weighted by the local batch sizes, so every rank keeps the same buffer,
  equal to the single-process value on the concatenated batch. With ``gather_distributed=True`` the ``G`` used
  in the forward pass (``"batch"`` mode, and ``"ema"`` training) is the mean over the all-gathered batch, with
  gradient, through :func:`ferkit.state.distributed.gather_with_grad`.
* **No CPU path / per-channel loop.** DA is vectorised: channels are folded into the batch dimension and one
  strided correlation is computed for all of them (block-wise as one matrix product when the stride divides the
  kernel, else one ``conv2d``); this equals the per-channel loop exactly.

Choosing shuffle / kernel / stride for other backbones and input sizes
----------------------------------------------------------------------
The official configuration is ``r=16, k=32, t=8`` on a ``512 x 7 x 7`` map (ResNet-18, 224 px): the kernel spans
two backbone cells and the stride is half a cell. The same geometry fits smaller maps: a 4x4 map (ResNet-18 at
112 px) gives ``S=64, s=5`` (25 features); a 3x3 map (96 px) gives ``S=48, s=3``; a 6x6 map (48 px with
``output_stride=8``) gives ``S=96, s=9`` (81 features). The author advises large kernels and strides and never
kernels of 7 or smaller (issue #6). :meth:`ARM.suggest_config` returns such a
configuration for any ``(in_channels, feat_size)``.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ferkit.state.distributed import all_reduce_mean, gather_with_grad, is_distributed

__all__ = ["ARM", "ARMPool", "AFFINITY_MODES"]

AFFINITY_MODES = ("ema", "batch", "none")


class ARM(nn.Module):
    """Amend Representation Module: ``B x C x H x H`` feature map -> ``B x s^2`` features (see module docstring).

    Args:
        in_channels: channels ``C`` of the backbone map; must be divisible by ``shuffle ** 2``.
        feat_size: spatial size ``H`` of the (square) backbone map.
        shuffle: PixelShuffle factor ``r`` (Feature Arrangement).
        kernel_size: side ``k`` of the single shared De-albino kernel; at most ``S = feat_size * shuffle``.
        stride: De-albino stride ``t``.
        affinity: ``"ema"`` (default; batch-independent evaluation with the ``g_ema`` buffer), ``"batch"``
            (paper-faithful; the current batch's ``G`` in training *and* evaluation) or ``"none"`` (no SA term).
        ema_momentum: ``m`` in ``g_ema <- m g_ema + (1 - m) g`` (ferkit default 0.99).
        alpha_init: initial value of the learnable SA weight ``alpha`` (official 1.0).
        gather_distributed: under DDP, compute the forward ``G`` over the all-gathered batch (with gradient).

    Attributes:
        out_features: ``s * s``, the feature dimension.
        g_ema: persistent buffer ``s x s``, the moving average of ``G`` (``"ema"`` mode; zeros until the first
            training batch, so evaluating an untrained module uses no SA term).
        num_batches_tracked: persistent buffer, training batches seen by ``g_ema`` (0 = uninitialised).
    """

    def __init__(
        self,
        in_channels: int = 512,
        feat_size: int = 7,
        shuffle: int = 16,
        kernel_size: int = 32,
        stride: int = 8,
        affinity: str = "ema",
        ema_momentum: float = 0.99,
        alpha_init: float = 1.0,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        if affinity not in AFFINITY_MODES:
            raise ValueError(f"ARM: unknown affinity {affinity!r}; choose one of {AFFINITY_MODES}")
        for name, value in (("in_channels", in_channels), ("feat_size", feat_size), ("shuffle", shuffle),
                            ("kernel_size", kernel_size), ("stride", stride)):
            if int(value) != value or value < 1:
                raise ValueError(f"ARM: {name} must be a positive integer, got {value!r}")
        if not 0.0 <= ema_momentum < 1.0:
            raise ValueError(f"ARM: ema_momentum must be in [0, 1), got {ema_momentum}")
        if in_channels % (shuffle * shuffle) != 0:
            raise ValueError(
                f"ARM: in_channels={in_channels} is not divisible by shuffle**2={shuffle * shuffle}; Feature "
                f"Arrangement (PixelShuffle) needs C % r^2 == 0. Choose shuffle in "
                f"{_valid_shuffles(in_channels)} (or use ARM.suggest_config({in_channels}, {feat_size}))."
            )
        side = feat_size * shuffle
        if kernel_size > side:
            raise ValueError(
                f"ARM: kernel_size={kernel_size} is larger than the arranged map S = feat_size * shuffle = "
                f"{feat_size} * {shuffle} = {side}. Use a smaller kernel_size (the official geometry is "
                f"kernel_size = 2 * shuffle), a larger shuffle, or a larger input image; "
                f"ARM.suggest_config({in_channels}, {feat_size}) proposes one."
            )
        self.in_channels = int(in_channels)
        self.feat_size = int(feat_size)
        self.shuffle = int(shuffle)
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        self.affinity = affinity
        self.ema_momentum = float(ema_momentum)
        self.gather_distributed = bool(gather_distributed)
        self.arranged_channels = self.in_channels // (self.shuffle**2)  # c'
        self.arranged_size = side  # S
        self.out_size = self.output_size(feat_size, shuffle, kernel_size, stride)  # s
        self.out_features = self.out_size**2
        if self.out_size < 2:
            try:
                hint = f"ARM.suggest_config({in_channels}, {feat_size}) = {ARM.suggest_config(in_channels, feat_size)}"
            except ValueError:
                hint = "a larger input image"
            warnings.warn(
                f"ARM({in_channels}, feat_size={feat_size}, shuffle={shuffle}, kernel_size={kernel_size}, "
                f"stride={stride}) gives a {self.out_size}x{self.out_size} output (one feature): the classifier sees "
                f"a single number. Use a larger input or {hint}.",
                stacklevel=2,
            )

        # De-albino: ONE k x k kernel shared by all channels (per-channel kernels overfit small FER data, issue #6).
        self.kernel = nn.Parameter(torch.empty(1, 1, self.kernel_size, self.kernel_size))
        self.bn = nn.BatchNorm2d(self.arranged_channels)
        if affinity == "none":
            # no unused parameter: DDP would otherwise complain about parameters that get no gradient
            self.register_parameter("alpha", None)
        else:
            self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.register_buffer("g_ema", torch.zeros(self.out_size, self.out_size))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self._index_cache: dict[torch.device, torch.Tensor] = {}  # block-wise De-albino gather index, per device
        self.reset_parameters()

    # -- configuration helpers ---------------------------------------------------------------------------
    @staticmethod
    def output_size(feat_size: int, shuffle: int, kernel_size: int, stride: int) -> int:
        """Side ``s = (feat_size * shuffle - kernel_size) // stride + 1`` of the output map."""
        return (feat_size * shuffle - kernel_size) // stride + 1

    @staticmethod
    def suggest_config(in_channels: int, feat_size: int, min_out_size: int = 3) -> dict[str, int]:
        """A ``{"shuffle", "kernel_size", "stride"}`` configuration for a ``in_channels x feat_size^2`` map.

        Keeps the official geometry where possible: ``shuffle`` 16 (else the largest ``r`` with
        ``in_channels % r^2 == 0``), ``kernel_size = 2 * shuffle`` (two backbone cells), ``stride = shuffle // 2``
        (half a cell). For very small maps the kernel shrinks (down to one cell) until the output side is at least
        ``min_out_size``. Returns the official ``16 / 32 / 8`` for ``512 x 7 x 7``, and for ``512 x 4 x 4``
        (ResNet-18 at 112 px) the same values, giving a 5x5 output.
        """
        if feat_size < 2:
            raise ValueError(
                f"ARM needs a feature map of at least 2x2 (got {feat_size}x{feat_size}); use a larger input image or "
                "small_input=True for the backbone, or the 'avg' pool."
            )
        shuffles = [r for r in _valid_shuffles(in_channels) if r <= 16]
        if not shuffles or shuffles[-1] < 2:
            raise ValueError(f"ARM: in_channels={in_channels} is not divisible by any r^2 with r >= 2")
        r = shuffles[-1]
        stride = max(1, r // 2)
        kernel = 2 * r
        while ARM.output_size(feat_size, r, kernel, stride) < min_out_size and kernel - stride >= r:
            kernel -= stride
        return {"shuffle": r, "kernel_size": kernel, "stride": stride}

    def reset_parameters(self) -> None:
        # PyTorch's default conv initialisation (uniform, bound 1/sqrt(fan_in)) for the single shared kernel
        bound = 1.0 / math.sqrt(self.kernel_size * self.kernel_size)
        nn.init.uniform_(self.kernel, -bound, bound)
        self.bn.reset_parameters()
        self.g_ema.zero_()
        self.num_batches_tracked.zero_()

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, feat_size={self.feat_size}, shuffle={self.shuffle}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, out_features={self.out_features} "
            f"({self.out_size}x{self.out_size}), affinity={self.affinity!r}, ema_momentum={self.ema_momentum}, "
            f"gather_distributed={self.gather_distributed}"
        )

    # -- forward -------------------------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"ARM expects a 4-D B x C x H x W feature map, got a {x.dim()}-D tensor of shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"ARM was built for in_channels={self.in_channels} but got {x.shape[1]} channels "
                f"(shape {tuple(x.shape)}); pass in_channels=backbone.num_features"
            )
        if x.shape[2] != x.shape[3]:
            raise ValueError(
                f"ARM supports only square feature maps, got a {x.shape[2]}x{x.shape[3]} map (shape {tuple(x.shape)}); "
                "feed square images (same height and width) to the backbone, e.g. by cropping or padding them"
            )
        if x.shape[2] != self.feat_size:
            raise ValueError(
                f"ARM was built for a {self.feat_size}x{self.feat_size} map but got {x.shape[2]}x{x.shape[3]} "
                f"(shape {tuple(x.shape)}); pass feat_size=backbone.feature_size(img_size) for the image size you use"
            )

    def de_albino(self, x: torch.Tensor) -> torch.Tensor:
        """Feature Arrangement + De-albino conv + BN: ``B x C x H x H`` -> ``B x c' x s x s``.

        The same kernel is applied to every arranged channel, vectorised: channels are folded into the batch
        dimension. When the stride ``t`` divides the kernel (``k = m t``, the usual case) the correlation is computed
        block-wise: the arranged map is cut into ``t x t`` blocks and the kernel into ``m x m`` blocks, ONE matrix
        product correlates every map block with every kernel block, and each output sums its ``m^2`` block products.
        This equals ``conv2d(..., stride=t)`` (tested against a per-channel loop) and its backward is several times
        faster on CPU than the large-kernel convolution's. When ``t`` also divides ``shuffle``, PixelShuffle and
        the block cut are one permutation of the input.
        """
        self._check_input(x)
        b, c = x.shape[0], self.arranged_channels
        k, t, r, s = self.kernel_size, self.stride, self.shuffle, self.out_size
        kernel = self.kernel.to(x.dtype)
        if k % t != 0:
            arranged = F.pixel_shuffle(x, r)  # FA: B x c' x S x S
            side = arranged.shape[-1]
            d = F.conv2d(arranged.reshape(b * c, 1, side, side), kernel, stride=t)
            return self.bn(d.reshape(b, c, s, s))
        m = k // t
        nb = s - 1 + m  # blocks per side that some window touches (the rest of the map is never covered)
        h = self.feat_size
        if r % t == 0:
            # channel c'*r^2 + (a t + u) r + (a' t + v) at cell (y, x) -> block (y r/t + a, x r/t + a'), pixel (u, v)
            g = r // t
            blocks = x.reshape(b, c, g, t, g, t, h, h).permute(0, 1, 6, 2, 7, 4, 3, 5)
            blocks = blocks.reshape(b * c, h * g, h * g, t * t)
        else:
            arranged = F.pixel_shuffle(x, r)[:, :, : nb * t, : nb * t]  # FA, cropped to whole blocks
            blocks = arranged.reshape(b * c, nb, t, nb, t).transpose(2, 3).reshape(b * c, nb, nb, t * t)
        blocks = blocks[:, :nb, :nb].reshape(b * c * nb * nb, t * t)
        kblocks = kernel.reshape(m, t, m, t).transpose(1, 2).reshape(m * m, t * t)
        prod = (blocks @ kblocks.T).reshape(b * c, nb * nb * m * m)  # [n, map block (I, J), kernel block (p, q)]
        d = prod[:, self._block_index(x.device)].sum(dim=-1)
        return self.bn(d.reshape(b, c, s, s))

    def _block_index(self, device: torch.device) -> torch.Tensor:
        """``s^2 x m^2`` positions in ``prod``: output (i, j) takes map block (i + p, j + q) times kernel block (p, q)."""
        index = self._index_cache.get(device)
        if index is None:
            m, s = self.kernel_size // self.stride, self.out_size
            nb = s - 1 + m
            i = torch.arange(s).view(s, 1, 1, 1)
            j = torch.arange(s).view(1, s, 1, 1)
            p = torch.arange(m).view(1, 1, m, 1)
            q = torch.arange(m).view(1, 1, 1, m)
            index = (((i + p) * nb + (j + q)) * (m * m) + p * m + q).reshape(s * s, m * m).to(device)
            self._index_cache[device] = index
        return index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.de_albino(x).mean(dim=1)  # U_b = mean over channels: B x s x s
        if self.affinity != "none":
            u = u + self.alpha.to(u.dtype) * self._shared_affinity(u)  # E_b = U_b + alpha G
        return u.flatten(1)

    def _shared_affinity(self, u: torch.Tensor) -> torch.Tensor:
        """``G`` (s x s): the batch mean (``"batch"``, ``"ema"`` training) or the ``g_ema`` buffer (``"ema"`` eval)."""
        if self.affinity == "ema" and not self.training:
            return self.g_ema.to(u.dtype)
        gathered = self.gather_distributed and is_distributed()
        g = (gather_with_grad(u) if gathered else u).mean(dim=0)
        if self.affinity == "ema":
            self._update_ema(g, u.shape[0], already_global=gathered)
        return g

    @torch.no_grad()
    def _update_ema(self, g: torch.Tensor, batch_size: int, already_global: bool) -> None:
        g = g.detach().to(self.g_ema.dtype)  # e.g. fp16 under autocast -> the fp32 buffer
        if not already_global:
            # the mean over the concatenated global batch, identical on every rank (no-op on one process)
            g = all_reduce_mean(g, weight=batch_size)
        # first batch: g_ema = g; then g_ema = m g_ema + (1 - m) g. torch.where avoids a host sync per step on GPU
        blended = torch.lerp(g, self.g_ema, self.ema_momentum)
        self.g_ema.copy_(torch.where(self.num_batches_tracked == 0, g, blended))
        self.num_batches_tracked += 1


def _valid_shuffles(in_channels: int) -> list[int]:
    return [r for r in range(1, int(math.isqrt(in_channels)) + 1) if in_channels % (r * r) == 0]


#: Alias used by the pool registry (``ARMPool``).
ARMPool = ARM
