"""Text to render: dictionary words in several casings, numbers, prices, dates, codes and short phrases.

The word list comes from the `english-words` package (installed with the project), so a seed gives the same
text on every machine, with nothing fetched at run time.
"""

from __future__ import annotations

import functools
import gzip
import os
import random
import string

from serve_app.ocr.alphabet import CHARSET


@functools.lru_cache(maxsize=1)
def dictionary() -> tuple[str, ...]:
    """``OCR_WORDLIST`` (a gzipped word-per-line file that `training.pack` writes) if set, else english-words."""
    if os.environ.get("OCR_WORDLIST"):
        with gzip.open(os.environ["OCR_WORDLIST"], "rt") as f:
            words = {line.strip() for line in f if line.strip()}
    else:
        from english_words import get_english_words_set

        words = get_english_words_set(["web2", "gcide"], lower=False, alpha=True)
    return tuple(sorted(w for w in words if 1 <= len(w) <= 14 and all(c in CHARSET for c in w)))


@functools.lru_cache(maxsize=1)
def common_words() -> tuple[str, ...]:
    """Short words, over-represented in real text; drawn more often than the long dictionary tail."""
    return tuple(w for w in dictionary() if len(w) <= 6)


def recased_line(rng: random.Random, vocab: list[str], max_words: int = 4) -> str:
    """Words of a real vocabulary (e.g. receipts') in any casing, the whole line alike or word by word.

    Receipts print words like TOTAL or QTY mostly in capitals; seeing them in every case keeps the recognizer
    reading the glyphs instead of a word's usual case.
    """
    words = [rng.choice(vocab) for _ in range(rng.randint(1, max_words))]
    if rng.random() < 0.6:
        r = rng.random()
        return " ".join(w.lower() if r < 0.4 else w.title() if r < 0.8 else w.upper() for w in words)
    return " ".join(casing(rng, w) for w in words)


def casing(rng: random.Random, w: str) -> str:
    r = rng.random()
    if r < 0.45:
        return w.lower()
    if r < 0.75:
        return w[:1].upper() + w[1:].lower()
    return w.upper()


def _number(rng: random.Random) -> str:
    kind = rng.randrange(9)
    if kind == 0:
        return f"{rng.uniform(0, 999):.2f}"
    if kind == 1:
        return rng.choice(["$", "RM", "EUR ", "#", ""]) + f"{rng.uniform(0, 9999):,.2f}"
    if kind == 2:
        return f"{rng.randint(1, 31):02d}/{rng.randint(1, 12):02d}/{rng.choice([19, 20, 2019, 2024])}"
    if kind == 3:
        return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}" + rng.choice(["", ":00", " PM", " AM"])
    if kind == 4:
        return "".join(rng.choice(string.digits) for _ in range(rng.randint(1, 12)))
    if kind == 5:
        return "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(rng.randint(3, 10)))
    if kind == 6:
        return f"{rng.randint(1, 99)}%"
    if kind == 7:
        return f"+{rng.randint(1, 99)} {rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
    return rng.choice(["www.", ""]) + rng.choice(common_words()).lower() + rng.choice([".com", ".org", "@mail.com"])


def random_word(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.18:
        return _number(rng)
    if r < 0.22:
        return "".join(rng.choice(CHARSET[1:]) for _ in range(rng.randint(1, 8)))
    w = rng.choice(common_words() if rng.random() < 0.5 else dictionary())
    w = casing(rng, w)
    r = rng.random()
    if r < 0.12:
        w += rng.choice(".,:;!?")
    elif r < 0.16:
        q = rng.choice(["()", '""', "''", "[]"])
        w = q[0] + w + q[1]
    elif r < 0.2:
        w += rng.choice(["-", "'s", "/", "&"])
    return w


def random_line(rng: random.Random, max_words: int = 6, max_chars: int = 40) -> str:
    words = [random_word(rng) for _ in range(rng.randint(1, max_words))]
    line = " ".join(words)
    return line[:max_chars].strip() or words[0][:max_chars]
