"""Max-pooling of channels-first CPU tensors through the channels-last kernel.

A ResNet's stem ends with a 3 x 3, stride-2 max-pool. On the CPU, PyTorch's max-pool kernel for channels-first
(contiguous) tensors walks each channel's plane on its own, while its channels-last kernel compares whole vectors of
channels at once. Measured on an Intel Xeon 2-core machine, one thread, on the stem output of a 48-px FER+ batch
(64 x 64 x 24 x 24, bf16): forward alone 36 ms channels-first, 3 ms channels-last; forward and backward through this
module 39 -> 13 ms (x3.2); a CE training step x1.07 (437 -> 410 ms), LA-Net's x1.03
(``benchmarks/channels_last_pool.py``, results in ``benchmarks/results/``).

:class:`ChannelsLastMaxPool2d` is an ``nn.MaxPool2d`` (same arguments, no parameters) that, on the CPU, turns a
channels-first input into channels-last, pools, and returns the maxima channels-first, so everything around it is
unchanged. The backward pass runs the plain kernel on the channels-first gradient, with the positions of the maxima
from the forward pass (converting the gradient to channels-last and back cost more than the pool). The maxima are
the same numbers and the gradient goes to the same positions, ties included (both kernels keep the first largest
value of a window; ``tests/backbones/test_channels_last_pool.py`` checks it).
:func:`convert_max_pools` turns a model's ``nn.MaxPool2d`` modules into this class in place; ferkit's backbones are
converted when built. ``torch.jit.script`` compiles the plain pool.
"""
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ChannelsLastMaxPool2d", "convert_max_pools"]

#: take the channels-last kernel (``benchmarks/channels_last_pool.py`` turns it off to time the plain pool)
_ENABLED = True


class ChannelsLastMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that pools channels-first CPU inputs with the channels-last kernel and returns the result in
    the input's format; every other input (GPU, channels-last already, indices requested) takes ``nn.MaxPool2d``'s
    path."""

    @torch.jit.unused
    def takes_channels_last(self, x: torch.Tensor) -> bool:
        """Whether this input is routed through the channels-last kernel."""
        return (_ENABLED and not self.return_indices and x.device.type == "cpu" and x.dim() == 4
                and x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last))

    def forward(self, x: torch.Tensor):
        if not torch.jit.is_scripting() and self.takes_channels_last(x):
            return self._pool_channels_last(x)
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, ceil_mode=self.ceil_mode,
                            return_indices=self.return_indices)

    @torch.jit.unused
    def _pool_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        pair = torch.nn.modules.utils._pair
        k = pair(self.kernel_size)
        geometry = (list(k), list(pair(self.stride if self.stride is not None else k)), list(pair(self.padding)),
                    list(pair(self.dilation)), bool(self.ceil_mode))
        if not (torch.is_grad_enabled() and x.requires_grad):
            out = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), *geometry[:4], ceil_mode=geometry[4])
            return out.contiguous()
        return _ChannelsLastMaxPool.apply(x, geometry)


class _ChannelsLastMaxPool(torch.autograd.Function):
    """Forward through the channels-last kernel; backward with the plain kernel on the channels-first gradient.

    Converting the gradient to channels-last and back (what autograd does through ``contiguous``) took longer than
    the pool itself; the indices of the maxima (positions within each channel's plane, whatever the layout), the
    output's size, are converted once in the forward pass instead."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, geometry: tuple) -> torch.Tensor:
        kernel, stride, padding, dilation, ceil_mode = geometry
        out, indices = torch.ops.aten.max_pool2d_with_indices(
            x.contiguous(memory_format=torch.channels_last), kernel, stride, padding, dilation, ceil_mode)
        ctx.geometry = geometry
        ctx.save_for_backward(x, indices.contiguous())
        return out.contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, indices = ctx.saved_tensors
        kernel, stride, padding, dilation, ceil_mode = ctx.geometry
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(
            grad.contiguous(), x, kernel, stride, padding, dilation, ceil_mode, indices)
        return grad_x, None


def convert_max_pools(module: nn.Module) -> int:
    """Turn every plain ``nn.MaxPool2d`` in ``module`` into a :class:`ChannelsLastMaxPool2d`, in place (hooks kept).
    Returns how many were converted."""
    n = 0
    for m in module.modules():
        if type(m) is nn.MaxPool2d:
            m.__class__ = ChannelsLastMaxPool2d
            n += 1
    return n
