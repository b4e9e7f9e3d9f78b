"""``SmallMapConv2d``: the same convolution as ``nn.Conv2d`` on tiny maps, through unfold + matmul when the policy
says so; the policy's choices; backbones converted with unchanged parameters."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ferkit.backbones import SmallMapConv2d, convert_small_map_convs, create_backbone, set_small_map_gemm
from ferkit.backbones import small_map_conv as smc


def _pair(**kw) -> tuple[nn.Conv2d, SmallMapConv2d]:
    torch.manual_seed(0)
    ref = nn.Conv2d(**kw)
    conv = nn.Conv2d(**kw)
    conv.load_state_dict(ref.state_dict())
    assert convert_small_map_convs(conv) == 1 and type(conv) is SmallMapConv2d
    return ref, conv


@pytest.mark.parametrize("kw,size", [
    (dict(in_channels=8, out_channels=6, kernel_size=3, padding=1), 2),               # layer 4's 3 x 3 at 2 x 2
    (dict(in_channels=8, out_channels=6, kernel_size=3, stride=2, padding=1), 3),     # strided, 3 x 3 -> 2 x 2
    (dict(in_channels=8, out_channels=6, kernel_size=1, stride=2, bias=False), 4),    # the 1 x 1 downsample
    (dict(in_channels=4, out_channels=5, kernel_size=(3, 1), padding=(1, 0), dilation=(1, 1)), 1),
])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_the_matrix_product_path_computes_the_convolution_and_its_gradients(kw, size, fmt) -> None:
    ref, conv = _pair(**kw)
    ref, conv = ref.to(memory_format=fmt), conv.to(memory_format=fmt)
    x = torch.randn(3, kw["in_channels"], size, size).to(memory_format=fmt)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    with set_small_map_gemm("on"):
        assert conv.uses_gemm(xb)  # the path under test is taken
        out = conv(xb)
    expected = ref(xa)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(expected)
    expected.backward(g)
    out.backward(g)
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-5)
    if ref.bias is not None:
        torch.testing.assert_close(conv.bias.grad, ref.bias.grad, rtol=1e-5, atol=1e-5)
    if fmt == torch.channels_last:  # the weight's gradient arrives in the weight's format (no copy back into it)
        assert conv.weight.grad.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_weights_are_multiplied_in_place() -> None:
    """With channels-last weights the product reads the weight as it lies in memory: no copy of it per step (layer
    4's weights are 2.4 M numbers each), and the output stays channels-last for the next layer."""
    _, conv = _pair(in_channels=16, out_channels=8, kernel_size=3, padding=1)
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(2, 16, 2, 2).to(memory_format=torch.channels_last)
    seen = []
    real_mm = torch.Tensor.__matmul__

    def spy(a, b):
        seen.append(b)
        return real_mm(a, b)

    with set_small_map_gemm("on"), pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.Tensor, "__matmul__", spy)
        out = conv(x)
    assert len(seen) == 1 and seen[0].untyped_storage().data_ptr() == conv.weight.untyped_storage().data_ptr()
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_under_bf16_autocast_it_gives_what_the_convolution_gives() -> None:
    ref, conv = _pair(in_channels=16, out_channels=8, kernel_size=3, padding=1)
    x = torch.randn(4, 16, 2, 2).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = ref(x)
        with set_small_map_gemm("on"):
            out = conv(x)
    assert out.dtype == expected.dtype == torch.bfloat16 and out.shape == expected.shape
    torch.testing.assert_close(out.float(), expected.float(), rtol=2e-2, atol=2e-2)


def test_the_policy_decides_and_larger_maps_are_never_touched(monkeypatch) -> None:
    _, conv = _pair(in_channels=4, out_channels=4, kernel_size=3, padding=1)
    tiny, small = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 4, 4)  # 4 and 16 output positions
    monkeypatch.setattr(smc, "cpu_has_amx_bf16", lambda: True)
    monkeypatch.delenv(smc.ENV, raising=False)
    assert smc.small_map_gemm_policy() == "auto"
    assert not conv.uses_gemm(tiny)  # auto: fp32 stays on the convolution
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv.uses_gemm(tiny) and not conv.uses_gemm(small)
        monkeypatch.setattr(smc, "cpu_has_amx_bf16", lambda: False)
        assert not conv.uses_gemm(tiny)  # auto: only where AMX bf16 tiles are there
        with set_small_map_gemm("on"):
            assert conv.uses_gemm(tiny) and not conv.uses_gemm(small)
    monkeypatch.setenv(smc.ENV, "on")
    assert conv.uses_gemm(tiny)
    with set_small_map_gemm("off"):  # in-process beats the environment
        assert not conv.uses_gemm(tiny)
    monkeypatch.setenv(smc.ENV, "sometimes")
    with pytest.raises(ValueError, match="FERKIT_SMALL_MAP_GEMM='sometimes'"):
        conv(tiny)
    with pytest.raises(ValueError, match="expected one of"):
        with set_small_map_gemm("always"):
            pass


