"""The pool registry: entries, shapes, errors, registration."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ferkit.layers import ARM, POOLS, available_pools, create_pool, register_pool
from ferkit.layers.pools import GlobalAvgPool, GlobalMaxPool


def test_builtin_entries() -> None:
    assert {"avg", "max", "arm"} <= set(available_pools())
    assert available_pools() == sorted(available_pools())
    assert POOLS["arm"] is ARM


@pytest.mark.parametrize("name,cls,reduce", [("avg", GlobalAvgPool, torch.mean), ("max", GlobalMaxPool, torch.amax)])
def test_global_pools(name: str, cls: type, reduce) -> None:
    pool = create_pool(name, in_channels=64, feat_size=5)
    assert isinstance(pool, cls) and pool.out_features == 64
    x = torch.randn(3, 64, 5, 5)
    torch.testing.assert_close(pool(x), reduce(x, dim=(2, 3)))
    assert pool(torch.randn(2, 64, 3, 7)).shape == (2, 64)  # any spatial size
    with pytest.raises(ValueError, match="B x 64 x H x W"):
        pool(torch.randn(2, 32, 5, 5))


def test_arm_entry_with_kwargs() -> None:
    pool = create_pool("ARM", in_channels=512, feat_size=7, affinity="batch")
    assert pool.out_features == 121 and pool.affinity == "batch"
    assert pool(torch.randn(2, 512, 7, 7)).shape == (2, 121)


def test_unknown_pool_lists_available() -> None:
    with pytest.raises(ValueError, match=r"unknown pool 'gem'; available pools: .*arm.*avg.*max"):
        create_pool("gem", in_channels=8, feat_size=2)


def test_bad_kwargs_name_the_pool() -> None:
    with pytest.raises(TypeError, match="pool 'avg': bad arguments"):
        create_pool("avg", in_channels=8, feat_size=2, shuffle=4)


def test_register_custom_pool_and_duplicates() -> None:
    @register_pool("test_first_pixel")
    class FirstPixel(nn.Module):
        def __init__(self, in_channels: int, feat_size: int | None = None) -> None:
            super().__init__()
            self.out_features = in_channels

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :, 0, 0]

    try:
        pool = create_pool("test_first_pixel", in_channels=4, feat_size=3)
        x = torch.randn(2, 4, 3, 3)
        assert torch.equal(pool(x), x[:, :, 0, 0])
        with pytest.raises(ValueError, match="already registered"):
            register_pool("test_first_pixel")(GlobalAvgPool)

        @register_pool("test_no_out_features")
        def bad(in_channels: int, feat_size: int | None = None) -> nn.Module:
            return nn.Identity()

        with pytest.raises(TypeError, match="no out_features"):
            create_pool("test_no_out_features", in_channels=4, feat_size=3)
    finally:
        POOLS.pop("test_first_pixel", None)
        POOLS.pop("test_no_out_features", None)
