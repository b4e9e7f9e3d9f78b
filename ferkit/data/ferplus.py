"""FER+ (Barsoum et al., ICMI 2016): FER2013's images relabelled by 10 crowd votes each.

Two files, as distributed: the Kaggle ``fer2013.csv`` (pixels; parsed and cached by
:func:`ferkit.data.fer2013.read_fer2013_csv`) and Microsoft's ``fer2013new.csv`` with header
``Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF``, whose row *i*
gives the votes for row *i* of ``fer2013.csv``. Rows with an empty ``Image name`` were dropped by FER+.

The labels follow the authors' rules (described in :class:`FERPlus` and implemented by :func:`ferplus_vote_target`).
"""
from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ferkit.core.errors import DataError
from ferkit.data.base import FERDataset
from ferkit.data.fer2013 import FER2013, SPLITS, USAGE_TO_SPLIT, check_split, read_fer2013_csv
from ferkit.data.io import PathLike, file_cache_key, read_text_lines
from ferkit.core.labels import FERPLUS_COLUMNS, LabelSpace, make_mapping

log = logging.getLogger(__name__)

LABEL_MODES: tuple[str, ...] = ("majority", "soft")
NUM_EMOTIONS = 8  # the first 8 vote columns are expressions; 'unknown' and 'NF' (not a face) are not
_CONTEMPT = FERPLUS_COLUMNS.index("contempt")
_MEMO: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

# Why an image is left out, in the words the log uses.
DROP_REASONS: dict[str, str] = {
    "no_image_name": "empty 'Image name' (dropped by FER+ itself)",
    "no_votes": "no votes left after removing single-vote outliers",
    "no_majority": "no emotion has more than half of the votes",
    "unknown_or_nf": "dominated by 'unknown' or 'NF' (not a face)",
    "too_few_votes_kept": "the kept emotions hold no more than half of the votes",
    "too_many_classes": "more than 3 emotions tie for the kept votes",
    "contempt": "labelled contempt, which a 7-class space does not have",
}


def ferplus_vote_target(votes: Sequence[int], mode: str = "majority") -> tuple[list[float] | None, str]:
    """Apply FER+'s labelling rule to one image's 10 vote counts (columns in ``FERPLUS_COLUMNS`` order).

    Returns ``(kept, "kept")`` where ``kept`` are the vote counts that define the label (10 entries, the last
    two, unknown and NF, always 0 for a kept image), or ``(None, reason)`` with a key of :data:`DROP_REASONS`.

    * Every vote count of 1 is an outlier and set to 0 (all modes); ``total`` is the sum of what remains.
    * ``majority``: the image is kept when its most-voted column has more than ``total / 2`` votes and is an
      emotion; ``kept`` are then all remaining emotion votes (the distribution whose argmax is the majority).
    * ``soft``: take the remaining columns in groups of equal, decreasing vote count
      (ties in column order) while fewer than 75 % of ``total`` are taken and fewer than 3 columns are taken.
      When unknown/NF comes up, accumulation stops; it is kept (and so dominates) only if nothing was taken
      before it. The image is dropped when unknown/NF dominates, when the taken emotions hold no more than
      ``total / 2`` votes, or when more than 3 columns were taken (a tie group overshot).
    """
    if mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {LABEL_MODES}, not {mode!r}")
    v = [0 if x <= 1 else int(x) for x in votes]  # single votes are outliers (FER+ paper, Sec. 3)
    total = sum(v)
    if total == 0:
        return None, "no_votes"
    n = len(v)
    if mode == "majority":
        top = max(range(n), key=lambda i: (v[i], -i))  # first column among equals
        if 2 * v[top] <= total:
            return None, "no_majority"
        if top >= NUM_EMOTIONS:
            return None, "unknown_or_nf"
        return [float(x) if i < NUM_EMOTIONS else 0.0 for i, x in enumerate(v)], "kept"

    kept = [0] * n
    remaining = list(v)
    taken = 0
    count = 0
    stopped = False
    while 4 * taken < 3 * total and count < 3 and not stopped:
        m = max(remaining)
        for i in range(n):
            if remaining[i] != m:
                continue
            if i >= NUM_EMOTIONS:  # unknown / NF: stop; it stays only if it is all there is
                stopped = True
                if sum(kept) == 0:
                    kept[i] = m
                    count += 1
                break
            kept[i] = m
            remaining[i] = 0
            taken += m
            count += 1
    if any(kept[NUM_EMOTIONS:]):
        return None, "unknown_or_nf"
    if count > 3:
        return None, "too_many_classes"
    if 2 * sum(kept) <= total:
        return None, "too_few_votes_kept"
    return [float(x) for x in kept], "kept"


