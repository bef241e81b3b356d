import random

import numpy as np
import pytest

from serve_app.ocr.processing.detection import DetectionParams, postprocess
from serve_app.ocr.processing.geometry import nms, vertical_runs
from serve_app.ocr.processing.textlines import (
    TextLine,
    build_lines,
    candidate_pairs,
    column_gutter,
    link_proposals,
    reading_order,
)


def strip_boxes(x0: int, x1: int, y0: float, y1: float) -> list[list[float]]:
    return [[x, y0, x + 15, y1] for x in range(x0, x1, 16)]


def test_one_row_of_strips_becomes_one_line():
    boxes = np.array(strip_boxes(32, 320, 50, 80), np.float32)
    scores = np.full(len(boxes), 0.95, np.float32)
    lines = build_lines(boxes, scores)
    assert len(lines) == 1
    x0, y0, x1, y1 = lines[0].box
    assert (x0, x1) == (32, 319) and y0 == pytest.approx(50) and y1 == pytest.approx(80)
    assert lines[0].num_proposals == len(boxes)


@pytest.mark.parametrize(
    "gap,expected_lines",
    [(16, 1), (48, 1), (64, 2)],  # max_gap=50 px between strip starts joins, 64 splits
)
def test_horizontal_gap_decides_whether_strips_join(gap, expected_lines):
    left = strip_boxes(0, 160, 10, 40)
    start = left[-1][0] + gap
    right = strip_boxes(int(start), int(start) + 160, 10, 40)
    boxes = np.array(left + right, np.float32)
    lines = build_lines(boxes, np.full(len(boxes), 0.9, np.float32), max_gap=50)
    assert len(lines) == expected_lines


def test_rows_that_do_not_overlap_vertically_stay_apart_and_come_in_reading_order():
    top = strip_boxes(100, 300, 10, 40)
    bottom = strip_boxes(0, 200, 60, 90)
    boxes = np.array(bottom + top, np.float32)
    lines = build_lines(boxes, np.full(len(boxes), 0.9, np.float32))
    assert [round(ln.box[1]) for ln in lines] == [10, 60]


def test_height_mismatch_breaks_a_chain():
    a = strip_boxes(0, 64, 10, 40)  # 30 px tall
    b = strip_boxes(64, 128, 0, 100)  # 100 px tall: similarity 0.3 < 0.7
    chains = link_proposals(np.array(a + b, np.float32), np.full(len(a) + len(b), 0.9, np.float32))
    assert sorted(len(c) for c in chains) == [len(a), len(b)]


def test_single_strips_and_low_scores_are_not_lines():
    boxes = np.array(strip_boxes(0, 16, 10, 40) + strip_boxes(200, 264, 10, 40), np.float32)
    scores = np.array([0.99] + [0.5] * 4, np.float32)
    assert build_lines(boxes, scores, min_score=0.8) == []


def test_side_refinement_moves_line_ends_off_the_grid():
    boxes = np.array(strip_boxes(32, 160, 10, 40), np.float32)
    side = np.full(len(boxes), np.nan, np.float32)
    side[0], side[-1] = 37.0, 150.0
    (line,) = build_lines(boxes, np.full(len(boxes), 0.9, np.float32), side)
    assert line.box[0] == pytest.approx(37.0) and line.box[2] == pytest.approx(150.0)


