"""The project's reported metrics: bag-of-words precision/recall/F1, word accuracy and character error rate."""

from __future__ import annotations

import re
from collections import Counter

_KEEP = re.compile(r"[^0-9a-z\s]")


def normalise_text(text: str) -> str:
    """Case-fold and keep letters and digits (and whitespace, to split on)."""
    return _KEEP.sub("", text.casefold())


def tokens(text: str) -> list[str]:
    return [t for t in normalise_text(text).split() if t]


def bag_counts(predicted: list[str], truth: list[str]) -> tuple[int, int, int]:
    """Matched, predicted and true token counts for one image (multiset match)."""
    p = Counter(t for s in predicted for t in tokens(s))
    g = Counter(t for s in truth for t in tokens(s))
    return sum((p & g).values()), sum(p.values()), sum(g.values())


def prf(matched: int, predicted: int, truth: int) -> tuple[float, float, float]:
    precision = matched / predicted if predicted else 0.0
    recall = matched / truth if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(predicted: str, truth: str) -> float:
    return edit_distance(predicted, truth) / max(len(truth), 1)
