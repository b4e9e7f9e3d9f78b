"""Unpooled timm backbones, local-weights loading (nothing is downloaded), and FERNet (backbone + pool + head)."""
from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from ferkit.backbones import Backbone, create_backbone, load_pretrained, resolve_weights
from ferkit.models import FERNet


pytestmark = pytest.mark.usefixtures("one_thread")


def _reference_state(seed: int = 0, in_chans: int = 3) -> dict[str, torch.Tensor]:
    """A torchvision-style resnet18 checkpoint (with its classifier) with known random values."""
    torch.manual_seed(seed)
    return timm.create_model("resnet18", pretrained=False, num_classes=1000, in_chans=in_chans).state_dict()


# -- backbone ---------------------------------------------------------------------------------------------
def test_unpooled_map_and_feature_size() -> None:
    bb = create_backbone("resnet18")
    assert isinstance(bb, Backbone) and bb.num_features == 512 and bb.name == "resnet18"
    assert bb(torch.randn(1, 3, 112, 112)).shape == (1, 512, 4, 4)
    assert bb.feature_size(112) == 4 and bb.feature_size(96) == 3 and bb.feature_size(64) == 2
    assert set(bb._feature_sizes) == {112, 96, 64}  # cached
    assert bb.pretrained_cfg["mean"] == pytest.approx((0.485, 0.456, 0.406))


def test_feature_size_does_not_touch_bn_stats_or_mode() -> None:
    bb = create_backbone("resnet18").train()
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    bb.feature_size(64)
    assert bb.training and all(m.training for m in bb.modules())
    after = bb.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_small_input_removes_stem_pool() -> None:
    plain, small = create_backbone("resnet18", in_chans=1), create_backbone("resnet18", in_chans=1, small_input=True)
    assert isinstance(small.model.maxpool, nn.Identity)
    assert plain.feature_size(48) == 2 and small.feature_size(48) == 3
    assert plain.feature_size(64) == 2 and small.feature_size(64) == 4
    with pytest.raises(ValueError, match="small_input=True is not supported for backbone 'mobilenetv3_small_050'"):
        create_backbone("mobilenetv3_small_050", small_input=True)


def test_input_channel_error_and_unknown_model() -> None:
    bb = create_backbone("resnet18", in_chans=1)
    with pytest.raises(ValueError, match="expects B x 1 x H x W.*in_chans"):
        bb(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="unknown timm backbone 'resnet_nope'"):
        create_backbone("resnet_nope")
    with pytest.raises(TypeError, match="'num_classes' is set by ferkit"):
        create_backbone("resnet18", num_classes=7)


# -- weights ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [None, "none", "None", ""])
def test_no_pretrained(spec) -> None:
    assert resolve_weights("resnet18", spec) is None


def test_missing_tag_explains_where_to_put_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERKIT_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        create_backbone("resnet18", pretrained="msceleb")
    msg = str(err.value)
    assert str(tmp_path / "resnet18_msceleb.pth") in msg
    assert "never downloads" in msg and "pretrained='/path/to/resnet18_msceleb.pth'" in msg


def test_default_weights_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FERKIT_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match=r"\.cache/ferkit/weights/resnet18_imagenet_nope\.pth"):
        resolve_weights("resnet18", "imagenet_nope")


def test_missing_path() -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_backbone("resnet18", pretrained="/nonexistent/dir/r18.pth")


def _assert_loaded(bb: Backbone, ref: dict[str, torch.Tensor]) -> None:
    own = bb.model.state_dict()
    for k, v in own.items():
        torch.testing.assert_close(v, ref[k], rtol=0, atol=0, msg=k)


def test_tag_resolves_in_weights_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = _reference_state()
    monkeypatch.setenv("FERKIT_WEIGHTS", str(tmp_path))
    torch.save(ref, tmp_path / "resnet18_imagenet.pth")
    bb = create_backbone("resnet18", pretrained="imagenet")
    _assert_loaded(bb, ref)


@pytest.mark.parametrize(
    "wrap,prefix", [("state_dict", "module."), ("model", "backbone."), ("none", "module.model."), ("state_dict", "")]
)
def test_path_loading_unwraps_and_strips(tmp_path: Path, wrap: str, prefix: str) -> None:
    ref = _reference_state(seed=1)
    sd = {prefix + k: v for k, v in ref.items()}  # fc.* included: must be dropped
    obj = sd if wrap == "none" else {wrap: sd, "epoch": 3}
    path = tmp_path / "w.pt"
    torch.save(obj, path)
    bb = create_backbone("resnet18", pretrained=str(path))
    _assert_loaded(bb, ref)


def test_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    ref = _reference_state(seed=2)
    save_file({k: v.contiguous() for k, v in ref.items()}, str(tmp_path / "r18.safetensors"))
    bb = create_backbone("resnet18", pretrained=tmp_path / "r18.safetensors")
    _assert_loaded(bb, ref)


def test_grayscale_adaptation_sums_rgb(tmp_path: Path) -> None:
    """A 1-channel backbone from RGB weights responds to a grey image as the RGB model does to its RGB copy."""
    ref = _reference_state(seed=3)
    torch.save(ref, tmp_path / "rgb.pth")
    rgb = create_backbone("resnet18", pretrained=str(tmp_path / "rgb.pth")).eval()
    grey = create_backbone("resnet18", pretrained=str(tmp_path / "rgb.pth"), in_chans=1).eval()
    torch.testing.assert_close(grey.model.conv1.weight, ref["conv1.weight"].sum(1, keepdim=True))
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), rgb(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)