def test_candidate_pairs_are_every_pair_that_overlaps_enough_within_the_gap_however_many_rows_a_page_has():
    """Rows of 16 px columns stacked down a page (a screenshot): the banded window finds what all pairs would."""
    rng = np.random.default_rng(3)
    n = 1500
    x0 = rng.integers(0, 60, n) * 8.0
    y0 = rng.integers(0, 80, n) * 14.0 + rng.uniform(-4, 4, n)
    boxes = np.stack([x0, y0, x0 + 15, y0 + rng.uniform(8, 40, n)], 1)
    boxes[0, 3] = boxes[0, 1] + 200  # one tall box widens the bands, never loses a pair
    i, j, gap = candidate_pairs(boxes, 50, 0.45)
    got = set(zip(i.tolist(), j.tolist(), gap.tolist()))
    h = boxes[:, 3] - boxes[:, 1] + 1
    want = set()
    for a in range(n):
        for b in range(n):
            g = int(np.rint(boxes[b, 0]) - np.rint(boxes[a, 0]))
            inter = min(boxes[a, 3], boxes[b, 3]) - max(boxes[a, 1], boxes[b, 1]) + 1
            short, tall = min(h[a], h[b]), max(h[a], h[b])
            if 1 <= g <= 50 and max(inter, 0) / short >= 0.45 and short / tall >= 0.45:
                want.add((a, b, g))
    assert got == want and len(i) == len(got) and len(want) > 1000
    assert [len(v) for v in candidate_pairs(boxes[:0], 50, 0.45)] == [0, 0, 0]


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 15, 30], [0, 2, 15, 32], [100, 0, 115, 30]], np.float32)
    keep = nms(boxes, np.array([0.8, 0.9, 0.7], np.float32), 0.5)
    assert keep.tolist() == [1, 2]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    return inter / max((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter, 1e-6)


def _greedy_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS as written down: the best box left is kept, every box overlapping it more is dropped."""
    left, keep = sorted(range(len(scores)), key=lambda i: -scores[i]), []
    while left:
        i = left.pop(0)
        keep.append(i)
        left = [j for j in left if _iou(boxes[i], boxes[j]) <= threshold]
    return keep


def test_nms_keeps_what_greedy_suppression_keeps_ties_broken_by_index():
    """CTPN's proposals: 16 px columns, two views half a column apart, scores often tied (low-precision logits)."""
    rng = np.random.default_rng(0)
    x0 = rng.integers(0, 40, 3000) * 8.0
    y0 = rng.uniform(0, 400, 3000)
    boxes = np.stack([x0, y0, x0 + 16, y0 + rng.uniform(11, 60, 3000)], 1)
    scores = np.round(rng.uniform(0.4, 1.0, 3000), 2)  # ties everywhere
    keep = nms(boxes, scores, 0.3)
    assert keep.tolist() == _greedy_nms(boxes, scores, 0.3) and 100 < keep.size < 3000
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.3).tolist() == []


def test_nms_of_a_page_of_rows_is_run_row_by_row_and_keeps_what_greedy_suppression_keeps():
    rng = np.random.default_rng(1)
    n = 2000
    x0 = rng.integers(0, 40, n) * 8.0
    y0 = rng.integers(0, 40, n) * 30.0 + rng.uniform(0, 6, n)  # 40 rows 30 px apart, 11-20 px high
    boxes = np.stack([x0, y0, x0 + 16, y0 + rng.uniform(11, 20, n)], 1)
    boxes[0, 1], boxes[0, 3] = 0, 100  # one box across the first rows joins them into one run
    runs = vertical_runs(boxes)
    assert len(set(runs.tolist())) == 37 and len(set(runs[boxes[:, 1] < 95].tolist())) == 1
    scores = np.round(rng.uniform(0.4, 1.0, n), 2)
    assert nms(boxes, scores, 0.3).tolist() == _greedy_nms(boxes, scores, 0.3)


def test_postprocess_maps_lines_back_to_original_pixels():
    h, w, k = 8, 20, 10
    scores = np.full((h, w, k, 2), [5.0, -5.0], np.float32)  # background everywhere...
    vertical = np.zeros((h, w, k, 2), np.float32)
    side = np.zeros((h, w, k), np.float32)
    scores[3, 2:12, 3] = [-5.0, 5.0]  # ...but a row of text at feature row 3, anchor height 33
    lines = postprocess(scores, vertical, side, scale=2.0, width=160, height=64, p=DetectionParams())
    assert len(lines) == 1
    x0, y0, x1, y1 = lines[0].box
    assert x0 == pytest.approx(32 / 2, abs=8) and x1 == pytest.approx(191 / 2, abs=8)
    assert (y0 + y1) / 2 == pytest.approx(55.5 / 2, abs=0.5) and y1 - y0 == pytest.approx(33 / 2, abs=0.5)


def _paper_rule(boxes: np.ndarray, scores: np.ndarray, max_gap: int, min_overlap: float) -> list[list[int]]:
    """The graph rule as a plain loop over proposals and pixel columns: the oracle for the vectorised linker."""
    def fits(a: int, b: int) -> bool:
        ha, hb = boxes[a, 3] - boxes[a, 1] + 1, boxes[b, 3] - boxes[b, 1] + 1
        inter = min(boxes[a, 3], boxes[b, 3]) - max(boxes[a, 1], boxes[b, 1]) + 1
        return max(inter, 0) / min(ha, hb) >= min_overlap and min(ha, hb) / max(ha, hb) >= min_overlap

    xs = [round(float(b[0])) for b in boxes]

    def nearest(a: int, step: int) -> list[int]:
        for dx in range(1, max_gap + 1):
            hit = [b for b in range(len(boxes)) if xs[b] == xs[a] + step * dx and fits(a, b)]
            if hit:
                return hit
        return []

    succ, has_pred = [-1] * len(boxes), [False] * len(boxes)
    for a in range(len(boxes)):
        right = nearest(a, +1)
        if not right:
            continue
        b = max(right, key=lambda k: (scores[k], -k))
        if scores[a] >= max(scores[k] for k in nearest(b, -1)) and not has_pred[b]:
            succ[a], has_pred[b] = b, True
    chains = []
    for start in (a for a in range(len(boxes)) if not has_pred[a]):
        chain = [start]
        while succ[chain[-1]] >= 0:
            chain.append(succ[chain[-1]])
        chains.append(chain)
    return chains


