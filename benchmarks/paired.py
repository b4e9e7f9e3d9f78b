"""Two finished runs compared image by image on the test split.

A gap between two runs with one seed each mixes two kinds of chance: which 3,000-odd images the test split happens to
hold, and how each training run happened to go (seed, order, augmentation). Only more seeds measure the second. The
first can be measured from one pair already, because both networks answered the *same* images: the records'
``test_predictions`` say, image by image, which network was right. From the images where exactly one of them was
right (``only_a`` and ``only_b``):

- the gap in accuracy is ``(only_a - only_b) / n``;
- its 95 % interval from the test images alone is the paired normal interval of that mean difference;
- McNemar's exact test asks whether ``only_a`` and ``only_b`` could be an even split of the disagreements
  (two-sided binomial, p = 1 when they are equal).

A gap whose interval holds 0 is within what another draw of test images could undo, for these two trained networks;
a gap outside it is a real difference between *these two networks*, and still says nothing about another seed.
"""
from __future__ import annotations

import math


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: the binomial probability, with p = 1/2, of a split of the ``only_a + only_b``
    disagreements at least as uneven as this one."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2 ** n)


def paired_gap(a: dict, b: dict) -> dict | None:
    """Run ``a`` against run ``b`` on the same test images, from their records' ``test_predictions``; None when either
    lacks them. Raises ValueError when the two were tested on different images (their true labels differ)."""
    pa, pb = a.get("test_predictions"), b.get("test_predictions")
    if not pa or not pb:
        return None
    if pa["label"] != pb["label"] or pa["classes"] != pb["classes"]:
        raise ValueError(f"{a.get('run')} and {b.get('run')} were tested on different images or classes")
    n = len(pa["label"])
    right_a = [p == t for p, t in zip(pa["pred"], pa["label"])]
    right_b = [p == t for p, t in zip(pb["pred"], pb["label"])]
    only_a = sum(x and not y for x, y in zip(right_a, right_b))
    only_b = sum(y and not x for x, y in zip(right_a, right_b))
    gap = (only_a - only_b) / n
    # the per-image difference is +1, -1 or 0: its variance, and the standard error of its mean
    var = (only_a + only_b) / n - gap ** 2
    se = math.sqrt(max(var, 0.0) / n)
    return {"n": n, "acc_a": sum(right_a) / n, "acc_b": sum(right_b) / n, "gap": gap, "only_a": only_a,
            "only_b": only_b, "ci95": (gap - 1.96 * se, gap + 1.96 * se), "mcnemar_p": mcnemar_exact_p(only_a, only_b)}
