"""The comparisons the benchmarks exist to answer, each a method against its own baseline in one suite, with the goal
it was set (``None``: reported only). :func:`benchmarks.tables.summary_table` turns them into the README's headline
table from the records, so the goals are stated once, here, and whether each is met is computed, never typed."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Comparison:
    suite: str
    method: str
    baseline: str
    what: str
    min_gap: float | None = None  # the goal: mean test-accuracy gap >= this (a fraction); None: reported only
    goal: str = "reported"


COMPARISONS = [
    Comparison("ferplus_recipe", "soft_votes_flip_epochs60", "soft_votes_flip",
               "recipe: 60 epochs vs 30, both with flip averaging"),
    Comparison("ferplus_recipe", "soft_votes_flip", "soft_votes", "recipe: flip averaging vs none, 30 epochs"),
    Comparison("ferplus_recipe", "soft_votes", "recipe", "recipe: vote distributions vs majority labels, 30 epochs"),
    Comparison("ferplus_clean", "arm", "avg", "ARM vs average pooling (6x6 map), clean", 0.0, "ARM >= avg"),
    Comparison("ferplus_noise30", "lanet", "ce_lanet", "LA-Net vs its CE, 30 % noise", 0.05, "LA-Net >= CE + 5"),
    Comparison("ferplus_noise30", "asm", "ce", "ASM vs CE, 30 % noise", 0.05, "ASM >= CE + 5"),
    Comparison("ferplus_noise30", "asm", "ce2", "ASM vs two averaged CE networks, 30 % noise", 1e-9,
               "ASM > CE x2"),
    Comparison("ferplus_noise10", "lanet", "ce_lanet", "LA-Net vs its CE, 10 % noise"),
    Comparison("ferplus_noise10", "asm", "ce", "ASM vs CE, 10 % noise"),
    Comparison("ferplus_noise10", "asm", "ce2", "ASM vs two averaged CE networks, 10 % noise"),
    Comparison("fer2013_realnoise", "asm", "ce", "ASM vs CE, FER2013's real noise"),
    Comparison("fer2013_realnoise", "lanet", "ce_lanet", "LA-Net vs its CE, FER2013's real noise"),
    Comparison("ferplus_pasm", "gen1", "gen0_ce", "PASM generation 1 vs its CE teacher, clean"),
    Comparison("ferplus_pasm", "gen1", "gen1_random", "PASM: located vs random erasing, clean"),
    Comparison("ferplus_omni10", "mined_distilled10", "primitive", "Omni (mined + distilled) vs CE on 10 % labels"),
]
