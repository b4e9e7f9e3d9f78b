"""The loss protocol (every loss returns a LossOutput) and the input checks at each loss's boundary."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from ferkit.losses import (
    AdaptiveWingLoss,
    ExpressionLandmarkContrastiveLoss,
    LabelDistributionEstimator,
    LDEOutput,
    LossOutput,
    TriRegularization,
    TriRegularizationOutput,
)
from ferkit.miners import SampleSplit
from ferkit.state import LabelDistributionBank


def _bank(n: int = 4, c: int = 3) -> LabelDistributionBank:
    bank = LabelDistributionBank(n, c)
    bank.init_from_labels(torch.arange(n) % c)
    return bank


def _unit(n: int, d: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d), dim=1)


def _every_loss() -> list[tuple[str, LossOutput]]:
    torch.manual_seed(0)
    z = torch.randn(4, 3)
    split = SampleSplit(torch.tensor([0, 1, 2, -1], dtype=torch.int8))
    tri = TriRegularization()(z, z.flip(0), z[2:3], z[1:2], torch.tensor([0, 1, 2, 0]), split, epoch=2, max_epochs=10)
    awing = AdaptiveWingLoss()(torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4))
    el = ExpressionLandmarkContrastiveLoss(dim=4, queue_size=8)(_unit(4, 4), _unit(4, 4), _unit(4, 4), _unit(4, 4),
                                                                labels=torch.tensor([0, 0, 1, 1]))
    lde = LabelDistributionEstimator(8, 4, k=2)(torch.randn(4, 8), torch.randn(4, 4), z, torch.arange(4), _bank())
    return [("tri", tri), ("awing", awing), ("el", el), ("lde", lde)]


def test_every_loss_returns_a_loss_output_with_named_detached_terms() -> None:
    expected_terms = {"tri": {"clean", "ambiguous", "noisy"}, "awing": {"adaptive_wing"},
                      "el": {"expr_to_lmk", "lmk_to_expr"}, "lde": {"kl"}}
    for name, out in _every_loss():
        assert isinstance(out, LossOutput), name
        assert out.total.ndim == 0 and torch.isfinite(out.total), name
        assert set(out.terms) == expected_terms[name], name
        assert all(not v.requires_grad for v in out.terms.values()), name
        assert set(out.log_dict("train/")) == {f"train/{k}" for k in expected_terms[name]}


def test_terms_add_up_to_the_total() -> None:
    outs = dict(_every_loss())
    el = outs["el"]
    torch.testing.assert_close(el.total.detach(), el.terms["expr_to_lmk"] + el.terms["lmk_to_expr"])
    torch.testing.assert_close(outs["awing"].total, outs["awing"].terms["adaptive_wing"])
    tri = outs["tri"]
    assert isinstance(tri, TriRegularizationOutput)
    torch.testing.assert_close(tri.total.detach(), tri.clean + 0.6 * tri.ambiguous + 1.0 * tri.noisy)
    lde = outs["lde"]
    assert isinstance(lde, LDEOutput) and lde.target.shape == (4, 3) and lde.aggregated.shape == (4, 3)
    torch.testing.assert_close(lde.total.detach(), lde.terms["kl"])


def test_lde_output_keeps_the_old_name_as_a_deprecated_alias() -> None:
    lde = dict(_every_loss())["lde"]
    with pytest.warns(DeprecationWarning, match="total"):
        assert lde.loss is lde.total


def test_loss_output_total_must_be_a_scalar() -> None:
    with pytest.raises(ValueError, match="scalar"):
        LossOutput(torch.zeros(3))


# -- input checks -----------------------------------------------------------------------------------------------
def test_tri_regularization_input_checks() -> None:
    tri = TriRegularization()
    z = torch.randn(3, 4)
    split = SampleSplit.all_clean(3)
    with pytest.raises(ValueError, match=r"labels must lie in 0..3 \(the logits have 4 classes\), got 0..4"):
        tri(z, z, None, None, torch.tensor([0, 1, 4]), split, epoch=1, max_epochs=2)
    with pytest.raises(TypeError, match="must be a SampleSplit"):
        tri(z, z, None, None, torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.int8), epoch=1, max_epochs=2)
    with pytest.raises(TypeError, match="integer class ids"):
        tri(z, z, None, None, torch.tensor([0.0, 1.0, 2.0]), split, epoch=1, max_epochs=2)
    noisy = SampleSplit(torch.tensor([2, 0, 0], dtype=torch.int8))
    with pytest.raises(ValueError, match=r"z1_s and z2_s must both be \[n, 4\]"):
        tri(z, z, torch.randn(1, 3), torch.randn(1, 3), torch.tensor([0, 1, 2]), noisy, epoch=1, max_epochs=2)


def test_adaptive_wing_input_checks() -> None:
    with pytest.raises(ValueError, match=r"target heatmaps must lie in \[0, 1\]"):
        AdaptiveWingLoss()(torch.rand(1, 2, 4, 4), torch.rand(1, 2, 4, 4) * 255)  # 0..255 image-style heatmaps
    with pytest.raises(ValueError, match="does not broadcast"):
        AdaptiveWingLoss()(torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4), torch.ones(2, 5, 1, 1))
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        AdaptiveWingLoss(reduction="none")


def test_el_loss_input_checks() -> None:
    el = ExpressionLandmarkContrastiveLoss(dim=4, queue_size=8)
    q = _unit(3, 4)
    with pytest.raises(ValueError, match=r"q_lmk must be \[B, 4\] \(the loss was built with dim=4\), got \(3, 5\)"):
        el(q, _unit(3, 5), q, q, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="batch sizes differ: q_expr 3, q_lmk 3, k_expr 2"):
        el(q, q, q[:2], q, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="labels 2"):
        el(q, q, q, q, labels=torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="integer ids"):
        el(q, q, q, q, labels=torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="target 2"):
        el(q, q, q, q, target=torch.rand(2, 3), index=torch.arange(3))


def test_lde_input_checks() -> None:
    lde = LabelDistributionEstimator(8, 4, k=2)
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"h_lmk must be \[B, 4\] \(the estimator was built for 4 features\)"):
        lde(torch.randn(4, 8), torch.randn(4, 6), z, torch.arange(4), _bank())
    with pytest.raises(TypeError, match="integer dataset indices"):
        lde(torch.randn(4, 8), torch.randn(4, 4), z, torch.arange(4).float(), _bank())
    with pytest.raises(IndexError, match="outside 0..3"):
        lde(torch.randn(4, 8), torch.randn(4, 4), z, torch.arange(4) + 2, _bank())
    with pytest.raises(ValueError, match="batch sizes differ"):
        lde(torch.randn(4, 8), torch.randn(4, 4), z, torch.arange(3), _bank())
    with pytest.raises(ValueError, match="bank holds 3 classes but the logits have 5"):
        lde(torch.randn(4, 8), torch.randn(4, 4), torch.randn(4, 5), torch.arange(4), _bank())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lde(torch.randn(4, 8), torch.randn(4, 4), z, torch.arange(4), _bank())  # valid input: no warning either


def test_using_a_loss_output_as_a_tensor_names_the_fix() -> None:
    out = dict(_every_loss())["el"]
    for use in (lambda: torch.tensor(1.0) + out, lambda: 0.5 * out, lambda: out.backward(), lambda: float(out),
                lambda: out.item()):
        with pytest.raises(TypeError, match=r"use \.total"):
            use()
