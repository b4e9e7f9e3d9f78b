"""Convolutions on very small feature maps computed as one matrix product, where the CPU's matrix units pay for it.

At FER+'s native 48 px a ResNet-18 with the standard stem ends on a 2 x 2 map: each of layer 4's convolutions is a
product of a ``64*4 x 4608`` patch matrix with a ``4608 x 512`` weight matrix. oneDNN's convolution kernels are built
for larger maps: measured on an Intel Xeon with AMX (bf16 matrix tiles), layer 4's bf16 convolutions, forward and
backward, took as long as in fp32, and a whole training step spent most of its time there. The same convolution as
``unfold`` (the patch matrix) and ``matmul`` runs on the AMX tiles: the recipe's training step, one thread, went from
588 to 331 ms (``benchmarks/small_map_gemm.py``, results in ``benchmarks/results/``). In passes that need gradients
layer 3's 3 x 3 map (9 positions) gains too: oneDNN's backward ran there at about a quarter of its forward's rate;
its forward alone is faster in oneDNN (passes without gradients keep it), and layer 2's 6 x 6 map loses either way.

:class:`SmallMapConv2d` is an ``nn.Conv2d`` with the same parameters (the same ``state_dict``, so checkpoints move
freely between the two) whose forward takes the matrix-product path when

* the output map has at most :data:`MAX_PIXELS` positions (2 x 2), or :data:`MAX_PIXELS_WITH_GRAD` (3 x 3) where the
  pass records gradients for the input or the weight, and
* the policy says so: ``FERKIT_SMALL_MAP_GEMM=auto`` (the default) takes it on a CPU with AMX bf16 (``amx_bf16`` in
  ``/proc/cpuinfo``) when the convolution runs in bf16 (under CPU bf16 autocast, or on bf16 tensors), where it was
  measured to be faster; ``on`` always (on the CPU), ``off`` never. :func:`set_small_map_gemm` sets it in-process.

Both paths compute the same sums (fp32: equal to ~1e-7); in bf16 they round the same products in another order, as
two oneDNN kernels would. :func:`convert_small_map_convs` turns a model's plain convolutions into this class in place;
ferkit's backbones are converted when built. ``torch.jit.script`` compiles the plain convolution; tracing records the
path its example input takes.
"""
import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MAX_PIXELS", "MAX_PIXELS_WITH_GRAD", "SmallMapConv2d", "convert_small_map_convs", "set_small_map_gemm",
           "small_map_gemm_policy", "cpu_has_amx_bf16"]

#: the largest output map (positions, h * w) computed as a matrix product in a pass without gradients (validation, a
#: momentum key encoder): a 3 x 3 map's forward was measured faster in oneDNN
MAX_PIXELS = 4
#: the same where the pass records gradients: a 3 x 3 map (layer 3 at 48 px) was measured faster as a product,
#: 6 x 6 slower (``benchmarks/small_map_gemm.py``'s ``on_2x2_only`` and ``on_6x6`` settings)
MAX_PIXELS_WITH_GRAD = 9
ENV = "FERKIT_SMALL_MAP_GEMM"
POLICIES = ("auto", "on", "off")
_override: str | None = None
#: read channels-last weights in their memory order (``benchmarks/small_map_gemm.py`` turns it off to time the
#: ``unfold`` order against it)
_MEMORY_ORDER = True
#: the patch matrix's own backward (one buffer) rather than autograd's through the slices (``small_map_gemm.py``)
_ONE_BUFFER_BACKWARD = True
#: gather contiguous inputs' patches with ``F.unfold`` (as the layer first did) instead of strided slices
#: (``benchmarks/small_map_gemm.py`` times the two)
_UNFOLD = False


def small_map_gemm_policy() -> str:
    """``auto``, ``on`` or ``off``: :func:`set_small_map_gemm`'s value, else ``$FERKIT_SMALL_MAP_GEMM``, else auto."""
    policy = _override if _override is not None else os.environ.get(ENV, "auto").strip().lower() or "auto"
    if policy not in POLICIES:
        raise ValueError(f"{ENV}={policy!r}: expected one of {', '.join(POLICIES)}")
    return policy


