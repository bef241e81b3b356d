"""Which pages of a PDF or multi-page TIFF to read: ``?pages=`` on the API, ``--pages`` on the command line.

One parser for both, so that the service and its client take the same spellings. Bounded before it expands: a
range such as ``1-999999999`` names its count, not a list of a billion numbers.
"""

from __future__ import annotations

import re

from serve_app.imaging import ImageError

ALL = "all"
_PART = re.compile(r"([0-9]{1,9}) *(?:- *([0-9]{1,9}))?")
#: What the parser takes, in its errors and in the API's description of ``pages``.
SPELLING = "'all', or page numbers from 1 and ranges such as '1,3-5'"
#: The longest ``?pages=`` the API takes.
SPEC_MAX_LENGTH = 200


class TooManyPages(ImageError):
    """More pages than one request reads; ``limit``: how many it reads (the answer says so, for a client to split)."""

    status, code = 413, "too_many_pages"

    def __init__(self, message: str, limit: int | None = None) -> None:  # a default: it still unpickles from args
        super().__init__(message)
        self.limit = limit


def parse_pages(spec: str, most: int = 10_000) -> list[int]:
    """``"all"`` -> [] (every page); ``"3,1-2,2"`` -> [1, 2, 3].

    ValueError for anything else; `TooManyPages` where it names more than ``most`` pages (by default far more than
    a document holds, yet few enough to list).
    """
    spec = spec.strip()
    if spec == ALL:
        return []
    ranges: list[tuple[int, int]] = []
    for part in spec.split(","):
        match = _PART.fullmatch(part.strip())
        if match is None:
            raise ValueError(f"pages must be {SPELLING}, not {spec!r}")
        first = int(match[1])
        last = int(match[2]) if match[2] else first
        if first < 1 or last < first:
            raise ValueError(f"pages must be {SPELLING} (from 1, each range low to high), not {spec!r}")
        ranges.append((first, last))
    if any(last - first >= most for first, last in ranges):
        raise TooManyPages(_too_many(spec, most), most)
    pages = sorted({p for first, last in ranges for p in range(first, last + 1)})
    if len(pages) > most:
        raise TooManyPages(_too_many(spec, most), most)
    return pages


def _too_many(spec: str, most: int) -> str:
    return (f"{spec!r} names more than {most} pages; one request reads at most {most} (ingress.max_pages): ask "
            f"for them in parts, ?pages=1-{most} and so on")


def page_spec(pages: list[int]) -> str:
    """The spelling of sorted page numbers that `parse_pages` takes back: [1, 2, 3, 5] -> ``"1-3,5"``."""
    parts: list[str] = []
    start = prev = None
    for n in [*pages, None]:
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = n
    return ",".join(parts)


def in_parts(pages: list[int], most: int, max_length: int = SPEC_MAX_LENGTH) -> list[str]:
    """Sorted page numbers as the ``?pages=`` of requests of at most ``most`` pages each, in order.

    A part whose spelling would pass ``max_length`` (scattered pages: 50 of them take up to 350 characters) is
    made of fewer pages.
    """
    parts: list[str] = []
    i = 0
    while i < len(pages):
        take = min(most, len(pages) - i)
        while take > 1 and len(page_spec(pages[i:i + take])) > max_length:
            take //= 2
        parts.append(page_spec(pages[i:i + take]))
        i += take
    return parts
