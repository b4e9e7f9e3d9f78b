"""Typed sampler choices for :class:`~ferkit.data.datamodule.FERDataModule` (``data.sampler`` in a config).

A sampler needs the training labels, which a config cannot know, so the config names a small factory that the
data module calls with the labels once the training set exists::

    data:
      sampler: {class_path: ferkit.data.MRRSampling, init_args: {per_class_cap: 2000}}

``sampler: null`` (the default) shuffles. Every sampler built here is DDP-correct (see :mod:`ferkit.data.samplers`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ferkit.data.progressive_sampler import ProgressivelyBalancedSampler
from ferkit.data.samplers import ClassBalancedSampler, GlobalListSampler, MinimalRandomResamplingSampler

__all__ = ["BalancedSampling", "MRRSampling", "ProgressiveSampling", "SamplerFactory"]


class SamplerFactory:
    """Builds the training sampler from the training labels. Subclass and implement :meth:`build`."""

    def build(self, labels: np.ndarray, seed: int, max_epochs: int | None) -> GlobalListSampler:
        """``labels``: class id per training sample; ``seed``: the data module's seed; ``max_epochs``: the trainer's
        (None outside a trainer)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class BalancedSampling(SamplerFactory):
    """Inverse-class-frequency sampling (:class:`~ferkit.data.samplers.ClassBalancedSampler`)."""

    def __init__(self, num_samples: int | None = None, replacement: bool = True) -> None:
        self.num_samples, self.replacement = num_samples, replacement

    def build(self, labels, seed, max_epochs=None) -> GlobalListSampler:
        return ClassBalancedSampler(labels, num_samples=self.num_samples, replacement=self.replacement, seed=seed)


class MRRSampling(SamplerFactory):
    """ARM's minimal random resampling (:class:`~ferkit.data.samplers.MinimalRandomResamplingSampler`)."""

    def __init__(self, class_probs: str | Sequence[float] = "inverse_freq", per_class_cap: int | None = None,
                 num_samples: int | None = None) -> None:
        self.class_probs, self.per_class_cap, self.num_samples = class_probs, per_class_cap, num_samples

    def build(self, labels, seed, max_epochs=None) -> GlobalListSampler:
        return MinimalRandomResamplingSampler(labels, class_probs=self.class_probs, per_class_cap=self.per_class_cap,
                                              num_samples=self.num_samples, seed=seed)


class ProgressiveSampling(SamplerFactory):
    """LA-Net's progressively class-balanced sampling over the trainer's epochs
    (:class:`~ferkit.data.progressive_sampler.ProgressivelyBalancedSampler`).

    Args:
        max_epochs: the schedule's length; default: the trainer's ``max_epochs``.
    """

    def __init__(self, max_epochs: int | None = None) -> None:
        self.max_epochs = max_epochs

    def build(self, labels, seed, max_epochs=None) -> GlobalListSampler:
        epochs = self.max_epochs or max_epochs
        if not epochs or epochs < 0:
            raise ValueError("ProgressiveSampling needs a finite number of epochs: run it under a trainer with "
                             "max_epochs set, or pass ProgressiveSampling(max_epochs=...)")
        return ProgressivelyBalancedSampler(labels, max_epochs=epochs, seed=seed)
