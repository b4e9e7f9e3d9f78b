"""How a per-sample label memory (LA-Net's label distributions) compares with known clean labels.

Where the given training labels are known to be wrong (synthetic noise, or FER2013's labels scored against the FER+
vote), a memory of label distributions can be judged directly: does it still rank the given label first for the
flipped samples, does it rank their true label first, does it keep the correct labels, and would its arg-max be a
cleaner label than the given one?
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["label_memory_stats", "rank_auroc"]


def rank_auroc(positive_higher: Any, positive_lower: Any) -> float:
    """P(a score of the first group > a score of the second), ties counting one half (the Mann-Whitney U statistic
    from the first group's mid-rank sum); NaN if either group is empty."""
    a = torch.as_tensor(positive_higher).double().flatten()
    b = torch.as_tensor(positive_lower).double().flatten()
    n_a, n_b = len(a), len(b)
    if not n_a or not n_b:
        return float("nan")
    _, inverse, counts = torch.unique(torch.cat([a, b]), return_inverse=True, return_counts=True)
    mid = counts.cumsum(0).double() - (counts.double() - 1) / 2  # the mean 1-based rank of each distinct value
    return float((mid[inverse][:n_a].sum() - n_a * (n_a + 1) / 2) / (n_a * n_b))


def label_memory_stats(memory: Any, given: Any, clean: Any) -> dict[str, float | int | None]:
    """What an ``N x C`` label memory says about the given labels, against the clean ones.

    Samples whose clean label is negative (no known truth) are left out. Shares are over a group (``flipped``: given
    != clean; ``correct``: given == clean) and ``None`` where the group is empty:

    * ``flipped_ranks_given_first`` / ``flipped_ranks_clean_first``: flipped samples whose memory ranks the given
      (wrong) / the clean label first; ``correct_ranks_given_first``: correct samples whose memory keeps their label;
    * ``flipped_mass_on_given``, ``flipped_mass_on_clean``, ``correct_mass_on_given``: mean memory mass;
    * ``flip_auroc``: how well a low mass on the given label singles out the flipped samples (0.5 = chance);
    * ``memory_label_accuracy``: share of samples whose memory arg-max is the clean label, to compare with
      ``given_label_accuracy``, the share whose given label is.
    """
    memory = torch.as_tensor(memory).detach().float().cpu()
    given = torch.as_tensor(given).long().cpu().flatten()
    clean = torch.as_tensor(clean).long().cpu().flatten()
    if memory.dim() != 2 or memory.shape[0] != given.numel() or given.shape != clean.shape:
        raise ValueError(f"memory must be N x C with N = len(given) = len(clean); got {tuple(memory.shape)}, "
                         f"{tuple(given.shape)}, {tuple(clean.shape)}")
    if not bool(torch.isfinite(memory).all()):
        raise ValueError("the label memory holds non-finite values: a corrupt checkpoint or a diverged run")
    known = clean >= 0
    memory, given, clean = memory[known], given[known], clean[known]
    flipped = given != clean
    top = memory.argmax(1) if len(memory) else given
    on_given = memory.gather(1, given[:, None]).squeeze(1)
    on_clean = memory.gather(1, clean[:, None]).squeeze(1)

    def share(hit: torch.Tensor, where: torch.Tensor) -> float | None:
        n = int(where.sum())
        return float((hit & where).sum()) / n if n else None

    def mean(x: torch.Tensor, where: torch.Tensor) -> float | None:
        return float(x[where].mean()) if bool(where.any()) else None

    n = max(int(given.numel()), 1)
    return {
        "samples": int(given.numel()), "flipped": int(flipped.sum()), "flip_rate": float(flipped.sum()) / n,
        "flipped_ranks_given_first": share(top == given, flipped),
        "flipped_ranks_clean_first": share(top == clean, flipped),
        "correct_ranks_given_first": share(top == given, ~flipped),
        "flipped_mass_on_given": mean(on_given, flipped), "flipped_mass_on_clean": mean(on_clean, flipped),
        "correct_mass_on_given": mean(on_given, ~flipped),
        "flip_auroc": rank_auroc(on_given[~flipped], on_given[flipped]),
        "given_label_accuracy": float((~flipped).sum()) / n,
        "memory_label_accuracy": float((top == clean).sum()) / n,
        "memory_max_mass": float(memory.max(1).values.mean()) if len(memory) else None,
    }
