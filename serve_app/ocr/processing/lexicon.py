"""Lexicon correction of CTC readings: misspelt words become dictionary words the CTC scores nearly as high.

Greedy decoding picks the best character per column, which can spell "h0use" where the columns also give "house"
almost the same probability. For each word of a reading that is not in the lexicon, a small prefix beam search
over that word's own columns lists the best spellings; the first one that is a dictionary word wins if its CTC
log-likelihood is within ``margin`` of the best. Words the model reads confidently, numbers and codes are kept,
since no dictionary spelling comes close.
"""

from __future__ import annotations

import gzip
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from serve_app.ocr.alphabet import BLANK, CHARSET
from serve_app.ocr.processing.recognition import Decoded

#: How much less likely (natural log) a dictionary spelling may be than the best reading and still replace it.
#: Chosen on real text no model trained on (ICDAR 2013 born-digital words held out) and SROIE TRAIN lines; see
#: docs/accuracy.md.
DEFAULT_MARGIN = 4.0

_NEG = -1e30
_NOT_ALNUM = re.compile(r"[^0-9a-z]")


def key(word: str) -> str:
    """How words are compared with the lexicon: case-folded letters and digits."""
    return _NOT_ALNUM.sub("", word.casefold())


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a if b <= _NEG else a + math.log1p(math.exp(b - a))


def _add(beams: dict[tuple[int, ...], tuple[float, float]], prefix: tuple[int, ...], blank: float, label: float
         ) -> None:
    b0, l0 = beams.get(prefix, (_NEG, _NEG))
    beams[prefix] = (_logaddexp(b0, blank), _logaddexp(l0, label))


def ctc_nbest(probs: np.ndarray, charset: str = CHARSET, beam: int = 10, prune: float = 1e-3
              ) -> list[tuple[str, float]]:
    """The ``beam`` most likely labellings of ``(T, C)`` probabilities by CTC prefix beam search, best first.

    Each comes with its log-likelihood summed over all of its alignments. Classes below ``prune`` at a column are
    not expanded there, which keeps this cheap where the model is sure.
    """
    logp = np.log(np.maximum(probs, 1e-12))
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, _NEG)}  # prefix: (ends in blank, in a label)
    for t in range(len(probs)):
        nxt: dict[tuple[int, ...], tuple[float, float]] = {}
        candidates = [int(k) for k in np.flatnonzero(probs[t] > prune)]
        for prefix, (pb, pl) in beams.items():
            total = _logaddexp(pb, pl)
            for k in candidates:
                lp = float(logp[t, k])
                if k == BLANK:
                    _add(nxt, prefix, total + lp, _NEG)
                elif prefix and prefix[-1] == k:
                    _add(nxt, prefix, _NEG, pl + lp)  # the same label again merges into it ...
                    _add(nxt, prefix + (k,), _NEG, pb + lp)  # ... unless a blank came between
                else:
                    _add(nxt, prefix + (k,), _NEG, total + lp)
        beams = dict(sorted(nxt.items(), key=lambda kv: -_logaddexp(*kv[1]))[:beam])
    ranked = sorted(((p, _logaddexp(*s)) for p, s in beams.items()), key=lambda ps: -ps[1])
    return [("".join(charset[k - 1] for k in p), score) for p, score in ranked]


@dataclass(frozen=True)
class Lexicon:
    """A set of known words (compared by `key`), loaded from a gzipped word-per-line file."""

    words: frozenset[str]

    @classmethod
    def load(cls, path: str | Path) -> Lexicon:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return cls(frozenset(key(line) for line in f if key(line)))

    def __contains__(self, word: str) -> bool:
        return key(word) in self.words


def mark_known(decoded: Decoded, lexicon: Lexicon) -> Decoded:
    """Flag each word that is letters only and not in the lexicon, so doubtful ones can be held to a higher bar.

    Numbers, prices and codes (any digit) and punctuation count as known: no dictionary could vouch for them.
    """
    flags = []
    for word in decoded.text.split():
        k = key(word)
        flags.append(not k.isalpha() or k in lexicon.words)
    return replace(decoded, known=tuple(flags))


def _word_spans(decoded: Decoded, length: int) -> list[tuple[int, int, int, int]]:
    """Each word's character range and the column range it owns (up to the spaces around it)."""
    spans = []
    start = None
    text = decoded.text + " "
    for i, ch in enumerate(text):
        if ch != " " and start is None:
            start = i
        elif ch == " " and start is not None:
            lo = decoded.columns[start - 1] + 1 if start > 0 else 0
            hi = decoded.columns[i] if i < len(decoded.text) else length
            spans.append((start, i, lo, hi))
            start = None
    return spans


def _known(hyp: str, lexicon: Lexicon, split: bool, min_part: int) -> bool:
    """A dictionary word; with ``split``, also words run together whose every part is one (the CTC put a space)."""
    if not hyp or hyp.startswith(" ") or hyp.endswith(" "):
        return False
    if " " not in hyp:
        return hyp in lexicon
    parts = hyp.split(" ")
    return split and all(len(key(p)) >= min_part and p in lexicon for p in parts)


def correct(decoded: Decoded, probs: np.ndarray, lexicon: Lexicon, charset: str = CHARSET,
            margin: float = DEFAULT_MARGIN, beam: int = 10, min_letters: int = 2, split: bool = False,
            min_part: int = 2) -> Decoded:
    """``decoded`` (a greedy reading of ``probs``) with out-of-lexicon words replaced where the CTC allows it.

    With ``split`` a replacement may be several dictionary words (each at least ``min_part`` letters) where the
    beam found a space the greedy path missed: scene text is often set tight, and "READYFORTHEWORLD" matches
    nothing. Replacement characters are spread evenly over the old word's columns, so word boxes stay put.
    """
    text, columns, char_probs = decoded.text, list(decoded.columns), list(decoded.probs)
    offset = 0
    for start, end, lo, hi in _word_spans(decoded, len(probs)):
        word = decoded.text[start:end]
        if word in lexicon or sum(c.isalpha() for c in word) < min_letters or hi <= lo:
            continue
        best = None
        hyps = ctc_nbest(probs[lo:hi], charset, beam)
        for hyp, score in hyps:
            if score < hyps[0][1] - margin:
                break
            if _known(hyp, lexicon, split, min_part):
                best = hyp
                break
        if best is None or best == word:
            continue
        a, b = start + offset, end + offset
        first, last = columns[a], columns[b - 1]
        new_cols = [int(round(c)) for c in np.linspace(first, last, len(best))]
        mean_p = float(np.mean(char_probs[a:b]))
        text = text[:a] + best + text[b:]
        columns[a:b] = new_cols
        char_probs[a:b] = [mean_p] * len(best)
        offset += len(best) - (end - start)
    return Decoded(text, columns, char_probs)
