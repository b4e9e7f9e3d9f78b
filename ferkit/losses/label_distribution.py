"""LA-Net's label-distribution estimation (LDE) by neighbourhood aggregation.

Wu & Cui, *LA-Net: Landmark-Aware Learning for Reliable Facial Expression Recognition under Label Noise*, ICCV 2023.

On the global batch of ``M`` samples (all-gathered *with* gradient when distributed, by
:func:`ferkit.state.distributed.gather_batch`):

1. kNN graphs (no gradient): cosine similarity among the expression features ``H_e`` and, separately, among the
   landmark features ``H_l``; the diagonal is excluded; the top-``k`` neighbours give 0/1 adjacencies ``A``.
2. A learnable scorer per space: ``u = Linear_{d->d}(h)`` split into halves ``a, b``;
   ``s_ij = softmax(MLP([a_i; b_j]))[0]`` with ``MLP: d -> d/2 -> ReLU -> d/4 -> ReLU -> 2`` (asymmetric in i, j).
3. ``w_ij = (s_ij A_ij + eps/M) / (sum_j s_ij A_ij + eps)``.
4. ``q = 1/2 (W^e + W^l) softmax(Z)``: both spaces aggregate the expression classifier's predictions.
5. ``q_tilde = m * memory[idx] + (1 - m) * q``; the memory stores ``q_tilde`` (detached) for the whole gathered
   batch, so every rank keeps the same memory.
6. ``L_KL = KL(q_tilde || softmax(z))`` over the local samples, batch mean. ``q_tilde`` is **not** detached by
   default: this gradient is the scorers' only training signal and also reaches the neighbours' logits.

``pairs="knn"`` scores only the ``M k`` neighbour pairs (O(M k d) instead of scoring all O(M^2 d) pairs, of which
all but the ``M k`` neighbours are multiplied by a zero adjacency); the ``eps/M`` term is added in closed form, so
it equals ``pairs="all"`` exactly.

**Class-prior alignment** (``align="given"``, a ferkit option, off by default and not part of LA-Net). Trained from
scratch on imbalanced data, the classifier under-predicts the rare classes, so the neighbours' aggregate ``q`` gives
them little mass and the memory, which forgets the given label as ``m^t``, loses them: on FER+ with 30 % symmetric
noise, after 30 epochs the memory's arg-max kept 1 % of the true "fear" samples and 45 % of the true "sad" ones,
against 69 % and 71 % for the given noisy labels (``benchmarks/lanet_memory_study.py``). With alignment, ``q`` is
rescaled before the memory blend so that its class marginal follows the memory's starting one (the given labels'
class shares, read from the bank at the first training step), as in ReMixMatch's distribution alignment (Berthelot et
al., ICLR 2020, arXiv 1911.09785): ``q <- normalise(q * (prior + delta) / (running + delta))``, where ``running`` is an exponential
moving average (``align_momentum``) of the gathered batches' mean ``q``. Both are registered buffers, updated from the
gathered batch, so every rank holds the same values and a resumed run continues with them.

``forward`` returns an :class:`LDEOutput`: a :class:`~ferkit.losses.base.LossOutput` (``total`` = ``L_KL``,
``terms["kl"]``) with the estimated distributions as extra fields.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ferkit.losses.base import LossOutput, check_batch_size
from ferkit.state.distributed import gather_batch
from ferkit.state.label_distribution_bank import LabelDistributionBank

__all__ = ["PairScorer", "LabelDistributionEstimator", "LDEOutput", "knn_adjacency"]


@dataclass
class LDEOutput(LossOutput):
    """What :class:`LabelDistributionEstimator` returns, for the local slice of the global batch.

    ``total``: ``KL(q_tilde || softmax(z))``, batch mean over the local samples (also ``terms["kl"]``, detached).
    """

    target: torch.Tensor | None = None      #: q_tilde, B x C (graph attached unless detach_target)
    aggregated: torch.Tensor | None = None  #: q, B x C (the neighbourhood aggregate, aligned if asked, before the blend)

    @property
    def loss(self) -> torch.Tensor:
        """Deprecated name of :attr:`total`."""
        warnings.warn("LDEOutput.loss is deprecated: read LDEOutput.total", DeprecationWarning, stacklevel=2)
        return self.total


@torch.no_grad()
def knn_adjacency(h: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``M x k'`` of each row's ``k' = min(k, M - 1)`` most cosine-similar other rows (self excluded)."""
    m = h.shape[0]
    kk = min(int(k), m - 1)
    if kk <= 0:
        return torch.zeros((m, 0), dtype=torch.long, device=h.device)
    z = F.normalize(h.detach().float(), dim=1)
    sim = z @ z.T
    sim.fill_diagonal_(-2.0)  # below any cosine similarity: never its own neighbour
    return sim.topk(kk, dim=1).indices