@pytest.mark.parametrize("seed", range(6))
def test_linking_follows_the_paper_rule_on_crowded_random_proposals(seed):
    """Many rows, columns on the 16 px grid, ragged heights and tied scores: every link must match the plain rule."""
    rng = np.random.default_rng(seed)
    n = 400
    x = rng.integers(0, 40, n) * 16 + rng.choice([0, 0, 0, 0.5, 3], n)  # a few off the grid, some exactly halfway
    y = rng.uniform(0, 300, n)
    h = rng.uniform(8, 40, n)
    boxes = np.stack([x, y, x + 15, y + h], axis=1).astype(np.float32)
    scores = rng.choice([0.7, 0.8, 0.9, 0.95], n).astype(np.float32)  # few values: ties everywhere
    for max_gap, min_overlap in ((50, 0.5), (20, 0.7)):
        got = link_proposals(boxes, scores, max_gap, min_overlap)
        assert got == _paper_rule(boxes, scores, max_gap, min_overlap)
        assert sum(len(c) > 1 for c in got) > 10  # the test links something


def _line(x0: float, y0: float, x1: float, h: float = 20) -> TextLine:
    return TextLine((x0, y0, x1, y0 + h), ((x0, y0), (x1, y0), (x1, y0 + h), (x0, y0 + h)), 0.9, 3)


def _column(x0: float, x1: float, y0: float, n: int, name: str) -> dict[str, TextLine]:
    """``n`` long lines of a column, 30 px apart, the last of its paragraph shorter."""
    return {f"{name}{i}": _line(x0, y0 + 30 * i, x1 if i < n - 1 else (x0 + x1) / 2) for i in range(n)}


def _order(named: dict[str, TextLine]) -> list[str]:
    names = {id(ln): k for k, ln in named.items()}
    lines = list(named.values())
    random.Random(0).shuffle(lines)
    return [names[id(ln)] for ln in reading_order(lines)]


def test_two_columns_are_read_one_after_the_other_not_interleaved():
    page = _column(40, 500, 100, 6, "a") | _column(560, 1020, 100, 6, "b")
    assert _order(page) == [f"a{i}" for i in range(6)] + [f"b{i}" for i in range(6)]


def test_a_heading_across_the_columns_ends_the_section_above_it():
    page = ({"title": _line(200, 40, 860)} | _column(40, 500, 100, 4, "a") | _column(560, 1020, 100, 4, "b")
            | {"heading": _line(300, 240, 760)} | _column(40, 500, 300, 3, "c") | _column(560, 1020, 300, 3, "d"))
    assert _order(page) == (["title", "a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3", "heading"]
                            + ["c0", "c1", "c2", "d0", "d1", "d2"])


def test_three_columns_come_left_to_right():
    page = _column(40, 360, 50, 5, "a") | _column(400, 720, 50, 5, "b") | _column(760, 1080, 50, 5, "c")
    assert _order(page) == [f"{c}{i}" for c in "abc" for i in range(5)]


@pytest.mark.parametrize("right_width", [60, 120])
def test_a_receipts_prices_stay_on_their_rows(right_width):
    """Items on the left, short amounts on the right: not a column of text but the second half of each row."""
    page = {}
    for i in range(8):
        page[f"item{i}"] = _line(20, 40 + 30 * i, 300)
        page[f"price{i}"] = _line(420 - right_width, 40 + 30 * i, 420)
    assert _order(page) == [f"{k}{i}" for i in range(8) for k in ("item", "price")]


def test_lines_too_few_or_too_short_for_columns_are_read_by_rows():
    few = _column(40, 500, 100, 2, "a") | _column(560, 1020, 100, 2, "b")
    assert _order(few) == ["a0", "b0", "a1", "b1"]
    labels = _column(40, 150, 100, 5, "a") | _column(560, 670, 100, 5, "b")  # 'Name:' and its value, a form
    assert _order(labels) == [f"{k}{i}" for i in range(5) for k in "ab"]
    assert column_gutter(list(labels.values())) is None