def read_ferplus_csv(path: PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``fer2013new.csv`` -> (votes int64 [N, 10] in ``FERPLUS_COLUMNS`` order, split int8 [N] (index into
    ``SPLITS``), has_image_name bool [N]). Raises :class:`DataError` naming the file and row on bad input."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: FER+ label file not found (expected Microsoft's fer2013new.csv)")
    key = file_cache_key(path)
    if key not in _MEMO:  # train / val / test read the file once
        _MEMO.clear()
        arrays = _parse_ferplus_csv(path)
        for a in arrays:
            a.flags.writeable = False  # shared by every dataset built from this file
        _MEMO[key] = arrays
    return _MEMO[key]


def _parse_ferplus_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = list(csv.reader(read_text_lines(path, "FER+ label file")))
    while rows and not any(c.strip() for c in rows[-1]):
        rows.pop()
    expected = ["Usage", "Image name", *FERPLUS_COLUMNS]
    header = [c.strip() for c in rows[0]] if rows else []
    lower = [c.lower() for c in header]
    missing = [c for c in expected if c.lower() not in lower]
    if missing:
        raise DataError(
            f"{path}: bad header {header}; expected the FER+ columns {','.join(expected)} (missing {missing})"
        )
    i_usage, i_name = lower.index("usage"), lower.index("image name")
    i_votes = [lower.index(c.lower()) for c in FERPLUS_COLUMNS]
    n = len(rows) - 1
    votes = np.zeros((n, len(FERPLUS_COLUMNS)), dtype=np.int64)
    split = np.zeros(n, dtype=np.int8)
    has_name = np.zeros(n, dtype=bool)
    split_of_usage = {u: SPLITS.index(s) for u, s in USAGE_TO_SPLIT.items()}
    for r, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise DataError(f"{path}: row {r} (line {r + 2}) has {len(row)} fields, expected {len(header)}")
        usage = row[i_usage].strip()
        if usage not in split_of_usage:
            raise DataError(f"{path}: row {r} (line {r + 2}): Usage {usage!r} is not one of {list(USAGE_TO_SPLIT)}")
        split[r] = split_of_usage[usage]
        has_name[r] = bool(row[i_name].strip())
        try:
            votes[r] = [int(row[i]) for i in i_votes]
        except ValueError:
            raise DataError(
                f"{path}: row {r} (line {r + 2}): vote counts {[row[i] for i in i_votes]} are not all integers"
            ) from None
    neg = np.flatnonzero((votes < 0).any(axis=1))
    if neg.size:
        r = int(neg[0])
        raise DataError(f"{path}: row {r} (line {r + 2}): negative vote count {votes[r].tolist()}")
    return votes, split, has_name


