"""Find Latin text fonts installed from Debian font packages, skipping symbol fonts and other scripts."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import numpy as np
from PIL import ImageFont

FONT_DIRS = ("/usr/share/fonts",)


def font_dirs() -> tuple[str, ...]:
    """``OCR_FONT_DIRS`` (colon-separated) if set, e.g. a packed copy on a GPU machine with no font packages."""
    env = os.environ.get("OCR_FONT_DIRS")
    return tuple(d for d in env.split(":") if d) if env else FONT_DIRS
_SKIP = re.compile(r"(symbol|dingbat|emoji|math|d050000l|music|extracondensed|thin|extralight|hairline)", re.I)
#: Noto ships one family per script; only its Latin families are wanted.
_NOTO_LATIN = re.compile(r"^Noto(Sans|Serif)?(Mono)?-")


def _has_latin(path: Path) -> bool:
    """A font whose 'a', 'H', '0' and 'g' render to distinct non-empty masks really has Latin glyphs."""
    try:
        font = ImageFont.truetype(str(path), 24)
        masks = []
        for ch in "aH0g":
            m = font.getmask(ch)
            if m.size[0] == 0 or m.size[1] == 0:
                return False
            masks.append(bytes(np.asarray(m)))
        return len(set(masks)) == 4
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def latin_fonts() -> tuple[str, ...]:
    """Usable fonts sorted by file name (so that a seed picks the same fonts on every machine and in a packed copy)."""
    found = []
    for d in font_dirs():
        for p in Path(d).rglob("*"):
            if p.suffix.lower() not in (".ttf", ".otf") or _SKIP.search(p.stem):
                continue
            if p.stem.startswith("Noto") and not _NOTO_LATIN.match(p.stem):
                continue
            if _has_latin(p):
                found.append(str(p))
    if not found:
        raise RuntimeError(f"no Latin fonts found under {font_dirs()}: install fonts-dejavu-core at least")
    return tuple(sorted(found, key=lambda f: (Path(f).name, f)))