class PairScorer(nn.Module):
    """``s_ij = softmax(MLP([a_i; b_j]))[0]`` with ``[a; b] = Linear_{d->d}(h)`` (step 2 of the module docstring)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 4:
            raise ValueError(f"PairScorer: feature dim must be >= 4, got {dim}")
        self.dim = int(dim)
        self.half = self.dim // 2
        self.proj = nn.Linear(self.dim, self.dim)
        self.mlp = nn.Sequential(
            nn.Linear(self.dim, self.dim // 2), nn.ReLU(inplace=True),
            nn.Linear(self.dim // 2, self.dim // 4), nn.ReLU(inplace=True),
            nn.Linear(self.dim // 4, 2),
        )

    def split(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.proj(h)
        return u[:, : self.half], u[:, self.half :]

    def score_pairs(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Scores of paired rows: ``a [..., d_a]``, ``b [..., d_b]`` -> ``[...]``."""
        return torch.softmax(self.mlp(torch.cat([a, b], dim=-1)), dim=-1)[..., 0]

    def forward(self, h: torch.Tensor, neighbours: torch.Tensor | None = None) -> torch.Tensor:
        """All-pair scores ``M x M`` (``neighbours=None``) or the neighbour scores ``M x k``."""
        a, b = self.split(h)
        if neighbours is None:
            m = h.shape[0]
            return self.score_pairs(a[:, None, :].expand(m, m, a.shape[1]), b[None, :, :].expand(m, m, b.shape[1]))
        return self.score_pairs(a[:, None, :].expand(-1, neighbours.shape[1], -1), b[neighbours])