class FERPlus(FERDataset):
    """FER+ labels on FER2013 images, with the authors' label modes.

    Args:
        fer2013_csv: the Kaggle ``fer2013.csv`` (or ``.gz``): the pixels.
        ferplus_csv: Microsoft's ``fer2013new.csv``: 10 votes per row, joined to ``fer2013_csv`` by row index.
        split: ``"train"`` (Training), ``"val"`` (PublicTest) or ``"test"`` (PrivateTest).
        label_mode: how votes become labels (Barsoum et al. 2016); in every mode vote counts of 1 are outliers
            and removed first, and rows with an empty ``Image name`` are dropped.

            * ``"majority"`` keeps an image only if one emotion holds more than half of the remaining votes
              (images whose majority is unknown/NF, or with no majority, are dropped). ``label`` is that emotion;
              items carry no ``soft_label`` (``votes`` keeps the raw counts).
            * ``"soft"`` (the vote distribution the authors trained on in their "probability" and
              "crossentropy" schemes, which use the same kept votes) keeps the largest vote groups until they cover at least 75 % of the votes or 3
              emotions; unknown/NF stops the accumulation (and is not kept unless it came first). The image is
              dropped if unknown/NF dominates, if the kept emotions hold no more than half of the votes, or if a
              tie made more than 3 kept emotions. ``soft_labels`` are the kept votes, normalised (items carry
              them as ``soft_label``); ``label`` is their argmax.

            Ties for ``label`` are broken in FER+'s column order (neutral, happiness, surprise, ...), as the
            authors' reader does. :func:`ferplus_vote_target` is the rule for one image.
        num_classes: 8 (with contempt) or 7: images labelled contempt are dropped and the soft labels are
            renormalised over the 7 basic classes.
        transform: see :class:`~ferkit.data.base.FERDataset`.

    Attributes:
        soft_labels: float32 [N, C] in the canonical class order, each row sums to 1 (``"soft"`` mode only;
            None in ``"majority"`` mode).
        votes: int64 [N, 10], the raw votes in ``FERPLUS_COLUMNS`` order (before outlier removal).
        rows: int64 [N], the row index in both csv files.
        drop_counts: ``{reason: count}`` of the images of this split that were left out (see :data:`DROP_REASONS`).
    """

    def __init__(
        self,
        fer2013_csv: PathLike,
        ferplus_csv: PathLike,
        split: str = "train",
        label_mode: str = "majority",
        num_classes: int = 8,
        transform: Callable[..., dict] | None = None,
    ) -> None:
        if label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}, not {label_mode!r} (the former "
                             "'probability' and 'crossentropy' modes are both 'soft')")
        if num_classes not in (7, 8):
            raise ValueError(f"FER+ has 8 classes, or 7 without contempt; num_classes={num_classes}")
        super().__init__(LabelSpace.basic(num_classes), transform)
        check_split(split)
        self.split, self.label_mode = split, label_mode
        self.fer2013_csv, self.ferplus_csv = Path(fer2013_csv), Path(ferplus_csv)
        table = read_fer2013_csv(self.fer2013_csv)
        votes, plus_split, has_name = read_ferplus_csv(self.ferplus_csv)
        if len(votes) != len(table):
            raise DataError(
                f"{self.ferplus_csv} has {len(votes)} rows but {self.fer2013_csv} has {len(table)}: FER+ joins the "
                "two by row index, so they must be the unmodified files (35,887 rows each)"
            )
        mismatch = np.flatnonzero(plus_split != table.split)
        if mismatch.size:
            r = int(mismatch[0])
            raise DataError(
                f"{self.ferplus_csv}: row {r} has Usage {SPLITS[plus_split[r]]!r} but {self.fer2013_csv} row {r} has "
                f"{SPLITS[table.split[r]]!r} ({mismatch.size} rows disagree): the files are not row-aligned"
            )

        # FER+ column -> canonical id (unknown / NF have none), and the canonical order of the soft labels.
        col_to_id = make_mapping(FERPLUS_COLUMNS[:NUM_EMOTIONS], self.label_space)
        cols = [next(c for c, i in col_to_id.items() if i == k) for k in range(num_classes)]

        candidates = np.flatnonzero(table.split == SPLITS.index(split))
        keep_rows: list[int] = []
        kept_votes: list[list[float]] = []
        drops: Counter[str] = Counter()
        for r in candidates.tolist():
            if not has_name[r]:
                drops["no_image_name"] += 1
                continue
            kept, reason = ferplus_vote_target(votes[r].tolist(), label_mode)
            if kept is None:
                drops[reason] += 1
                continue
            emo = kept[:NUM_EMOTIONS]
            if num_classes == 7 and max(range(NUM_EMOTIONS), key=lambda i: (emo[i], -i)) == _CONTEMPT:
                drops["contempt"] += 1
                continue
            keep_rows.append(r)
            kept_votes.append(emo)
        self.rows = np.asarray(keep_rows, dtype=np.int64)
        kv = np.asarray(kept_votes, dtype=np.float64).reshape(-1, NUM_EMOTIONS)
        hard_col = np.argmax(kv, axis=1) if len(kv) else np.zeros(0, dtype=np.int64)  # first max: FER+ column order
        soft = kv[:, cols]  # canonical order; contempt's column left out when num_classes == 7
        distribution = (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)
        self.soft_labels = distribution if label_mode == "soft" else None
        lut = np.array([col_to_id.get(c, -1) for c in range(NUM_EMOTIONS)], dtype=np.int64)
        self.labels = lut[hard_col]
        self.votes = votes[self.rows]
        self.images = table.pixels[self.rows]
        self.drop_counts = dict(drops)
        name = os.path.basename(self.fer2013_csv)
        self.ids = [f"{name}:row={r}" for r in self.rows.tolist()]
        self.check_labels(str(self.ferplus_csv))
        details = ", ".join(f"{c} {DROP_REASONS[k]}" for k, c in sorted(drops.items(), key=lambda kv_: -kv_[1]))
        log.info(
            "FER+ %s (%s, %d classes): kept %d of %d images; dropped %d%s",
            split, label_mode, num_classes, len(self.rows), len(candidates), sum(drops.values()),
            f": {details}" if details else "",
        )

    def load_image(self, index: int) -> np.ndarray:
        return self.images[index]


