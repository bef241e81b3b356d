"""One word read from several views of its crop: the spelling all views find most likely wins.

A single greedy reading depends on how the crop happens to be scaled: a narrow glyph may fall between output
columns, a wide one may be read twice. Stretching the crop horizontally moves where the columns fall. Each view
proposes its best spellings (CTC prefix beam search), every proposal is scored by its CTC log-likelihood under
every view, and the highest mean wins. A lexicon then replaces an out-of-dictionary winner by the best dictionary
spelling within ``margin`` of it, as `lexicon.correct` does for a single view. A view is never squeezed below
`MIN_COLUMNS_PER_CHAR` columns per character of the first view's reading (`fitted_scales`): CTC needs a column per
character, so a too-narrow view vetoes the right spelling of condensed text.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from serve_app.ocr.alphabet import CHARSET, encode
from serve_app.ocr.processing.lexicon import DEFAULT_MARGIN, Lexicon, ctc_nbest
from serve_app.ocr.processing.recognition import Decoded, ctc_greedy

#: Width scales a single word crop is read at (`RecognizerRunner.read_word`). Chosen on held-out real words that
#: no model trained on (ICDAR 2013 born-digital TRAIN, the fifth part); see docs/accuracy.md.
DEFAULT_WORD_SCALES: tuple[float, ...] = (1.0, 0.7, 0.85, 1.15, 1.4)


#: Fewest output columns per character that a view may give the word (`fitted_scales`). Condensed text squeezed to
#: 0.7 of its width left the right spelling unlikely or impossible (CTC needs a column per character) in that view,
#: and the mean over the views lost it. Chosen on TRAIN words; see docs/accuracy.md.
MIN_COLUMNS_PER_CHAR = 1.5


def fitted_scales(scales: tuple[float, ...], columns: int, scale: float, letters: int,
                  min_columns: float = MIN_COLUMNS_PER_CHAR) -> tuple[float, ...]:
    """``scales`` raised where they would give a word of ``letters`` characters under ``min_columns`` columns each.

    ``columns`` is the number of columns the view at ``scale`` gave. Scales that end up equal are read once.
    """
    lowest = min_columns * letters * scale / max(columns, 1)
    return tuple(dict.fromkeys(max(s, lowest) for s in scales))


def resize_width(gray: np.ndarray, factor: float) -> np.ndarray:
    """``gray`` stretched (factor > 1) or squeezed horizontally, height unchanged; linear interpolation."""
    w = gray.shape[1]
    new_w = max(4, int(round(w * factor)))
    if new_w == w:
        return gray
    x = (np.arange(new_w) + 0.5) * (w / new_w) - 0.5
    x0 = np.clip(np.floor(x).astype(int), 0, w - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    frac = np.clip(x - x0, 0.0, 1.0)[None, :]
    out = gray[:, x0].astype(np.float32) * (1 - frac) + gray[:, x1].astype(np.float32) * frac
    return out.astype(gray.dtype) if np.issubdtype(gray.dtype, np.floating) else np.rint(out).astype(gray.dtype)


def log_likelihoods(probs: np.ndarray, texts: list[str], charset: str = CHARSET) -> np.ndarray:
    """CTC log-likelihood of each text given one view's ``(T, C)`` probabilities (−inf where it cannot fit)."""
    if not texts:
        return np.zeros(0)
    logp = torch.from_numpy(np.log(np.maximum(probs, 1e-12))).float()
    n = len(texts)
    labels = [encode(t, charset) for t in texts]
    targets = torch.tensor([k for lab in labels for k in lab], dtype=torch.long)
    nll = F.ctc_loss(logp[:, None, :].expand(-1, n, -1), targets,
                     torch.full((n,), len(probs), dtype=torch.long),
                     torch.tensor([len(lab) for lab in labels], dtype=torch.long),
                     blank=0, reduction="none", zero_infinity=False)
    return -nll.double().numpy()


def read_views(views: list[np.ndarray], lexicon: Lexicon | None = None, charset: str = CHARSET,
               margin: float = DEFAULT_MARGIN, beam: int = 10, min_letters: int = 2) -> Decoded:
    """The consensus reading of several views (``(T_i, C)`` probabilities) of one word.

    Character columns and probabilities come from the first view's greedy reading where the winner equals it;
    otherwise the winner's characters are spread over that reading's columns, each with the winner's mean
    per-character likelihood.
    """
    first = ctc_greedy(views[0], charset)
    candidates = {first.text} | {ctc_greedy(p, charset).text for p in views[1:]}
    for p in views:
        candidates.update(text for text, _ in ctc_nbest(p, charset, beam))
    candidates.discard("")
    if not candidates:
        return first
    texts = sorted(candidates)
    scores = np.mean([log_likelihoods(p, texts, charset) for p in views], axis=0)
    order = np.argsort(-scores, kind="stable")
    best = texts[order[0]]
    if lexicon is not None and best not in lexicon and " " not in best \
            and sum(c.isalpha() for c in best) >= min_letters:
        for i in order:
            if scores[i] < scores[order[0]] - margin:
                break
            if " " not in texts[i] and texts[i] in lexicon:
                best = texts[i]
                break
    if best == first.text:
        return first
    score = float(scores[texts.index(best)])
    char_p = math.exp(score / max(1, len(best))) if math.isfinite(score) else 0.0
    lo, hi = (first.columns[0], first.columns[-1]) if first.columns else (0, max(0, len(views[0]) - 1))
    columns = [int(round(c)) for c in np.linspace(lo, hi, len(best))]
    return Decoded(best, columns, [char_p] * len(best))