def test_backbones_are_converted_with_the_same_parameters_and_outputs() -> None:
    torch.manual_seed(0)
    bb = create_backbone("resnet18", in_chans=1)
    convs = [m for m in bb.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(type(m) is SmallMapConv2d for m in convs)
    plain = {k for k in __import__("timm").create_model("resnet18", num_classes=0, global_pool="", in_chans=1)
             .state_dict()}
    assert {k.removeprefix("model.") for k in bb.state_dict()} == plain  # checkpoints load either way
    bb.eval()
    x = torch.randn(2, 1, 48, 48)  # layer 4 ends on 2 x 2: its convolutions can take the path
    with torch.no_grad():
        with set_small_map_gemm("off"):
            a = bb(x)
        with set_small_map_gemm("on"):
            b = bb(x)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_torchscript_compiles_the_plain_convolution() -> None:
    """``torch.jit.script`` of a converted model keeps working (it scripts the ``nn.Conv2d`` path); tracing, what
    ``ferkit.export`` uses, records whichever path the example input takes."""
    ref, conv = _pair(in_channels=4, out_channels=3, kernel_size=3, padding=1)
    x = torch.randn(2, 4, 2, 2)
    scripted = torch.jit.script(conv)
    torch.testing.assert_close(scripted(x), ref(x))
    with set_small_map_gemm("on"):
        traced = torch.jit.trace(conv, x)
    torch.testing.assert_close(traced(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_passes_without_gradients_never_copy_the_weight_per_sample(fmt) -> None:
    """A weight that does not require a gradient (a momentum key encoder; any pass without gradients under autocast,
    which casts the weight afresh) is used as it is: no batched product over copies of it."""
    _, conv = _pair(in_channels=16, out_channels=8, kernel_size=3, padding=1)
    conv = conv.to(memory_format=fmt).requires_grad_(False)
    x = torch.randn(4, 16, 2, 2).to(memory_format=fmt)
    with set_small_map_gemm("on"), torch.profiler.profile() as prof:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            conv(x)
    ops = {e.name for e in prof.events()}
    assert "aten::mm" in ops and "aten::bmm" not in ops and "aten::expand" not in ops


def test_a_3x3_map_takes_the_path_only_where_gradients_are_recorded() -> None:
    """oneDNN's backward is what is slow on a 3 x 3 map (its forward alone is faster than the product): training
    passes take the path there, passes without gradients keep the convolution; 2 x 2 maps take it in both, 4 x 4 in
    neither."""
    _, conv = _pair(in_channels=8, out_channels=8, kernel_size=3, padding=1)
    x3, x2, x4 = torch.randn(2, 8, 3, 3), torch.randn(2, 8, 2, 2), torch.randn(2, 8, 4, 4)
    with set_small_map_gemm("on"):
        assert conv.uses_gemm(x3) and conv.uses_gemm(x2) and not conv.uses_gemm(x4)
        with torch.no_grad():
            assert not conv.uses_gemm(x3) and conv.uses_gemm(x2)
        frozen = conv.requires_grad_(False)  # a momentum key encoder: no gradient for its weights or its input
        assert not frozen.uses_gemm(x3) and frozen.uses_gemm(x3.clone().requires_grad_())


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_the_patches_backward_fills_one_buffer_and_supports_gradients_of_gradients(fmt) -> None:
    """The patch matrix's backward adds the kernel taps' gradients into one zero buffer (autograd's backward of the
    nine slices filled nine), and is itself differentiable (gradient matching, as Omni's condensation does)."""
    _, conv = _pair(in_channels=4, out_channels=3, kernel_size=3, padding=1)
    conv = conv.double().to(memory_format=fmt)
    x = torch.randn(2, 4, 3, 3, dtype=torch.double).to(memory_format=fmt).requires_grad_()
    with set_small_map_gemm("on"):
        out = conv(x)
        with torch.profiler.profile(record_shapes=True) as prof:
            out.sum().backward()
        padded = 2 * 5 * 5 * 4  # batch x (3 + 2) x (3 + 2) x channels
        fills = [e for e in prof.events() if e.name in ("aten::fill_", "aten::zero_") and e.input_shapes[0]
                 and math.prod(e.input_shapes[0]) >= padded]
        assert len(fills) == 1
        assert torch.autograd.gradgradcheck(lambda inp: conv(inp), (x,))
