"""Join CTPN's fixed-width proposals into text lines with the paper's graph rule.

Proposal *j* is the successor of *i* when it is the nearest proposal to the right within ``max_gap`` px whose
vertical overlap and height similarity with *i* both reach ``min_overlap``; the pair is linked when *i* is also
the best-scoring precursor of *j*. Chains of links are lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TextLine:
    """An axis-aligned line box, its quadrilateral (top edge and bottom edge fitted across the proposals), score."""

    box: tuple[float, float, float, float]
    poly: tuple[tuple[float, float], ...]
    score: float
    num_proposals: int


def candidate_pairs(boxes: np.ndarray, max_gap: int, min_overlap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j), j 1..``max_gap`` px right of i, whose vertical overlap and height similarity reach ``min_overlap``.

    Returns both indices and the gap. Pairs that overlap vertically have centres less than the tallest box apart, so
    each proposal is paired only with the proposals 1..``max_gap`` px to its right in its own band of that height
    and the two beside it (a window over the proposals sorted by band, then x): the work grows with proposals x
    neighbours. A window over x alone paired every row of a page with every other row: 30,000 proposals of a
    1280 x 9000 screenshot took 10 s to join into lines.
    """
    n = len(boxes)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    x = np.rint(boxes[:, 0]).astype(np.int64)  # rint, like round(), sends halves to even
    band_h = float(np.max(boxes[:, 3] - boxes[:, 1])) + 2.0
    band = np.floor((boxes[:, 1] + boxes[:, 3]) / 2 / band_h).astype(np.int64)
    span = int(x.max() - x.min()) + max_gap + 2  # keys of neighbouring bands never meet
    key = (band + 1) * span + (x - x.min())
    order = np.argsort(key, kind="stable")
    keys = key[order]
    pieces_i, pieces_j = [], []
    for d in (-1, 0, 1):
        lo = np.searchsorted(keys, keys + d * span + 1, "left")
        hi = np.searchsorted(keys, keys + d * span + max_gap, "right")
        counts = hi - lo
        first = np.cumsum(counts) - counts
        a = np.repeat(np.arange(n), counts)
        b = np.arange(int(counts.sum())) - np.repeat(first - lo, counts)
        pieces_i.append(order[a])
        pieces_j.append(order[b])
    i, j = np.concatenate(pieces_i), np.concatenate(pieces_j)
    h_i = boxes[i, 3] - boxes[i, 1] + 1
    h_j = boxes[j, 3] - boxes[j, 1] + 1
    inter = np.minimum(boxes[i, 3], boxes[j, 3]) - np.maximum(boxes[i, 1], boxes[j, 1]) + 1
    short, tall = np.minimum(h_i, h_j), np.maximum(h_i, h_j)
    ok = (np.clip(inter, 0, None) / short >= min_overlap) & (short / tall >= min_overlap)
    return i[ok], j[ok], (x[j] - x[i])[ok]


def _nearest(owner: np.ndarray, gap: np.ndarray, n: int) -> np.ndarray:
    """Which pairs have the smallest gap among the pairs of their owner (a proposal's nearest column)."""
    best = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(best, owner, gap)
    return gap == best[owner]


def link_proposals(
    boxes: np.ndarray, scores: np.ndarray, max_gap: int = 50, min_overlap: float = 0.7
) -> list[list[int]]:
    """Group proposal indices into chains (left to right) with the paper's graph rule.

    The successor of *i* is the best-scoring proposal (the lowest index among equals) in the nearest column to its
    right that overlaps it enough; they link when no proposal in the nearest such column to that successor's left
    scores higher than *i*, and the successor has no precursor yet (proposals are visited in index order).
    """
    n = len(boxes)
    i, j, gap = candidate_pairs(boxes, max_gap, min_overlap)
    succ = np.full(n, -1, dtype=np.int64)
    if i.size:
        right = _nearest(i, gap, n)
        ri, rj = i[right], j[right]
        pick = np.lexsort((rj, -scores[rj], ri))  # per i: highest score, then lowest index
        ri, rj = ri[pick], rj[pick]
        firsts = np.flatnonzero(np.r_[True, ri[1:] != ri[:-1]])
        nxt = np.full(n, -1, dtype=np.int64)
        nxt[ri[firsts]] = rj[firsts]
        left = _nearest(j, gap, n)
        best_prev = np.full(n, -np.inf)
        np.maximum.at(best_prev, j[left], scores[i[left]])
        src = np.flatnonzero(nxt >= 0)
        src = src[scores[src] >= best_prev[nxt[src]]]
        _, winner = np.unique(nxt[src], return_index=True)  # src is ascending: the first i claims j
        succ[src[winner]] = nxt[src[winner]]
    has_pred = np.zeros(n, dtype=bool)
    has_pred[succ[succ >= 0]] = True
    chains = []
    for start in np.flatnonzero(~has_pred):
        chain = [int(start)]
        while succ[chain[-1]] >= 0:
            chain.append(int(succ[chain[-1]]))
        chains.append(chain)
    return chains


def _fit(xs: np.ndarray, ys: np.ndarray, x0: float, x1: float) -> tuple[float, float]:
    if len(xs) < 2 or np.ptp(xs) == 0:
        return float(ys.mean()), float(ys.mean())
    k, b = np.polyfit(xs, ys, 1)
    return float(k * x0 + b), float(k * x1 + b)


