"""PrototypeMiner: confident samples of an unlabelled pool, chosen by feature-wise similarity to class prototypes.

The mining step of Omni-supervised FER (Liu et al., "Omni-supervised Facial Expression Recognition via Distilled
Data", arXiv 2005.08551): a primitive model trained on the small labelled set embeds the labelled images; each
class's prototype is the mean of its L2-normalised penultimate features. A pool sample ``x`` with normalised feature
``f`` gets the pseudo-label ``k* = argmax_k cos(f, mu_k)`` and is kept when

* ``cos(f, mu_k*) >= tau_sim[k*]``          (similar enough to its class prototype; one threshold per class),
* ``max softmax(z) >= tau_conf``             (the primitive classifier is confident too, when its probabilities are given),
* ``cos(f, mu_k*) - cos(f, mu_k2) >= margin`` (clearly closer to its class than to the runner-up class).

The paper gives the rule at the level of "high-confidence samples by feature-wise similarity"; the three
thresholds and their defaults are ferkit's tunable reading of it.

Why not a :class:`ferkit.miners.BaseMiner`: those miners judge *labelled* samples (clean / ambiguous / noisy with
respect to a given label) and return a :class:`SampleSplit` over the training set. This miner has no labels to
judge: it assigns labels to a pool that can be millions of samples, so it returns a :class:`MinedSet` (indices,
pseudo-labels, scores) of the kept samples only.

Pure torch. Selection reads the pool in chunks (a tensor, a NumPy array or memory map, or any callable
``chunk(start, stop)``), so an on-disk pool of any size is mined with bounded memory. Similarities are computed in
float64 row by row, so the result does not depend on the chunk size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PrototypeMiner", "MinedSet"]


@dataclass
class MinedSet:
    """The kept samples of a pool, ordered by pool index.

    Attributes:
        indices: int64 [M], positions in the pool. pseudo_labels: int64 [M].
        similarity: float32 [M], cosine to the pseudo-label's prototype. confidence: float32 [M], the primitive
            model's max softmax probability (NaN when no probabilities were given). margin: float32 [M], top-1 minus
            top-2 prototype cosine.
    """

    indices: torch.Tensor
    pseudo_labels: torch.Tensor
    similarity: torch.Tensor
    confidence: torch.Tensor
    margin: torch.Tensor

    def __len__(self) -> int:
        return int(self.indices.numel())

    def per_class_counts(self, num_classes: int) -> torch.Tensor:
        return torch.bincount(self.pseudo_labels, minlength=num_classes)

    def __repr__(self) -> str:
        return f"MinedSet({len(self)} samples)"


def _as_chunk_reader(pool: Any) -> tuple[int, Callable[[int, int], torch.Tensor]]:
    """(length, read(start, stop) -> float tensor) for a tensor, a NumPy array / memmap, or an object with
    ``__len__`` and ``read(start, stop)``."""
    if pool is None:
        raise ValueError("pool is None")
    if isinstance(pool, torch.Tensor):
        return pool.shape[0], lambda a, b: pool[a:b]
    if isinstance(pool, np.ndarray):
        return pool.shape[0], lambda a, b: torch.from_numpy(np.asarray(pool[a:b]))
    if hasattr(pool, "read") and hasattr(pool, "__len__"):
        return len(pool), pool.read
    raise TypeError(f"cannot read a pool of type {type(pool).__name__}: pass a tensor, a NumPy array / memmap, or "
                    "an object with __len__ and read(start, stop)")


class PrototypeMiner(nn.Module):
    """Class prototypes from labelled features; confident pseudo-labelled samples from a pool.

    Args:
        num_classes: C.
        tau_sim: the cosine a sample needs to its class prototype; a float (every class) or a list of C floats.
        tau_conf: the primitive model's max softmax probability a sample needs (ignored when ``mine`` gets no
            probabilities). 0 disables it.
        margin: the top-1 minus top-2 prototype cosine a sample needs. 0 disables it.
        max_per_class: keep at most this many samples per class (the most similar ones); None keeps all.
        chunk_size: pool rows read at a time.

    State (registered buffers, so ``state_dict`` saves a fitted miner): ``prototypes`` [C, D] (unit rows),
    ``class_counts`` [C], ``tau_sim`` [C].
    """

    def __init__(self, num_classes: int, tau_sim: float | Sequence[float] = 0.8, tau_conf: float = 0.9,
                 margin: float = 0.1, max_per_class: int | None = None, chunk_size: int = 65536) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"PrototypeMiner: num_classes must be >= 2, got {num_classes}")
        taus = torch.as_tensor(tau_sim, dtype=torch.float64).flatten()
        if taus.numel() == 1:
            taus = taus.expand(num_classes).clone()
        if taus.numel() != num_classes:
            raise ValueError(f"PrototypeMiner: tau_sim has {taus.numel()} values for {num_classes} classes; give one "
                             "float or one per class")
        if not ((taus >= -1) & (taus <= 1)).all():
            raise ValueError(f"PrototypeMiner: tau_sim is a cosine and must lie in [-1, 1], got {taus.tolist()}")
        if not 0.0 <= tau_conf <= 1.0:
            raise ValueError(f"PrototypeMiner: tau_conf is a probability in [0, 1], got {tau_conf}")
        if margin < 0:
            raise ValueError(f"PrototypeMiner: margin must be >= 0, got {margin}")
        if max_per_class is not None and max_per_class < 1:
            raise ValueError(f"PrototypeMiner: max_per_class must be >= 1 or None, got {max_per_class}")
        if chunk_size < 1:
            raise ValueError(f"PrototypeMiner: chunk_size must be >= 1, got {chunk_size}")
        self.num_classes, self.tau_conf, self.margin = int(num_classes), float(tau_conf), float(margin)
        self.max_per_class, self.chunk_size = max_per_class, int(chunk_size)
        self.register_buffer("tau_sim", taus)
        self.register_buffer("prototypes", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("class_counts", torch.zeros(num_classes, dtype=torch.long))
        self._sums: torch.Tensor | None = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "prototypes"
        if key in state_dict:  # a fitted miner's prototypes have a shape only known after fit
            self.prototypes = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def fitted(self) -> bool:
        return self.prototypes.ndim == 2

    # -- prototypes ------------------------------------------------------------------------------------
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add labelled features ``[B, D]`` with labels ``[B]`` to the running class sums (call ``finalize`` after)."""
        if features.ndim != 2 or labels.shape != features.shape[:1]:
            raise ValueError(f"PrototypeMiner.update: features must be [B, D] and labels [B], got "
                             f"{tuple(features.shape)} and {tuple(labels.shape)}")
        labels = labels.long()
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"PrototypeMiner.update: labels must be in 0..{self.num_classes - 1}, got "
                             f"{int(labels.min())}..{int(labels.max())}")
        if not torch.isfinite(features).all():
            raise ValueError("PrototypeMiner.update: features contain NaN or inf; check the model that embedded them")
        f = F.normalize(features.double(), dim=1)
        if self._sums is None:
            self._sums = torch.zeros(self.num_classes, f.shape[1], dtype=torch.float64, device=f.device)
        elif self._sums.shape[1] != f.shape[1]:
            raise ValueError(f"PrototypeMiner.update: feature size {f.shape[1]} differs from earlier {self._sums.shape[1]}")
        self._sums.index_add_(0, labels, f)
        self.class_counts += torch.bincount(labels, minlength=self.num_classes).to(self.class_counts.device)

    def finalize(self) -> torch.Tensor:
        """Prototypes from what ``update`` saw: the class means of normalised features, renormalised to unit length."""
        if self._sums is None:
            raise RuntimeError("PrototypeMiner: no labelled features seen; call update()/fit() first")
        empty = (self.class_counts == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"PrototypeMiner: classes {empty} have no labelled samples, so they have no prototype; "
                             "give every class at least one labelled image")
        mean = self._sums / self.class_counts[:, None].to(self._sums)
        self.prototypes = F.normalize(mean, dim=1)
        self._sums = None
        return self.prototypes

    def calibrate_tau_sim(self, features: torch.Tensor, labels: torch.Tensor, quantile: float) -> torch.Tensor:
        """Set each class's ``tau_sim`` to the ``quantile`` of its labelled samples' cosine to their own prototype
        (a model trained briefly is far less sure than a converged one, so a fixed cosine keeps almost nothing or
        almost everything); a class with no labelled sample keeps its threshold. Returns the new ``tau_sim``."""
        if not self.fitted:
            raise RuntimeError("PrototypeMiner.calibrate_tau_sim: fit the prototypes first")
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"PrototypeMiner.calibrate_tau_sim: quantile must be in [0, 1], got {quantile}")
        labels = labels.long().to(self.prototypes.device)
        f = F.normalize(features.double().to(self.prototypes.device), dim=1)
        own = (f @ self.prototypes.T).gather(1, labels[:, None]).squeeze(1)
        for k in range(self.num_classes):
            if (labels == k).any():
                self.tau_sim[k] = own[labels == k].quantile(quantile)
        return self.tau_sim.clone()

    def fit(self, features: torch.Tensor | Iterable[tuple[torch.Tensor, torch.Tensor]],
            labels: torch.Tensor | None = None) -> "PrototypeMiner":
        """Prototypes from labelled features: ``fit(features [N, D], labels [N])`` or ``fit(iterable of (f, y))``."""
        self._sums = None
        self.class_counts.zero_()
        if labels is not None:
            self.update(features, labels)  # type: ignore[arg-type]
        else:
            for f, y in features:  # type: ignore[union-attr]
                self.update(f, y)
        self.finalize()
        return self

    # -- mining ----------------------------------------------------------------------------------------
    def score(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pseudo-label, cosine to its prototype, top-1 minus top-2 cosine) of features ``[B, D]``."""
        if not self.fitted:
            raise RuntimeError("PrototypeMiner: fit the prototypes on labelled features before mining")
        if features.ndim != 2 or features.shape[1] != self.prototypes.shape[1]:
            raise ValueError(f"PrototypeMiner: pool features must be [B, {self.prototypes.shape[1]}] (the labelled "
                             f"features' size), got {tuple(features.shape)}")
        f = features.to(self.prototypes)   # float64: exact enough that chunking never changes a decision
        cos = (f @ self.prototypes.T) / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
        top = cos.topk(2, dim=1)
        return top.indices[:, 0], top.values[:, 0], top.values[:, 0] - top.values[:, 1]

    def mine(self, features: Any, probs: Any = None, chunk_size: int | None = None,
             progress: Callable[[int], None] | None = None) -> MinedSet:
        """The kept samples of a pool.

        Args:
            features: pool features ``[N, D]``: a tensor, a NumPy array / ``np.memmap`` (e.g. float16 on disk), or
                an object with ``__len__`` and ``read(start, stop)`` (:class:`ferkit.state.EmbeddingStore` features).
            probs: the primitive model's softmax probabilities ``[N, C]``, same kinds; None skips the
                ``tau_conf`` test (confidence is then NaN).
            chunk_size: rows read at a time (default: the miner's). The result does not depend on it.
            progress: called with the number of rows done after each chunk (e.g. a progress bar's ``update``).
        """
        n, read_f = _as_chunk_reader(features)
        read_p = None
        if probs is not None:
            n_p, read_p = _as_chunk_reader(probs)
            if n_p != n:
                raise ValueError(f"PrototypeMiner.mine: {n} feature rows but {n_p} probability rows")
        step = int(chunk_size or self.chunk_size)
        keep_idx, keep_lab, keep_sim, keep_conf, keep_mar = [], [], [], [], []
        tau = self.tau_sim
        for start in range(0, n, step):
            stop = min(start + step, n)
            f = read_f(start, stop)
            if not torch.isfinite(f).all():
                bad = start + int((~torch.isfinite(f)).any(1).nonzero()[0])
                raise ValueError(f"PrototypeMiner.mine: pool row {bad} has NaN or inf features; re-embed it")
            lab, sim, mar = self.score(f)
            keep = (sim >= tau[lab]) & (mar >= self.margin)
            if read_p is not None:
                p = read_p(start, stop).float()
                if p.shape != (stop - start, self.num_classes):
                    raise ValueError(f"PrototypeMiner.mine: probabilities must be [N, {self.num_classes}], got rows "
                                     f"of {tuple(p.shape[1:])}")
                conf = p.max(1).values
                keep &= conf >= self.tau_conf
            else:
                conf = torch.full((stop - start,), float("nan"))
            rows = keep.nonzero().flatten()
            keep_idx.append(rows + start)
            keep_lab.append(lab[rows])
            keep_sim.append(sim[rows].float())
            keep_conf.append(conf[rows].float())
            keep_mar.append(mar[rows].float())
            if self.max_per_class is not None:  # bound memory: never hold more than max_per_class per class
                merged = self._cap([torch.cat(x) for x in (keep_idx, keep_lab, keep_sim, keep_conf, keep_mar)])
                keep_idx, keep_lab, keep_sim, keep_conf, keep_mar = ([x] for x in merged)
            if progress is not None:
                progress(stop - start)
        out = [torch.cat(x) if x else torch.zeros(0) for x in (keep_idx, keep_lab, keep_sim, keep_conf, keep_mar)]
        if self.max_per_class is not None:
            out = self._cap(out)
        order = out[0].argsort()
        idx, lab, sim, conf, mar = (x[order] for x in out)
        return MinedSet(idx.long(), lab.long(), sim, conf, mar)

    def _cap(self, cols: list[torch.Tensor]) -> list[torch.Tensor]:
        """At most ``max_per_class`` rows per pseudo-label: the most similar, ties broken by the lower pool index."""
        idx, lab, sim = cols[0], cols[1], cols[2]
        # sort by (class, -similarity, index): stable sorts from the last key to the first
        order = idx.argsort(stable=True)
        order = order[(-sim[order]).argsort(stable=True)]
        order = order[lab[order].argsort(stable=True)]
        lab_sorted = lab[order]
        first = torch.searchsorted(lab_sorted, lab_sorted, right=False)
        rank = torch.arange(lab_sorted.numel()) - first
        sel = order[rank < self.max_per_class]
        return [c[sel] for c in cols]

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, tau_conf={self.tau_conf}, margin={self.margin}, "
                f"max_per_class={self.max_per_class}")
