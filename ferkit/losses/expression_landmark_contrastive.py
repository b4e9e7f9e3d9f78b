"""LA-Net's expression-landmark (EL) contrastive loss: supervised cross-modal contrast with MoCo queues.

Wu & Cui, *LA-Net: Landmark-Aware Learning for Reliable Facial Expression Recognition under Label Noise*, ICCV 2023.

Queries ``q^e, q^l`` (projected, L2-normalised expression / landmark features of the local batch) are contrasted
with momentum-encoder keys ``k^e, k^l`` and with queues ``Q^e, Q^l`` of past keys::

    L(a -> b) = 1/B sum_i 1/|P_i| sum_{j in P_i}
                -log( exp(q^a_i . k^b_j / T) / (exp(q^a_i . k^b_j / T) + sum_{n: y^Q_n != y_i} exp(q^a_i . Q^b_n / T)) )
    L_EL = L(e -> l) + L(l -> e)

Pseudo-labels are confidence-gated: ``y_i = argmax q_tilde_i`` if ``max q_tilde_i >= tau`` (0.7), otherwise the
sample's own id ``-(index_i + 1)``, so its only positive is its own key. ``-(index + 1)`` never equals a class id
(a plain ``-index`` would make sample 0 share class 0's label), and queue slots never written carry
:data:`ferkit.state.memory_bank.EMPTY_LABEL`, which equals nothing: they act as plain negatives.

Positives ``P_i``: keys of the **gathered** batch with the anchor's label (``positives="global"``, default; the
same as the official local-batch rule with one process, and independent of how the batch is split over ranks) or
of the local batch only (``positives="local"``, the official rule under DDP). Keys carry no gradient, so keys and
labels are gathered without gradient (:func:`ferkit.state.distributed.gather_batch`); after the loss the gathered
keys and labels are enqueued (FIFO).

``forward`` returns a :class:`~ferkit.losses.base.LossOutput` with ``total = L(e -> l) + L(l -> e)`` and the two
directions as ``terms["expr_to_lmk"]`` / ``terms["lmk_to_expr"]``.
"""
from __future__ import annotations

import torch
from torch import nn

from ferkit.losses.base import LossOutput, check_batch_size
from ferkit.state.distributed import gather_batch
from ferkit.state.memory_bank import MemoryBank

__all__ = ["ExpressionLandmarkContrastiveLoss", "confidence_pseudo_labels", "supervised_queue_contrast"]


def confidence_pseudo_labels(target: torch.Tensor, index: torch.Tensor, threshold: float = 0.7) -> torch.Tensor:
    """``argmax target`` where ``max target >= threshold``, else ``-(index + 1)`` (unique, never a class id)."""
    conf, cls = target.detach().max(dim=1)
    return torch.where(conf >= threshold, cls, -(index.reshape(-1).long().to(cls.device) + 1))