def test_shape_mismatch_lists_keys(tmp_path: Path) -> None:
    ref = _reference_state()
    ref["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(ref, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match=r"(?s)1 shape mismatch.*layer1\.0\.conv1\.weight: file \(64, 64, 1, 1\)"):
        create_backbone("resnet18", pretrained=str(tmp_path / "bad.pth"))


def test_unrelated_file_and_pickled_objects_are_refused(tmp_path: Path) -> None:
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(RuntimeError, match="share no parameter name"):
        create_backbone("resnet18", pretrained=str(tmp_path / "other.pth"))
    torch.save(nn.Linear(2, 2), tmp_path / "pickled.pth")  # a whole module, not a state dict
    with pytest.raises(RuntimeError, match="weights_only=True"):
        create_backbone("resnet18", pretrained=str(tmp_path / "pickled.pth"))


def test_missing_keys_are_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ref = {k: v for k, v in _reference_state().items() if not k.startswith("layer4.")}
    torch.save(ref, tmp_path / "partial.pth")
    model = timm.create_model("resnet18", pretrained=False, num_classes=0, global_pool="")
    with caplog.at_level("WARNING"):
        missing, unexpected = load_pretrained(model, tmp_path / "partial.pth")
    assert missing and all(k.startswith("layer4.") for k in missing) and unexpected == []
    assert "missing" in caplog.text


# -- FERNet -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pool,dim", [("avg", 512), ("max", 512), ("arm", 25)])
def test_fernet_shapes(pool: str, dim: int) -> None:
    net = FERNet(pool=pool, num_classes=7, img_size=64, small_input=True)
    assert net.num_features == dim == net.pool.out_features and net.feat_size == 4
    x = torch.randn(2, 3, 64, 64)
    feats = net.forward_features(x)
    assert feats.shape == (2, dim)
    logits = net(x)
    assert logits.shape == (2, 7)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net.forward_head(net.forward_features(x)), net(x))


def test_fernet_grayscale_small_input_and_pool_kwargs() -> None:
    net = FERNet(pool="arm", in_chans=1, img_size=48, small_input=True, num_classes=8, dropout=0.2,
                 pool_kwargs={"affinity": "batch"})
    assert net.feat_size == 3 and net.pool.affinity == "batch" and net.head.out_features == 8
    assert net(torch.randn(2, 1, 48, 48)).shape == (2, 8)
    net.reset_classifier(3)
    assert net(torch.randn(2, 1, 48, 48)).shape == (2, 3)


def test_fernet_arm_eval_is_batch_independent() -> None:
    torch.manual_seed(0)
    net = FERNet(pool="arm", img_size=64, in_chans=1, small_input=True)
    net.train()
    net(torch.randn(4, 1, 64, 64))  # initialises g_ema
    net.eval()
    img, others = torch.randn(1, 1, 64, 64), torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(torch.cat([others, img]))[-1:], net(img), rtol=1e-4, atol=1e-5)


def test_fernet_wrong_image_size_is_caught_by_arm() -> None:
    net = FERNet(pool="arm", img_size=64, small_input=True)
    with pytest.raises(ValueError, match="feat_size=backbone.feature_size"):
        net(torch.randn(1, 3, 96, 96))


def test_multichannel_adaptation_repeats_and_scales(tmp_path: Path) -> None:
    """RGB weights into a 4-channel stem: channels repeated (R, G, B, R) and scaled by 3/4 (timm's rule)."""
    ref = _reference_state(seed=4)
    torch.save(ref, tmp_path / "rgb.pth")
    four = create_backbone("resnet18", pretrained=str(tmp_path / "rgb.pth"), in_chans=4)
    w = ref["conv1.weight"]
    torch.testing.assert_close(four.model.conv1.weight, torch.cat([w, w[:, :1]], 1) * 0.75)


def test_output_stride_enlarges_the_map_for_arm() -> None:
    """ARM needs about a 6x6 map: 48 px with the stem max-pool removed and output stride 16 gives it (3x3 without)."""
    from ferkit.models import FERNetConfig

    plain = FERNet(pool="avg", in_chans=1, img_size=48, small_input=True, num_classes=8)
    dilated = FERNet(pool="avg", in_chans=1, img_size=48, small_input=True, output_stride=16, num_classes=8)
    assert (plain.feat_size, dilated.feat_size) == (3, 6)
    assert FERNet(pool="avg", in_chans=1, img_size=48, output_stride=8, num_classes=8).feat_size == 6
    # the same weights (dilation changes strides, not parameters): a checkpoint's shapes carry over
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in dilated.state_dict().items()}
    arm = FERNet(pool="arm", in_chans=1, img_size=48, small_input=True, output_stride=16, num_classes=8)
    assert arm.num_features >= 64 and arm(torch.randn(2, 1, 48, 48)).shape == (2, 8)
    assert FERNetConfig.coerce({"backbone": "resnet18"}).output_stride is None  # checkpoints from before the field
    with pytest.raises(ValueError, match="must be 8, 16, 32"):
        FERNet(in_chans=1, img_size=48, output_stride=12)
    with pytest.raises(ValueError, match="does not take an output stride"):
        FERNet(FERNetConfig(backbone="vit_tiny_patch16_224", output_stride=16), img_size=224)