def ferplus_majority_labels(ferplus_csv: PathLike, label_space: LabelSpace) -> np.ndarray:
    """The FER+ majority label of every row of ``fer2013new.csv`` in ``label_space`` (7 or 8 classes), -1 where
    the row has none: no image name, no majority, an unknown / not-a-face majority, or (7 classes) contempt."""
    votes, _, has_name = read_ferplus_csv(ferplus_csv)
    col_to_id = make_mapping(FERPLUS_COLUMNS[:NUM_EMOTIONS], label_space)  # contempt absent from a 7-class space
    out = np.full(len(votes), -1, dtype=np.int64)
    for r in np.flatnonzero(has_name).tolist():
        kept, _ = ferplus_vote_target(votes[r].tolist(), "majority")
        if kept is not None:
            out[r] = col_to_id.get(int(np.argmax(kept[:NUM_EMOTIONS])), -1)
    return out


class FER2013RealNoise(FER2013):
    """FER2013 with its own labels as (noisy) training labels and the FER+ majority vote as ``clean_labels``.

    FER2013's crowd-sourced labels disagree with the FER+ 10-annotator majority (Barsoum et al. 2016) on about a
    third of the images, unevenly over classes: real label noise whose ground truth is known. On the ``train``
    split, ``labels`` are FER2013's and ``clean_labels`` the FER+ 7-class majority; on ``val`` / ``test``,
    ``labels`` are the FER+ majority (evaluation against clean labels) and ``clean_labels`` FER2013's originals.
    Images without a 7-class FER+ majority (see :func:`ferplus_majority_labels`) are dropped; ``dropped`` counts
    them and the log says how many.

    Attributes:
        agreement: the fraction of kept images whose FER2013 label equals the FER+ majority.
    """

    def __init__(self, fer2013_csv: PathLike, ferplus_csv: PathLike, split: str = "train",
                 transform: Callable[..., dict] | None = None) -> None:
        super().__init__(fer2013_csv, split=split, transform=transform)
        self.ferplus_csv = Path(ferplus_csv)
        majority = ferplus_majority_labels(self.ferplus_csv, self.label_space)
        table = read_fer2013_csv(self.csv_path)
        if len(majority) != len(table):
            raise DataError(
                f"{self.ferplus_csv} has {len(majority)} rows but {self.csv_path} has {len(table)}: FER+ joins the two "
                "by row index, so they must be the unmodified files (35,887 rows each)")
        clean = majority[self.rows]
        keep = np.flatnonzero(clean >= 0)
        self.dropped = int(len(self.rows) - keep.size)
        own = self.labels[keep]
        self.rows, self.images, clean = self.rows[keep], self.images[keep], clean[keep]
        self.ids = [self.ids[i] for i in keep.tolist()]
        if split == "train":
            self.labels, self.clean_labels = own, clean
        else:
            self.labels, self.clean_labels = clean, own
        self.agreement = float(np.mean(own == clean)) if keep.size else float("nan")
        log.info("FER2013 %s with FER+ clean labels: kept %d images with a 7-class FER+ majority, dropped %d; "
                 "FER2013 labels agree with FER+ on %.1f %%", split, keep.size, self.dropped, 100 * self.agreement)
