"""The recognizer's character set: printable ASCII including space, with CTC blank at index 0."""

from __future__ import annotations

import string

BLANK = 0
#: Printable ASCII from space (0x20) to tilde (0x7E): 95 characters.
CHARSET: str = "".join(chr(c) for c in range(0x20, 0x7F))
assert len(CHARSET) == 95 and CHARSET[0] == " " and set(string.ascii_letters) <= set(CHARSET)

_INDEX = {ch: i + 1 for i, ch in enumerate(CHARSET)}


def num_classes(charset: str = CHARSET) -> int:
    """Characters plus the CTC blank."""
    return len(charset) + 1


def encode(text: str, charset: str = CHARSET) -> list[int]:
    """Map text to class ids (1-based); characters outside the set raise, so bad labels surface early."""
    index = _INDEX if charset is CHARSET else {ch: i + 1 for i, ch in enumerate(charset)}
    try:
        return [index[ch] for ch in text]
    except KeyError as exc:
        raise ValueError(f"character {exc.args[0]!r} is not in the alphabet") from None


def sanitize(text: str, charset: str = CHARSET) -> str:
    """Replace characters the model cannot emit (curly quotes, accents) with close ASCII or drop them."""
    table = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
             "\u00a0": " ", "\u2026": "..."}
    out: list[str] = []
    allowed = set(charset)
    for ch in text:
        ch = table.get(ch, ch)
        out.extend(c for c in ch if c in allowed)
    return "".join(out)
