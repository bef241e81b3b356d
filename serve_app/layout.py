"""Blocks of text: which lines of an answer belong together (a paragraph, a column's run of lines, a heading).

The detector finds lines; the reading order already puts a column's lines together. What it did not say is where
one group ends and the next begins, and that is what the layout formats carry (hOCR's ``ocr_carea`` and
``ocr_par``, ALTO's ``TextBlock``, TSV's ``block_num``) and what a reader of the JSON wants to rebuild paragraphs.
Lines in reading order are joined into rows (a receipt's item and its price share one); a row starts a new block
where it is not just below the row before it: it lies above it (the next column), it starts clearly further below
it than the page's rows usually do (the space between paragraphs; `MIN_GAP_HEIGHTS`), it does not overlap it
sideways, or its letters differ in height from the row's before it by more than `MAX_HEIGHT_RATIO` (a heading).
In prose set without space between paragraphs, a paragraph starts where a line is indented from the lines around
it (`indented_starts`).

Computed from the boxes alone, in the page as read (a page read turned is turned back first), so a stored answer
gets the same blocks as the answer sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import median
from typing import Any

Point = tuple[float, float]

#: A row at least this many line heights below the row above it starts a paragraph where the gap is also
#: `PARAGRAPH_SPACING` times the page's usual gap between rows (single-spaced lines lie 0.2-0.6 heights apart,
#: paragraphs a line or more; a double-spaced page's rows all lie about 1.3 apart, and none of them starts one) ...
MIN_GAP_HEIGHTS = 0.8
PARAGRAPH_SPACING = 1.5
#: ... and one at least this many line heights below it, always.
MAX_GAP_HEIGHTS = 2.5
#: A row whose lines are this many times taller or shorter than the row above it starts a block (a heading).
MAX_HEIGHT_RATIO = 1.6
#: A first line indented from its block's left margin by this many line heights, or up to `MAX_INDENT` (an em is
#: about a line box's height: indents run 1-3 em) ...
MIN_INDENT = 0.7
MAX_INDENT = 8.0
#: ... between lines that start at the margin, give or take this many heights (the detector's left edges wander by
#: up to half a height on clean print) ...
AT_MARGIN = 0.4
#: ... and as wide as this share of the usual line (a list item's short second line is not a paragraph).
MIN_WIDTH_SHARE = 0.75


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
    spans = [(min(boxes[i][0] for i in row), min(boxes[i][1] for i in row), max(boxes[i][2] for i in row),
              max(boxes[i][3] for i in row), max(median(boxes[i][3] - boxes[i][1] for i in row), 1e-6))
             for row in rows]
    below: list[bool] = []  # each row after the first: just below the row before it, whatever the gap
    gaps: list[float] = []  # ... and how far below, in line heights
    for (ax0, ay0, ax1, ay1, ah), (x0, y0, x1, y1, h) in zip(spans, spans[1:]):
        below.append(y0 + y1 > ay0 + ay1 and x0 < ax1 and x1 > ax0 and max(h, ah) <= MAX_HEIGHT_RATIO * min(h, ah))
        gaps.append((y0 - ay1) / min(h, ah))
    usual = median([g for g, b in zip(gaps, below) if b and g > 0] or [0.0])
    starts = [r for r in range(1, len(rows)) if not below[r - 1] or gaps[r - 1] >= MAX_GAP_HEIGHTS
              or gaps[r - 1] >= max(MIN_GAP_HEIGHTS, PARAGRAPH_SPACING * usual)]
    edges = [0, *starts, len(rows)]
    for a, b in zip(edges, edges[1:]):
        starts += [a + r for r in indented_starts(spans[a:b], [len(row) for row in rows[a:b]])]
    new = set(starts)
    out = [0] * len(boxes)
    block = 0
    for r, row in enumerate(rows):
        block += r in new
        for i in row:
            out[i] = block
    return out


def indented_starts(spans: Sequence[tuple[float, float, float, float, float]], lines: Sequence[int]) -> list[int]:
    """The rows of one block (x0, y0, x1, y1, height; ``lines`` in each) that start a paragraph by their indent.

    A row starts one where it alone is indented: the rows before and after it start at the block's margin (the
    leftmost edge that a third of the rows share: a paragraph of two lines has as many indented lines as not, and
    one left edge the detector put further out is no margin), and it is one line nearly as wide as the others.
    A page sets its paragraphs' indents alike, so at least two first lines (the block's own first line counts)
    must share one: a receipt's single indented line ("CASH : 12.00") starts none. Neither does a short line (a
    list item's second), a line centred between its neighbours (a receipt's small print), centred text (no margin
    that half the rows share), nor a hanging indent (list items whose lines after the first are indented: the
    block's second row is indented under a first at the margin, where a paragraph's first line would be the
    indented one).
    """
    if len(spans) < 3:
        return []
    height = median(s[4] for s in spans)
    xs = [s[0] for s in spans]
    near = [sum(abs(x - c) <= AT_MARGIN * height for x in xs) for c in xs]
    left = min(c for c, n in zip(xs, near, strict=True) if 3 * n >= len(xs)) if 3 * max(near) >= len(xs) else min(xs)
    right = median(s[2] for s in spans)

    def indented(r: int) -> bool:
        return MIN_INDENT * height <= xs[r] - left <= MAX_INDENT * height

    at_margin = [x - left <= AT_MARGIN * height and n == 1 for x, n in zip(xs, lines, strict=True)]
    if 2 * sum(at_margin) < len(spans) or (at_margin[0] and indented(1)):
        return []

    def centred(r: int) -> bool:  # with the rows on both sides: indented as much on the right as on the left
        centre = (xs[r] + spans[r][2]) / 2
        return all(abs(centre - (xs[o] + spans[o][2]) / 2) <= (xs[r] - left) / 4 for o in (r - 1, r + 1))

    starts = [r for r in range(1, len(spans) - 1)
              if lines[r] == 1 and at_margin[r - 1] and at_margin[r + 1] and indented(r) and not centred(r)
              and spans[r][2] - xs[r] >= MIN_WIDTH_SHARE * (right - left)]
    firsts = starts + ([0] if lines[0] == 1 and indented(0) else [])  # the block's own first line, indented too
    return [r for r in starts if any(abs(xs[r] - xs[o]) <= AT_MARGIN * height for o in firsts if o != r)]


def enclosing(boxes: Sequence[Sequence[float]]) -> list[float]:
    """The box around ``boxes``."""
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def line_blocks(answer: dict[str, Any]) -> list[int]:
    """The block of each of the answer's lines (`text_blocks` on its boxes in the page as read)."""
    image = answer["image"]
    rotation = int(image.get("rotation") or 0) % 360
    return text_blocks([turned_box(line["box"], rotation, image["width"], image["height"])
                        for line in answer["lines"]])


