"""``ChannelsLastMaxPool2d``: ``nn.MaxPool2d``'s results through the channels-last CPU kernel."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ferkit.backbones import ChannelsLastMaxPool2d, convert_max_pools, create_backbone
from ferkit.backbones import channels_last_pool as clp


def _pair(**kw) -> tuple[nn.MaxPool2d, ChannelsLastMaxPool2d]:
    plain = nn.MaxPool2d(**kw)
    fast = nn.MaxPool2d(**kw)
    assert convert_max_pools(fast) == 1 and type(fast) is ChannelsLastMaxPool2d
    return plain, fast


@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2),
                                dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=3, dilation=2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_same_maxima_and_gradients_in_the_inputs_format(kw, dtype) -> None:
    plain, fast = _pair(**kw)
    x = torch.randn(3, 16, 13, 13, generator=torch.Generator().manual_seed(0)).to(dtype)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    assert fast.takes_channels_last(xb)
    ya, yb = plain(xa), fast(xb)
    assert yb.dtype == dtype and yb.is_contiguous() and torch.equal(ya, yb)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    assert xb.grad.is_contiguous() and torch.equal(xa.grad, xb.grad)  # random inputs: no ties to break


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ties_send_the_gradient_where_the_plain_pool_does(dtype) -> None:
    """Windows with several equal maxima (a ReLU's zeros, bf16's coarse values) are broken the same way."""
    plain, fast = _pair(kernel_size=3, stride=2, padding=1)
    x = torch.randint(0, 3, (4, 32, 24, 24), generator=torch.Generator().manual_seed(0)).to(dtype)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(4, 32, 12, 12).to(dtype)
    plain(xa).backward(g)
    fast(xb).backward(g)
    assert torch.equal(xa.grad, xb.grad)


def test_without_gradients_it_pools_the_same() -> None:
    plain, fast = _pair(kernel_size=3, stride=2, padding=1)
    x = torch.randn(2, 8, 11, 11)
    with torch.no_grad():
        y = fast(x)
    assert y.is_contiguous() and not y.requires_grad and torch.equal(y, plain(x))


def test_the_channels_last_kernel_is_the_one_that_runs(monkeypatch) -> None:
    """The route is taken (the pool sees a channels-last tensor) for channels-first CPU inputs only."""
    seen = []
    real = F.max_pool2d

    def spy(x, *a, **k):
        seen.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
        return real(x, *a, **k)

    monkeypatch.setattr(clp.F, "max_pool2d", spy)
    _, fast = _pair(kernel_size=3, stride=2, padding=1)
    x = torch.randn(2, 8, 10, 10)
    fast(x)
    fast(x.contiguous(memory_format=torch.channels_last))  # already channels-last: pooled as it is
    with_indices = ChannelsLastMaxPool2d(3, 2, 1, return_indices=True)
    out, idx = with_indices(x)  # indices refer to the input's layout: the plain path
    assert seen == [True, True, False] and out.shape == idx.shape
    y = fast(x.clone().requires_grad_())  # training: the forward's own function, backward on the plain kernel
    assert type(y.grad_fn).__name__ == "_ChannelsLastMaxPoolBackward"
    monkeypatch.setattr(clp, "_ENABLED", False)
    fast(x)
    assert seen[-1] is False


def test_backbones_pool_through_it_and_script() -> None:
    bb = create_backbone("resnet18", in_chans=1)
    assert type(bb.model.maxpool) is ChannelsLastMaxPool2d
    x = torch.randn(2, 1, 48, 48)
    bb.eval()
    with torch.no_grad():
        ref = bb(x)
        scripted = torch.jit.script(bb.model.maxpool)
        y = torch.randn(2, 64, 24, 24)
        assert torch.equal(scripted(y), F.max_pool2d(y, 3, 2, 1))
    assert ref.shape == (2, 512, 2, 2)
    assert type(create_backbone("resnet18", in_chans=1, small_input=True).model.maxpool) is nn.Identity