@contextlib.contextmanager
def set_small_map_gemm(policy: str | None) -> Iterator[None]:
    """Use ``policy`` (``auto`` / ``on`` / ``off``; None: the environment's) inside the ``with`` block."""
    global _override
    if policy is not None and policy not in POLICIES:
        raise ValueError(f"set_small_map_gemm: expected one of {', '.join(POLICIES)} or None, got {policy!r}")
    before, _override = _override, policy
    try:
        yield
    finally:
        _override = before


@functools.lru_cache(maxsize=1)
def cpu_has_amx_bf16() -> bool:
    """Whether this CPU advertises AMX bf16 tiles (Linux ``/proc/cpuinfo``; False where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def _runs_in_bf16(x: torch.Tensor) -> bool:
    if x.dtype == torch.bfloat16:
        return True
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


class SmallMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` that computes outputs of at most :data:`MAX_PIXELS` positions (:data:`MAX_PIXELS_WITH_GRAD` in a
    pass with gradients) as ``unfold`` + ``matmul`` where the policy (:func:`small_map_gemm_policy`) says so;
    otherwise, and for every other map, exactly ``nn.Conv2d``."""

    @torch.jit.unused
    def _output_size(self, x: torch.Tensor) -> tuple[int, int]:
        h, w = x.shape[-2:]
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1

    @torch.jit.unused
    def uses_gemm(self, x: torch.Tensor) -> bool:
        """Whether this input takes the matrix-product path."""
        if x.device.type != "cpu" or x.dim() != 4:
            return False
        oh, ow = self._output_size(x)
        with_grad = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        if oh * ow > (MAX_PIXELS_WITH_GRAD if with_grad else MAX_PIXELS):
            return False
        policy = small_map_gemm_policy()
        if policy == "auto":
            return _runs_in_bf16(x) and cpu_has_amx_bf16()
        return policy == "on"

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        # TorchScript compiles only the plain convolution (torch.jit.script of a converted model keeps working; this
        # module has no `from __future__ import annotations`, whose string annotations TorchScript cannot read)
        if not torch.jit.is_scripting() and self.uses_gemm(x):
            return self._gemm_forward(x, weight, bias)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)  # zero padding only

    @torch.jit.unused
    def _gemm_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        if torch.is_autocast_enabled("cpu"):  # what autocast does to a convolution's operands
            dtype = torch.get_autocast_dtype("cpu")
            x, weight = x.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
        oh, ow = self._output_size(x)
        if _MEMORY_ORDER and weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
            # channels-last weights in their memory order: patches as (kh, kw, C) rows, the weight matrix a view
            # (unfold's (C, kh, kw) order would copy the weight, and its gradient back, at every step)
            cols = self._patches(x, oh, ow, channels_last=True)
            w = weight.permute(0, 2, 3, 1).reshape(self.out_channels, -1)
            channels_last = True
        else:
            if _UNFOLD:
                cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
                cols = cols.transpose(1, 2).reshape(-1, cols.shape[1])  # (B * oh * ow) x (C * kh * kw)
            else:  # the same matrix; unfold (im2col) and its backward (col2im) were 2x slower on these maps in bf16
                cols = self._patches(x, oh, ow, channels_last=False)
            w = weight.reshape(self.out_channels, -1)
            channels_last = False
        # one 2-D product. `w @ patches` with B x K x (oh * ow) patches would broadcast the weight over the batch:
        # torch.matmul then copies it B times (B x out x K numbers) whenever the weight does not require a gradient,
        # as in every pass without gradients under autocast (validation, a momentum key encoder): about a second
        # per layer-4 convolution at batch 64 on the Intel Xeon, where the product itself takes 20 ms
        out = cols @ w.t()  # (B * oh * ow) x out_channels
        if bias is not None:
            out = out + bias
        out = out.reshape(x.shape[0], oh, ow, self.out_channels).permute(0, 3, 1, 2)  # channels-last strides
        return out if channels_last else out.contiguous()

    @torch.jit.unused
    def _patches(self, x: torch.Tensor, oh: int, ow: int, channels_last: bool) -> torch.Tensor:
        """``(B * oh * ow) x K``: each output position's receptive field as one row, gathered from ``kh * kw`` strided
        slices; the row in channels-last order ``(kh, kw, C)`` or in the weight's contiguous order ``(C, kh, kw)``."""
        geometry = (tuple(self.kernel_size), tuple(self.stride), tuple(self.padding), tuple(self.dilation))
        if _ONE_BUFFER_BACKWARD:
            return _GatherPatches.apply(x, geometry, oh, ow, channels_last)
        return _gather_patches(x, geometry, oh, ow, channels_last)  # autograd differentiates the slices


