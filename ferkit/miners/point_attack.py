"""Point adversarial locator: where in each image the teacher's decision depends on a few pixels most.

PASM (Liu et al., *Point Adversarial Self Mining*, IEEE TCYB 2022, arXiv 2008.11401) finds, for every training
image, an informative position with a trained teacher and a sparse (point-wise) adversarial attack; erasing a
region there gives a harder training sample. This module implements that locator in plain torch:

* ``attack="l0_greedy"`` (default): a greedy point-wise L0 attack. At each round, the gradient of the teacher's
  cross-entropy on the given label ranks the pixels that are not yet perturbed by saliency
  ``sum_c grad_c * (target_c - x_c)``, where ``target`` is the extreme (the image's per-channel min or max) that
  the gradient's sign points at: the loss increase, to first order, of pushing the pixel there. The
  ``points_per_step`` best pixels are set to that extreme. Rounds stop for an image once the teacher's prediction
  flips away from the label (every image gets at least one round), and for all at ``max_points``; later rounds
  differentiate only the images still attacked, so the cost follows the rounds actually used.
* ``attack="sparse_pgd"``: projected gradient ascent on the teacher's cross-entropy over an additive perturbation
  that may touch at most ``max_points`` pixels. Each of the ``ceil(max_points / points_per_step)`` steps (the
  greedy attack's worst-case number of gradients) moves the perturbation by ``step_size`` times the image's value
  range along the gradient's sign, clips the perturbed image to that range, and projects onto the sparse set: the
  ``max_points`` pixels with the largest perturbation (L2 over channels) keep theirs, the others are reset. Unlike
  the greedy attack a pixel can leave the set again, so the map reflects the perturbation the attack converged to.
  An image stops being attacked once its prediction flips; its map is the support at that step.
* ``attack="saliency"``: one backward pass; the ``max_points`` most salient pixels, without the iterative attack.
  Cheaper (one gradient instead of up to ``max_points / points_per_step``), but it does not look at whether
  the decision actually flips.

The binary map of perturbed pixels is then box-filtered with a ``window`` (stride ``stride``) and the centre of the
densest window is the informative position (the density rule). Ties between windows are broken by the summed
saliency inside them, so an image with few perturbed pixels still gets a sensible centre.

Everything is vectorised over the batch (the loop runs over attack rounds only). The teacher is put in eval mode
for the call and receives no gradient: only the input is differentiated.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PointAttackLocator", "ATTACKS"]

ATTACKS: tuple[str, ...] = ("l0_greedy", "sparse_pgd", "saliency")


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class PointAttackLocator:
    """Locate the most attack-sensitive position of each image for a frozen ``teacher``.

    Args:
        teacher: any module mapping images ``[B, C, H, W]`` to logits ``[B, K]``.
        attack: ``"l0_greedy"`` (iterative point-wise L0 attack), ``"sparse_pgd"`` (PGD projected onto
            ``max_points`` pixels) or ``"saliency"`` (one gradient, top pixels).
        max_points: the attack's pixel budget per image.
        points_per_step: pixels perturbed per round of the greedy attack (more is faster and coarser).
        window: side(s) of the box filter of the density rule, in input pixels (clipped to the image).
        stride: the box filter's stride (1 looks at every position).
        step_size: ``sparse_pgd`` only: each step's move per pixel, as a fraction of the image's value range.
        bounds: ``(low, high)`` values a perturbed pixel is pushed to; default: each image's per-channel min and max
            (its own value range, in whatever normalisation the teacher was trained with).

    ``locate(x, y) -> LongTensor [B, 2]``: ``(x, y)`` pixel centres in the input's coordinates;
    ``perturbation_map(x, y) -> (bool [B, H, W], saliency [B, H, W])``.
    """

    def __init__(self, teacher: nn.Module, attack: Literal["l0_greedy", "sparse_pgd", "saliency"] = "l0_greedy",
                 max_points: int = 64, points_per_step: int = 4, window: int | tuple[int, int] = 32, stride: int = 8,
                 bounds: tuple[float, float] | None = None, step_size: float = 0.25) -> None:
        if attack not in ATTACKS:
            raise ValueError(f"PointAttackLocator: attack must be one of {ATTACKS}, got {attack!r}")
        if max_points < 1 or points_per_step < 1 or stride < 1:
            raise ValueError(f"PointAttackLocator: max_points ({max_points}), points_per_step ({points_per_step}) and "
                             f"stride ({stride}) must be >= 1")
        if not 0.0 < step_size <= 1.0:
            raise ValueError(f"PointAttackLocator: step_size is a fraction of the value range in (0, 1], got {step_size}")
        self.teacher, self.attack = teacher, attack
        self.max_points, self.points_per_step = int(max_points), int(points_per_step)
        self.window, self.stride, self.bounds = _pair(window), int(stride), bounds
        self.step_size = float(step_size)

    def __repr__(self) -> str:
        return (f"PointAttackLocator(attack={self.attack!r}, max_points={self.max_points}, "
                f"points_per_step={self.points_per_step}, window={self.window}, stride={self.stride})")

    # -- the attack --------------------------------------------------------------------------------------
    def _extremes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.bounds is not None:
            lo, hi = (torch.full((1, x.shape[1], 1, 1), float(b), dtype=x.dtype, device=x.device) for b in self.bounds)
            return lo, hi
        # per image: a centre never depends on which other images share the batch
        return x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)

    def _gradient(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, d CE / d x) with the teacher's parameters untouched."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            logits = self.teacher(xg)
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, xg)
        return logits.detach(), grad

    @staticmethod
    def _saliency(x: torch.Tensor, grad: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per pixel: the first-order loss increase of pushing it to the extreme its gradient points at, and that
        extreme image."""
        target = torch.where(grad > 0, hi.expand_as(x), lo.expand_as(x))
        return (grad * (target - x)).clamp_min(0).sum(1), target

    def _check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(f"PointAttackLocator: images must be [B, C, H, W], got {tuple(x.shape)}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"PointAttackLocator: labels must be [B] = [{x.shape[0]}], got {tuple(y.shape)}")

    def perturbation_map(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The attack's perturbed-pixel map (bool ``[B, H, W]``) and the first round's saliency (``[B, H, W]``)."""
        self._check(x, y)
        was_training = self.teacher.training
        self.teacher.eval()
        try:
            return self._attack(x.detach(), y.long())
        finally:
            self.teacher.train(was_training)

    def _attack(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        lo, hi = self._extremes(x)
        budget = min(self.max_points, h * w)
        _, grad = self._gradient(x, y)
        sal0, target = self._saliency(x, grad, lo, hi)
        if self.attack == "saliency":
            top = sal0.flatten(1).topk(budget, dim=1).indices
            perturbed = torch.zeros(b, h * w, dtype=torch.bool, device=x.device).scatter_(1, top, True)
            return perturbed.view(b, h, w), sal0
        if self.attack == "sparse_pgd":
            return self._sparse_pgd(x, y, grad, lo, hi, budget), sal0
        perturbed = torch.zeros(b, h * w, dtype=torch.bool, device=x.device)
        x_adv = x.clone()
        idx = torch.arange(b, device=x.device)  # images whose prediction has not flipped yet
        sal = sal0
        used = 0
        while True:
            # perturb the k most salient pixels not yet perturbed, of the images still attacked
            k = min(self.points_per_step, budget - used)
            score = sal.flatten(1).masked_fill(perturbed[idx], -1.0)
            pick = torch.zeros(idx.numel(), h * w, dtype=torch.bool, device=x.device)
            pick.scatter_(1, score.topk(k, dim=1).indices, True)
            perturbed[idx] |= pick
            x_adv[idx] = torch.where(pick.view(-1, 1, h, w), target, x_adv[idx])
            used += k
            if used >= budget:
                break
            # the next round's gradient only for the images whose prediction still holds (cost ~ rounds actually used)
            logits, grad = self._gradient(x_adv[idx], y[idx])
            holds = logits.argmax(1) == y[idx]
            idx, grad = idx[holds], grad[holds]
            if idx.numel() == 0:
                break
            lo_i, hi_i = (lo, hi) if lo.shape[0] == 1 else (lo[idx], hi[idx])
            sal, target = self._saliency(x_adv[idx], grad, lo_i, hi_i)
        return perturbed.view(b, h, w), sal0

    def _sparse_pgd(self, x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                    budget: int) -> torch.Tensor:
        """PGD on an additive perturbation, projected each step onto ``budget`` pixels and the value range."""
        b, c, h, w = x.shape
        lo, hi = lo.expand(b, c, 1, 1), hi.expand(b, c, 1, 1)
        step = self.step_size * (hi - lo)  # [B, C, 1, 1]
        delta = torch.zeros_like(x)
        support = torch.zeros(b, h * w, dtype=torch.bool, device=x.device)
        idx = torch.arange(b, device=x.device)  # images whose prediction has not flipped yet
        for _ in range(-(-budget // self.points_per_step)):
            d = delta[idx] + step[idx] * grad.sign()
            d = torch.minimum(torch.maximum(x[idx] + d, lo[idx]), hi[idx]) - x[idx]  # stay inside the value range
            # the L0 projection: the budget pixels with the largest perturbation keep it
            keep = torch.zeros(idx.numel(), h * w, dtype=torch.bool, device=x.device)
            keep.scatter_(1, d.pow(2).sum(1).flatten(1).topk(budget, dim=1).indices, True)
            keep &= d.flatten(2).abs().amax(1) > 0
            delta[idx] = d * keep.view(-1, 1, h, w)
            support[idx] = keep
            logits, grad = self._gradient(x[idx] + delta[idx], y[idx])
            holds = logits.argmax(1) == y[idx]
            idx, grad = idx[holds], grad[holds]
            if idx.numel() == 0:
                break
        return support.view(b, h, w)

    # -- the density rule --------------------------------------------------------------------------------
    def density_centres(self, perturbed: torch.Tensor, saliency: torch.Tensor | None = None) -> torch.Tensor:
        """Centre ``(x, y)`` of the ``window`` with most perturbed pixels (ties: most saliency), ``[B, 2]`` long."""
        b, h, w = perturbed.shape
        wh, ww = min(self.window[0], h), min(self.window[1], w)
        density = perturbed.float()
        if saliency is not None:
            s = saliency.float()
            density = density + 1e-3 * s / s.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
        boxes = F.avg_pool2d(density[:, None], (wh, ww), stride=self.stride)[:, 0]  # [B, H', W']
        best = boxes.flatten(1).argmax(1)
        row, col = best // boxes.shape[2], best % boxes.shape[2]
        cx = col * self.stride + (ww - 1) // 2
        cy = row * self.stride + (wh - 1) // 2
        return torch.stack([cx, cy], dim=1).long()

    def locate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(x, y)`` centres ``[B, 2]`` (long, input pixel coordinates) of each image's informative region."""
        perturbed, sal = self.perturbation_map(x, y)
        return self.density_centres(perturbed, sal)

    __call__ = locate