class LabelDistributionEstimator(nn.Module):
    """Neighbourhood label-distribution estimation + memory blend + KL loss (LA-Net's LDE).

    Args:
        expr_dim, lmk_dim: feature sizes of ``h_expr`` (512e) and ``h_lmk`` (64e).
        k: neighbours per space (8; assumes a global batch of about 128).
        eps: the ``eps`` of step 3 (1e-8).
        detach_target: detach ``q_tilde`` in the KL loss (then the scorers receive no gradient).
        pairs: ``"knn"`` (score only neighbour pairs; default) or ``"all"`` (all M^2 pairs, as the official code).
        gather_distributed: all-gather the batch with gradient (:func:`ferkit.state.distributed.gather_batch`)
            when running under DDP; a no-op with one process.
        align: ``"none"`` (LA-Net) or ``"given"``: class-prior alignment of ``q`` (module docstring).
        num_classes: C, needed with ``align="given"`` (the size of its buffers).
        align_momentum: the moving average's momentum per training step (0.99: about 100 steps).

    ``forward(h_expr, h_lmk, logits, index, bank)`` returns :class:`LDEOutput` for the local samples and, in
    training mode, writes ``q_tilde`` of the gathered batch into ``bank`` (a
    :class:`~ferkit.state.LabelDistributionBank`). Pass ``update_bank=False`` to leave it untouched.
    """

    def __init__(self, expr_dim: int, lmk_dim: int, k: int = 8, eps: float = 1e-8, detach_target: bool = False,
                 pairs: str = "knn", gather_distributed: bool = True, align: str = "none",
                 num_classes: int | None = None, align_momentum: float = 0.99) -> None:
        super().__init__()
        if pairs not in ("knn", "all"):
            raise ValueError(f"pairs must be 'knn' or 'all', got {pairs!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if align not in ("none", "given"):
            raise ValueError(f"align must be 'none' or 'given', got {align!r}")
        if align != "none" and (num_classes is None or int(num_classes) < 2):
            raise ValueError(f"align={align!r} needs num_classes (>= 2), got {num_classes!r}")
        if not 0.0 <= align_momentum < 1.0:
            raise ValueError(f"align_momentum must be in [0, 1), got {align_momentum}")
        self.k, self.eps, self.detach_target, self.pairs = int(k), float(eps), bool(detach_target), pairs
        self.gather_distributed = bool(gather_distributed)
        self.align, self.align_momentum = align, float(align_momentum)
        self.scorer_expr = PairScorer(expr_dim)
        self.scorer_lmk = PairScorer(lmk_dim)
        if align != "none":  # registered only when used, so checkpoints without alignment load unchanged
            c = int(num_classes)
            self.register_buffer("align_prior", torch.zeros(c))     # the memory's class marginal at the first step
            self.register_buffer("align_running", torch.zeros(c))   # moving average of the batches' mean q
            self.register_buffer("align_ready", torch.zeros((), dtype=torch.bool))

    def extra_repr(self) -> str:
        extra = f", align={self.align!r}, align_momentum={self.align_momentum}" if self.align != "none" else ""
        return f"k={self.k}, eps={self.eps}, detach_target={self.detach_target}, pairs={self.pairs!r}{extra}"

    #: added to the prior and to the moving average in the alignment factor
    ALIGN_DELTA = 1e-4

    def align_to_prior(self, q: torch.Tensor, bank: LabelDistributionBank, update: bool) -> torch.Tensor:
        """``normalise(q * (prior + delta) / (running + delta))`` (module docstring); with ``update``, first read the prior from
        ``bank`` (at the first call) and fold this batch's mean ``q`` into the moving average. ``q`` is the gathered
        batch, so the buffers stay equal on every rank. The factor is a constant (no gradient through the
        statistics); the gradient to ``q`` is kept."""
        with torch.no_grad():
            batch_mean = q.detach().float().mean(dim=0)
            if update:
                if not bool(self.align_ready):
                    bank.check_ready()
                    self.align_prior.copy_(bank.memory.float().mean(dim=0).to(self.align_prior.device))
                    self.align_running.copy_(batch_mean)
                    self.align_ready.fill_(True)
                else:
                    self.align_running.mul_(self.align_momentum).add_((1.0 - self.align_momentum) * batch_mean)
            if not bool(self.align_ready):
                return q  # never trained: nothing to align to yet
            # delta keeps every factor positive and bounded: a class the given labels lack is damped, not zeroed
            # (an exact 0 in the target makes the KL's gradient NaN), and a class the estimate has lost is raised
            # by at most (prior + delta) / delta
            delta = self.ALIGN_DELTA
            ratio = ((self.align_prior + delta) / (self.align_running + delta)).to(q.dtype)
        aligned = q * ratio
        return aligned / aligned.sum(dim=1, keepdim=True).clamp_min(1e-12)

    def aggregation_weights(self, h: torch.Tensor, scorer: PairScorer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(neighbours M x k, numerators s_ij for them, denominators sum_j s_ij A_ij + eps)`` for one space."""
        nbr = knn_adjacency(h, self.k)
        if self.pairs == "all":
            s_all = scorer(h)                         # M x M, O(M^2 d): the official formulation
            s = torch.gather(s_all, 1, nbr)
        else:
            s = scorer(h, nbr)                        # M x k
        return nbr, s, s.sum(dim=1) + self.eps

    def aggregate(self, h_expr: torch.Tensor, h_lmk: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """``q = 1/2 (W^e + W^l) probs`` on a (gathered) batch; ``probs = softmax(Z)``, ``M x C``."""
        m = probs.shape[0]
        eps_term = (self.eps / m) * probs.sum(dim=0, keepdim=True)  # sum_j (eps/M) p_j, shared by every row
        q = probs.new_zeros(probs.shape)
        for h, scorer in ((h_expr, self.scorer_expr), (h_lmk, self.scorer_lmk)):
            nbr, s, denom = self.aggregation_weights(h, scorer)
            num = (s.unsqueeze(-1) * probs[nbr]).sum(dim=1) + eps_term  # M x C
            q = q + 0.5 * num / denom.unsqueeze(-1)
        return q

    def forward(self, h_expr: torch.Tensor, h_lmk: torch.Tensor, logits: torch.Tensor, index: torch.Tensor,
                bank: LabelDistributionBank, update_bank: bool | None = None) -> LDEOutput:
        owner = "LabelDistributionEstimator"
        if logits.ndim != 2:
            raise ValueError(f"{owner}: logits must be [B, C], got {tuple(logits.shape)}")
        for name, h, scorer in (("h_expr", h_expr, self.scorer_expr), ("h_lmk", h_lmk, self.scorer_lmk)):
            if h.ndim != 2 or h.shape[1] != scorer.dim:
                raise ValueError(f"{owner}: {name} must be [B, {scorer.dim}] (the estimator was built for "
                                 f"{scorer.dim} features), got {tuple(h.shape)}")
        if index.is_floating_point():
            raise TypeError(f"{owner}: index must hold integer dataset indices (batch['index']), got {index.dtype}")
        index = index.reshape(-1).long()
        check_batch_size(owner, h_expr=h_expr, h_lmk=h_lmk, logits=logits, index=index)
        if bank.num_classes != logits.shape[1]:
            raise ValueError(f"{owner}: the bank holds {bank.num_classes} classes but the logits have {logits.shape[1]}")
        # lengths may differ per rank: `local` is this rank's rows of the gathered batch
        (h_expr, h_lmk, logits_all, index_all), local = gather_batch(
            h_expr, h_lmk, logits, index, with_grad=(True, True, True, False), enabled=self.gather_distributed)
        probs = torch.softmax(logits_all, dim=1)
        q_all = self.aggregate(h_expr, h_lmk, probs)
        update = self.training if update_bank is None else update_bank
        if self.align != "none":
            q_all = self.align_to_prior(q_all, bank, update)
        q_tilde_all = bank.blend(index_all, q_all)
        if update:
            bank.update(index_all, q_tilde_all)
        q_tilde = q_tilde_all[local]
        if self.detach_target:
            q_tilde = q_tilde.detach()
        # KL(q_tilde || p) summed over classes, mean over samples (0 log 0 = 0); gradient reaches q_tilde too
        loss = F.kl_div(F.log_softmax(logits, dim=1), q_tilde, reduction="batchmean")
        return LDEOutput(loss, {"kl": loss.detach()}, target=q_tilde, aggregated=q_all[local])