def grouped_lines(answer: dict[str, Any]) -> list[list[tuple[int, dict[str, Any]]]]:
    """The answer's lines by block, in order: each block's (line number from 1, line) pairs."""
    groups: list[list[tuple[int, dict[str, Any]]]] = []
    for i, (line, block) in enumerate(zip(answer["lines"], line_blocks(answer), strict=True), 1):
        if block == len(groups):
            groups.append([])
        groups[block].append((i, line))
    return groups


def with_blocks(answer: dict[str, Any]) -> dict[str, Any]:
    """``answer`` with each line's ``block`` set, in place (and returned)."""
    for line, block in zip(answer["lines"], line_blocks(answer), strict=True):
        line["block"] = block
    return answer


def plain_text(lines: Sequence[str], blocks: Sequence[int] | None = None) -> str:
    """Lines as Tesseract's text output writes them: one per line, a blank line between two blocks.

    A final line break ends the text (nothing for no text). Without ``blocks`` (a whole-image correction with
    other lines than were read), the lines are one block.
    """
    if not lines:
        return ""
    out = [lines[0]]
    for i in range(1, len(lines)):
        if blocks is not None and blocks[i] != blocks[i - 1]:
            out.append("")
        out.append(lines[i])
    return "\n".join(out) + "\n"
