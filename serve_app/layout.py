"""Blocks of text: which lines of an answer belong together (a paragraph, a column's run of lines, a heading).

The detector finds lines; the reading order already puts a column's lines together. What it did not say is where
one group ends and the next begins, and that is what the layout formats carry (hOCR's ``ocr_carea`` and
``ocr_par``, ALTO's ``TextBlock``, TSV's ``block_num``) and what a reader of the JSON wants to rebuild paragraphs.
Lines in reading order are joined into rows (a receipt's item and its price share one); a row starts a new block
where it is not just below the row before it: it lies above it (the next column), it starts more than
`MAX_GAP_HEIGHTS` line heights below it (the space between paragraphs), it does not overlap it sideways, or its
letters differ in height from the row's before it by more than `MAX_HEIGHT_RATIO` (a heading over its text).

Computed from the boxes alone, in the page as read (a page read turned is turned back first), so a stored answer
gets the same blocks as the answer sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import median
from typing import Any

Point = tuple[float, float]

#: A row this many of its lines' heights or more below the row above it starts a paragraph (single-spaced lines lie
#: 0.2-0.6 heights apart, paragraphs a line or more).
MAX_GAP_HEIGHTS = 1.0
#: A row whose lines are this many times taller or shorter than the row above it starts a block (a heading).
MAX_HEIGHT_RATIO = 1.6


def turn(rotation: int, width: float, height: float) -> Callable[[float, float], Point]:
    """Where a point of a ``width`` x ``height`` image lies on the image turned ``rotation`` degrees clockwise."""
    return {0: lambda x, y: (x, y), 90: lambda x, y: (height - y, x), 180: lambda x, y: (width - x, height - y),
            270: lambda x, y: (y, width - x)}[rotation]


def turned_box(box: Sequence[float], rotation: int, width: float, height: float) -> list[float]:
    """A box on a ``width`` x ``height`` image, on the image turned ``rotation`` degrees clockwise."""
    at = turn(rotation, width, height)
    (ax, ay), (bx, by) = at(box[0], box[1]), at(box[2], box[3])
    return [min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)]


def text_blocks(boxes: Sequence[Sequence[float]]) -> list[int]:
    """The block of each line, numbered from 0; ``boxes`` (x0, y0, x1, y1) in reading order, upright."""
    rows: list[list[int]] = []
    for i, (x0, y0, _, y1) in enumerate(boxes):
        if rows:
            first, last = boxes[rows[-1][0]], boxes[rows[-1][-1]]
            if abs((y0 + y1) - (first[1] + first[3])) / 2 <= (first[3] - first[1]) / 2 and x0 >= last[0]:
                rows[-1].append(i)  # the next line of the same row, further right
                continue
        rows.append([i])
    out = [0] * len(boxes)
    block = 0
    above: tuple[float, float, float, float, float] | None = None
    for row in rows:
        x0, y0 = min(boxes[i][0] for i in row), min(boxes[i][1] for i in row)
        x1, y1 = max(boxes[i][2] for i in row), max(boxes[i][3] for i in row)
        h = max(median(boxes[i][3] - boxes[i][1] for i in row), 1e-6)
        if above is not None:
            ax0, ay0, ax1, ay1, ah = above
            if (y0 + y1 <= ay0 + ay1 or y0 - ay1 >= MAX_GAP_HEIGHTS * min(h, ah) or x0 >= ax1 or x1 <= ax0
                    or max(h, ah) > MAX_HEIGHT_RATIO * min(h, ah)):
                block += 1
        for i in row:
            out[i] = block
        above = (x0, y0, x1, y1, h)
    return out


def enclosing(boxes: Sequence[Sequence[float]]) -> list[float]:
    """The box around ``boxes``."""
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def line_blocks(answer: dict[str, Any]) -> list[int]:
    """The block of each of the answer's lines (`text_blocks` on its boxes in the page as read)."""
    image = answer["image"]
    rotation = int(image.get("rotation") or 0) % 360
    return text_blocks([turned_box(line["box"], rotation, image["width"], image["height"])
                        for line in answer["lines"]])


def with_blocks(answer: dict[str, Any]) -> dict[str, Any]:
    """``answer`` with each line's ``block`` set, in place (and returned)."""
    for line, block in zip(answer["lines"], line_blocks(answer), strict=True):
        line["block"] = block
    return answer