def _tap_slices(geometry: tuple, oh: int, ow: int) -> list[tuple[slice, slice]]:
    """The (rows, columns) of the padded input that each kernel tap reads, in (kh, kw) order."""
    (kh, kw), (sh, sw), _, (dh, dw) = geometry
    return [(slice(i * dh, i * dh + (oh - 1) * sh + 1, sh), slice(j * dw, j * dw + (ow - 1) * sw + 1, sw))
            for i in range(kh) for j in range(kw)]


def _gather_patches(x: torch.Tensor, geometry: tuple, oh: int, ow: int, channels_last: bool) -> torch.Tensor:
    """The patch matrix: strided slices of the zero-padded input, stacked in (kh, kw, C) or (C, kh, kw) row order."""
    (kh, kw), _, (ph, pw), _ = geometry
    xp = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
    xp = xp.permute(0, 2, 3, 1)  # B x H x W x C (a view of a channels-last input)
    taps = [xp[:, rows, cols] for rows, cols in _tap_slices(geometry, oh, ow)]
    return torch.stack(taps, dim=3 if channels_last else 4).reshape(-1, kh * kw * x.shape[1])


class _GatherPatches(torch.autograd.Function):
    """The patch matrix from strided slices of the zero-padded input; the backward adds each tap's gradient into one
    zero buffer. (Autograd's own backward of the slices and their stack filled and summed ``kh * kw`` buffers the
    size of the padded input: on layer 3-4 maps at batch 64 it took longer than the matrix products.) Its backward is
    made of differentiable operations, so gradients of gradients work."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, geometry: tuple, oh: int, ow: int, channels_last: bool) -> torch.Tensor:
        ctx.geometry, ctx.oh, ctx.ow, ctx.channels_last = geometry, oh, ow, channels_last
        ctx.input_shape = tuple(x.shape)
        ctx.input_format = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
                            and not x.is_contiguous() else torch.contiguous_format)
        return _gather_patches(x, geometry, oh, ow, channels_last)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (kh, kw), _, (ph, pw), _ = ctx.geometry
        b, c, h, w = ctx.input_shape
        taps = kh * kw
        grad = grad.reshape(b, ctx.oh, ctx.ow, taps, c) if ctx.channels_last else \
            grad.reshape(b, ctx.oh, ctx.ow, c, taps).transpose(3, 4)
        padded = grad.new_zeros(b, h + 2 * ph, w + 2 * pw, c)
        for t, (rows, cols) in enumerate(_tap_slices(ctx.geometry, ctx.oh, ctx.ow)):
            padded[:, rows, cols].add_(grad[:, :, :, t])
        grad_x = padded[:, ph: ph + h, pw: pw + w].permute(0, 3, 1, 2)
        return grad_x.contiguous(memory_format=ctx.input_format), None, None, None, None


def convert_small_map_convs(module: nn.Module) -> int:
    """Turn every plain ``nn.Conv2d`` in ``module`` (one group, zero padding given as numbers) into a
    :class:`SmallMapConv2d`, in place (parameters, buffers and hooks are kept). Returns how many were converted.
    A bad ``$FERKIT_SMALL_MAP_GEMM`` is refused here, when the model is built, rather than at its first tiny map."""
    small_map_gemm_policy()
    n = 0
    for m in module.modules():
        if (type(m) is nn.Conv2d and m.groups == 1 and m.padding_mode == "zeros"
                and not isinstance(m.padding, str)):
            m.__class__ = SmallMapConv2d
            n += 1
    return n
