"""One canonical label space for every dataset, and explicit mappings from each dataset's label ids.

The canonical order is FER2013's (0 angry .. 6 neutral) with contempt appended as 7, so a 7-class model
trained on any dataset predicts the same ids, and 8-class datasets (FER+, AffectNet-8) extend it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

CANONICAL_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")

# Names used by the datasets' own files, mapped onto canonical names.
_ALIASES = {
    "anger": "angry", "angry": "angry",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear",
    "happiness": "happy", "happy": "happy", "joy": "happy",
    "sadness": "sad", "sad": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "neutral": "neutral", "neutrality": "neutral",
    "contempt": "contempt",
}


def canonical_name(name: str) -> str:
    """Map a dataset's spelling of an expression ('happiness', 'Anger', ...) to the canonical name."""
    key = name.strip().lower()
    if key not in _ALIASES:
        raise KeyError(f"unknown expression name {name!r}; known: {sorted(set(_ALIASES))}")
    return _ALIASES[key]


@dataclass(frozen=True)
class LabelSpace:
    """An ordered list of expression names; class id i means ``names[i]``."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(canonical_name(n) for n in self.names))
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate class names in label space: {self.names}")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(canonical_name(name))

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    @classmethod
    def basic(cls, num_classes: int = 7) -> "LabelSpace":
        """The canonical 7-class (basic emotions) or 8-class (with contempt) space."""
        if num_classes not in (7, 8):
            raise ValueError(f"the canonical label space has 7 or 8 classes, not {num_classes}")
        return cls(CANONICAL_CLASSES[:num_classes])


BASIC7 = LabelSpace.basic(7)
BASIC8 = LabelSpace.basic(8)


def make_mapping(source_names: Mapping[int, str] | Sequence[str], space: LabelSpace) -> dict[int, int]:
    """Dataset label id -> canonical id, for every source class that exists in ``space``.

    Source classes absent from ``space`` (contempt in a 7-class space, AffectNet's 'none') are left out,
    so the loader can drop those samples explicitly rather than mislabel them.
    """
    items = source_names.items() if isinstance(source_names, Mapping) else enumerate(source_names)
    out = {}
    for src_id, name in items:
        try:
            cname = canonical_name(name)
        except KeyError:
            continue
        if cname in space.names:
            out[int(src_id)] = space.names.index(cname)
    return out


# Each dataset's own label ids, as its files use them.
FER2013_IDS = {0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral"}
# FER+ vote columns, in file order (the last two, unknown and NF, are not expressions).
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
RAFDB_IDS = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}
# AffectNet manual annotations: 8 none, 9 uncertain, 10 no-face are not expressions.
AFFECTNET_IDS = {0: "neutral", 1: "happy", 2: "sad", 3: "surprise", 4: "fear", 5: "disgust", 6: "anger", 7: "contempt"}
