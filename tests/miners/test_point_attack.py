"""PointAttackLocator on a toy task whose label is decided by a bright patch at a random position."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ferkit.data.erasing import InformativeRegionEraser
from ferkit.miners.point_attack import PointAttackLocator

SIZE, PATCH = 24, 6


def toy_batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise images; label 1 carries a bright PATCH x PATCH square at a random place, label 0 none.
    Returns images [n, 1, SIZE, SIZE], labels [n] and the patches' top-left corners [n, 2] (x, y)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(n, 1, SIZE, SIZE, generator=g)
    y = torch.arange(n) % 2
    corner = torch.randint(0, SIZE - PATCH + 1, (n, 2), generator=g)
    for i in torch.nonzero(y).flatten().tolist():  # test data construction only
        cx, cy = corner[i].tolist()
        x[i, 0, cy:cy + PATCH, cx:cx + PATCH] += 2.0
    return x, y, corner


def tiny_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 2))


@pytest.fixture(scope="module")
def teacher() -> nn.Module:
    torch.manual_seed(0)
    net = tiny_cnn()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for step in range(150):
        x, y, _ = toy_batch(64, seed=step)
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    x, y, _ = toy_batch(256, seed=10_000)
    with torch.no_grad():
        assert (net(x).argmax(1) == y).float().mean() > 0.97  # the toy task is learnt
    net.zero_grad(set_to_none=True)
    return net.eval()


def _inside(centres: torch.Tensor, corner: torch.Tensor) -> torch.Tensor:
    return ((centres >= corner) & (centres < corner + PATCH)).all(1)


@pytest.mark.parametrize("attack", ["l0_greedy", "sparse_pgd", "saliency"])
def test_centre_lands_on_the_patch(teacher, attack) -> None:
    x, y, corner = toy_batch(128, seed=20_000)
    pos = y == 1
    params = [p.detach().clone() for p in teacher.parameters()]
    locator = PointAttackLocator(teacher, attack=attack, max_points=16, points_per_step=2, window=PATCH, stride=1)
    centres = locator.locate(x[pos], y[pos])
    assert centres.shape == (int(pos.sum()), 2) and centres.dtype == torch.long
    hit = _inside(centres, corner[pos]).float().mean()
    assert hit >= 0.9, f"{attack}: only {hit:.0%} of the centres lie in the patch"
    assert all(torch.equal(a, b) for a, b in zip(params, teacher.parameters()))  # the teacher is untouched
    assert all(p.grad is None for p in teacher.parameters())


def test_greedy_attack_flips_the_teacher_with_few_points(teacher) -> None:
    x, y, _ = toy_batch(64, seed=30_000)
    locator = PointAttackLocator(teacher, max_points=200, points_per_step=4, window=PATCH, stride=1)
    perturbed, _ = locator.perturbation_map(x, y)
    counts = perturbed.flatten(1).sum(1)
    assert counts.max() <= 200 and counts.min() >= 1
    assert counts.float().mean() < 0.25 * SIZE * SIZE  # sparse: most images flip long before the budget


def test_sparse_pgd_stays_within_its_pixel_budget(teacher) -> None:
    x, y, _ = toy_batch(64, seed=31_000)
    locator = PointAttackLocator(teacher, attack="sparse_pgd", max_points=24, points_per_step=2, window=PATCH, stride=1)
    perturbed, _ = locator.perturbation_map(x, y)
    counts = perturbed.flatten(1).sum(1)
    assert counts.max() <= 24 and counts.min() >= 1
    with pytest.raises(ValueError, match="step_size"):
        PointAttackLocator(teacher, attack="sparse_pgd", step_size=0.0)


def test_erasing_at_the_centre_flips_more_than_random(teacher) -> None:
    import numpy as np

    x, y, _ = toy_batch(256, seed=40_000)
    pos = y == 1
    x, y = x[pos], y[pos]
    centres = PointAttackLocator(teacher, max_points=16, points_per_step=2, window=PATCH, stride=1).locate(x, y)
    eraser = InformativeRegionEraser(area=(0.08, 0.08), aspect=(1.0, 1.0), fill=0.0, p=1.0)
    control = InformativeRegionEraser(area=(0.08, 0.08), aspect=(1.0, 1.0), fill=0.0, p=1.0, random_centres=True)
    rng, rng2 = np.random.default_rng(0), np.random.default_rng(0)
    at_centre = torch.stack([eraser.erase(img, c.tolist(), rng) for img, c in zip(x, centres)])
    at_random = torch.stack([control.erase(img, None, rng2) for img in x])
    with torch.no_grad():
        flipped = (teacher(at_centre).argmax(1) != y).float().mean()
        flipped_random = (teacher(at_random).argmax(1) != y).float().mean()
    assert flipped >= 0.8 and flipped >= flipped_random + 0.5, (flipped, flipped_random)


def test_density_rule_and_bad_input() -> None:
    loc = PointAttackLocator(nn.Identity(), window=4, stride=1)
    p = torch.zeros(2, 16, 16, dtype=torch.bool)
    p[0, 10:13, 2:5] = True   # a dense cluster at x 2..4, y 10..12
    p[0, 0, 15] = True        # and a stray point
    p[1, 1:3, 12:14] = True
    c = loc.density_centres(p)
    assert (c[0, 0] - 3).abs() <= 1 and (c[0, 1] - 11).abs() <= 1
    assert (c[1, 0] - 12.5).abs() <= 1.5 and (c[1, 1] - 1.5).abs() <= 1.5
    with pytest.raises(ValueError, match="attack must be one of"):
        PointAttackLocator(nn.Identity(), attack="pgd")
    with pytest.raises(ValueError, match="labels must be"):
        loc.locate(torch.zeros(2, 1, 8, 8), torch.zeros(3, dtype=torch.long))