def supervised_queue_contrast(
    queries: torch.Tensor,
    keys: torch.Tensor,
    queue: torch.Tensor,
    anchor_labels: torch.Tensor,
    key_labels: torch.Tensor,
    queue_labels: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """One direction of the EL loss: mean over anchors of the mean over positives (keys with the anchor's label)."""
    pos_logits = queries @ keys.T / temperature                          # B x M
    pos_mask = anchor_labels[:, None] == key_labels[None, :]
    neg_logits = queries @ queue.T / temperature                         # B x Q
    neg_mask = queue_labels[None, :] != anchor_labels[:, None]
    neg_lse = torch.logsumexp(neg_logits.masked_fill(~neg_mask, float("-inf")), dim=1)  # -inf when no negative
    per_pair = torch.logaddexp(pos_logits, neg_lse[:, None]) - pos_logits
    n_pos = pos_mask.sum(dim=1)
    if bool((n_pos == 0).any()):
        raise ValueError("EL loss: an anchor has no positive key; pass the anchors' own keys among the keys")
    return ((per_pair * pos_mask).sum(dim=1) / n_pos).mean()


class ExpressionLandmarkContrastiveLoss(nn.Module):
    """L_EL with its queues (a :class:`~ferkit.state.MemoryBank` holding ``Q^e``, ``Q^l`` and the label queue).

    Args:
        dim: embedding size (64e).
        queue_size: Q (8192).
        temperature: T (0.1).
        conf_thresh: tau (0.7) for the pseudo-labels.
        positives: ``"global"`` (gathered batch; default) or ``"local"`` (official DDP behaviour).
        gather_distributed: gather keys and labels from every rank under DDP (no-op with one process).
        seed: seed of the random initial queue keys.

    ``forward(q_expr, q_lmk, k_expr, k_lmk, target=..., index=...)`` computes pseudo-labels from ``target``
    (``q_tilde``) or takes them from ``labels=``, returns the :class:`LossOutput` over the local anchors, and in
    training mode enqueues the gathered keys (``update_queue`` overrides).
    """

    def __init__(self, dim: int = 64, queue_size: int = 8192, temperature: float = 0.1, conf_thresh: float = 0.7,
                 positives: str = "global", gather_distributed: bool = True, seed: int = 0) -> None:
        super().__init__()
        if positives not in ("global", "local"):
            raise ValueError(f"positives must be 'global' or 'local', got {positives!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.conf_thresh, self.positives = float(temperature), float(conf_thresh), positives
        self.gather_distributed = bool(gather_distributed)
        self.queue = MemoryBank(queue_size, dim, num_queues=2, seed=seed)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, conf_thresh={self.conf_thresh}, positives={self.positives!r}"

    def forward(self, q_expr: torch.Tensor, q_lmk: torch.Tensor, k_expr: torch.Tensor, k_lmk: torch.Tensor,
                target: torch.Tensor | None = None, index: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                update_queue: bool | None = None) -> LossOutput:
        owner = "ExpressionLandmarkContrastiveLoss"
        dim = self.queue.dim
        for name, t in (("q_expr", q_expr), ("q_lmk", q_lmk), ("k_expr", k_expr), ("k_lmk", k_lmk)):
            if t.ndim != 2 or t.shape[1] != dim:
                raise ValueError(f"{owner}: {name} must be [B, {dim}] (the loss was built with dim={dim}), got "
                                 f"{tuple(t.shape)}")
        if labels is None:
            if target is None or index is None:
                raise ValueError(f"{owner}: pass labels=, or target= (q_tilde) and index= to derive the pseudo-labels")
            check_batch_size(owner, q_expr=q_expr, target=target, index=index.reshape(-1))
            labels = confidence_pseudo_labels(target, index, self.conf_thresh)
        elif labels.is_floating_point():
            raise TypeError(f"{owner}: labels must be integer ids, got {labels.dtype}")
        labels = labels.reshape(-1).long()
        check_batch_size(owner, q_expr=q_expr, q_lmk=q_lmk, k_expr=k_expr, k_lmk=k_lmk, labels=labels)
        k_expr, k_lmk = k_expr.detach(), k_lmk.detach()
        (keys_e, keys_l, key_labels), local = gather_batch(k_expr, k_lmk, labels, enabled=self.gather_distributed)
        if self.positives == "local":
            pos_e, pos_l, pos_labels = keys_e[local], keys_l[local], key_labels[local]
        else:
            pos_e, pos_l, pos_labels = keys_e, keys_l, key_labels
        # snapshot: the enqueue below writes the buffers in place, and autograd needs the values used here
        queue_e, queue_l = self.queue.keys[0].to(q_expr.dtype, copy=True), self.queue.keys[1].to(q_expr.dtype, copy=True)
        queue_labels = self.queue.labels.clone()
        e_to_l = supervised_queue_contrast(q_expr, pos_l, queue_l, labels, pos_labels, queue_labels, self.temperature)
        l_to_e = supervised_queue_contrast(q_lmk, pos_e, queue_e, labels, pos_labels, queue_labels, self.temperature)
        if self.training if update_queue is None else update_queue:
            self.queue.enqueue([keys_e, keys_l], key_labels)
        return LossOutput(e_to_l + l_to_e, {"expr_to_lmk": e_to_l.detach(), "lmk_to_expr": l_to_e.detach()})