def build_lines(
    boxes: np.ndarray,
    scores: np.ndarray,
    side_x: np.ndarray | None = None,
    *,
    max_gap: int = 50,
    min_overlap: float = 0.7,
    min_proposals: int = 2,
    min_score: float = 0.8,
    min_aspect: float = 0.5,
) -> list[TextLine]:
    """Lines from proposals (already thresholded and NMS'd), sorted top to bottom, left to right.

    ``side_x`` (refined x of a line end, one per proposal) replaces a line's outer x where given: the
    side-refinement step that lets CTPN place line ends finer than its 16 px grid.
    """
    lines = []
    for chain in link_proposals(boxes, scores, max_gap, min_overlap):
        if len(chain) < min_proposals:
            continue
        b = boxes[chain]
        s = float(scores[chain].mean())
        if s < min_score:
            continue
        x0, x1 = float(b[:, 0].min()), float(b[:, 2].max())
        if side_x is not None:
            left, right = chain[0], chain[-1]
            # trust the refinement only when it stays within one anchor width of the grid estimate
            if abs(side_x[left] - x0) <= 16:
                x0 = float(min(side_x[left], x0 + 15))
            if abs(side_x[right] - x1) <= 16:
                x1 = float(max(side_x[right], x1 - 15))
        cx = (b[:, 0] + b[:, 2]) / 2
        top0, top1 = _fit(cx, b[:, 1], x0, x1)
        bot0, bot1 = _fit(cx, b[:, 3], x0, x1)
        y0, y1 = min(top0, top1), max(bot0, bot1)
        if y1 - y0 <= 0 or (x1 - x0) / (y1 - y0) < min_aspect:
            continue
        poly = ((x0, top0), (x1, top1), (x1, bot1), (x0, bot0))
        lines.append(TextLine((x0, y0, x1, y1), poly, s, len(chain)))
    return reading_order(lines)


#: A gutter between two columns is at least this many line heights wide (word gaps inside a line are under one).
GUTTER_HEIGHTS = 0.8
#: A column of text holds at least this many lines beside the other, and its lines are long: their median at least
#: this many line heights (some 16 characters). A receipt's prices or a form's labels are not a column to read
#: whole: they belong to the row they stand in.
MIN_COLUMN_LINES = 3
COLUMN_LINE_HEIGHTS = 8.0
#: At most this share of the lines may cross a gutter (headings, captions across the columns); each ends a section.
MAX_SPANNING = 0.2


def reading_order(lines: list[TextLine]) -> list[TextLine]:
    """Columns of text left to right, each top to bottom; rows top to bottom elsewhere, each left to right.

    Read by rows alone, a page set in two columns came out interleaved: line 1 of the left column, line 1 of the
    right, line 2 of the left. Where a gutter splits the lines into columns (`column_gutter`), each column is read
    whole, and a line across the gutter (a heading) ends the section above it; the columns read again recursively,
    so three columns come out in order too.
    """
    gutter = column_gutter(lines)
    if gutter is None:
        return _rows(lines)
    out: list[TextLine] = []
    left: list[TextLine] = []
    right: list[TextLine] = []
    for ln in sorted(lines, key=lambda ln: (ln.box[1] + ln.box[3]) / 2):
        if ln.box[2] <= gutter[0]:
            left.append(ln)
        elif ln.box[0] >= gutter[1]:
            right.append(ln)
        else:  # across the gutter: what was above it is read first, column by column
            out += reading_order(left) + reading_order(right)
            left, right = [], []
            out.append(ln)
    return out + reading_order(left) + reading_order(right)


def column_gutter(lines: list[TextLine]) -> tuple[float, float] | None:
    """The x range of the gutter between two columns of text (see the constants above), or None.

    Of several, the one fewest lines cross, then the widest; the columns on either side are searched again.
    """
    n = len(lines)
    if n < 2 * MIN_COLUMN_LINES:
        return None
    b = np.array([ln.box for ln in lines], np.float64)
    height = float(np.median(b[:, 3] - b[:, 1]))
    widths = b[:, 2] - b[:, 0]
    best: tuple[tuple[int, float], tuple[float, float]] | None = None
    for x in np.unique(b[:, 2]):
        left = b[:, 2] <= x
        right = b[:, 0] >= x + GUTTER_HEIGHTS * height
        spanning = n - int(left.sum()) - int(right.sum())
        if (left.sum() < MIN_COLUMN_LINES or right.sum() < MIN_COLUMN_LINES or spanning > MAX_SPANNING * n
                or np.median(widths[left]) < COLUMN_LINE_HEIGHTS * height
                or np.median(widths[right]) < COLUMN_LINE_HEIGHTS * height):
            continue
        gutter = (float(b[left, 2].max()), float(b[right, 0].min()))
        key = (spanning, -(gutter[1] - gutter[0]))
        if best is None or key < best[0]:
            best = (key, gutter)
    return None if best is None else best[1]


def _rows(lines: list[TextLine]) -> list[TextLine]:
    """Rows top to bottom (lines whose centres lie within half a line height share a row), each left to right."""
    rows: list[list[TextLine]] = []
    for ln in sorted(lines, key=lambda ln: (ln.box[1] + ln.box[3]) / 2):
        cy = (ln.box[1] + ln.box[3]) / 2
        if rows:
            ref = rows[-1][0]
            if abs(cy - (ref.box[1] + ref.box[3]) / 2) <= (ref.box[3] - ref.box[1]) / 2:
                rows[-1].append(ln)
                continue
        rows.append([ln])
    return [ln for row in rows for ln in sorted(row, key=lambda ln: ln.box[0])]
