import numpy as np
import pytest

from serve_app.ocr.processing.anchors import (
    ANCHOR_HEIGHTS,
    NUM_ANCHORS,
    anchor_grid,
    decode_side,
    decode_vertical,
    encode_side,
    encode_vertical,
    proposals,
    vertical_iou,
)
from training.ctpn_targets import as_quads, clip_x, make_targets


def test_anchor_heights_follow_the_paper():
    assert NUM_ANCHORS == 10
    assert ANCHOR_HEIGHTS[0] == 11 and ANCHOR_HEIGHTS[-1] == 283
    ratios = ANCHOR_HEIGHTS[1:] / ANCHOR_HEIGHTS[:-1]
    assert np.allclose(ratios, 1 / 0.7, atol=0.05)


def test_anchor_grid_centres_sit_in_the_middle_of_each_16px_cell():
    cx, cy, ha = anchor_grid(2, 3)
    assert cx.shape == (2, 3, 10)
    assert cx[0, :, 0].tolist() == [7.5, 23.5, 39.5]
    assert cy[:, 0, 0].tolist() == [7.5, 23.5]
    assert (ha[1, 2] == ANCHOR_HEIGHTS).all()


@pytest.mark.parametrize("cy,h", [(7.5, 11.0), (100.0, 40.0), (3.0, 300.0)])
def test_vertical_encoding_round_trips(cy, h):
    cya, ha = np.float32(20.0), np.float32(33.0)
    v = encode_vertical(np.float32(cy), np.float32(h), cya, ha)
    dcy, dh = decode_vertical(v, cya, ha)
    assert dcy == pytest.approx(cy, rel=1e-5) and dh == pytest.approx(h, rel=1e-5)


def test_side_encoding_round_trips():
    assert decode_side(encode_side(np.float32(37.0), np.float32(23.5)), np.float32(23.5)) == pytest.approx(37.0)


@pytest.mark.parametrize(
    "a,b,expected",
    [((0, 10), (0, 10), 1.0), ((0, 10), (10, 20), 0.0), ((0, 10), (5, 15), 5 / 15), ((0, 20), (5, 15), 0.5)],
)
def test_vertical_iou(a, b, expected):
    assert vertical_iou(*map(np.float32, (*a, *b))) == pytest.approx(expected)


def test_targets_mark_every_column_of_a_line_and_decode_back_to_it():
    line = np.array([[20, 40, 200, 70]], dtype=np.float32)
    t = make_targets(line, 10, 20)
    pos = np.argwhere(t.labels == 1)
    assert set(pos[:, 1]) == set(range(1, 13))  # columns 16..207 cover x 20..200
    _, cy, ha = anchor_grid(10, 20)
    dcy, dh = decode_vertical(t.vertical, cy, ha)
    for i, j, k in pos:
        assert dcy[i, j, k] == pytest.approx(55.0, abs=1e-3) and dh[i, j, k] == pytest.approx(30.0, abs=1e-3)
    assert (t.labels[:, 15:] == 0).all()  # far from the line: background
    assert t.side_mask[:, 1].any() and t.side_mask[:, 12].any() and not t.side_mask[:, 6].any()


def test_proposals_decode_fixed_width_boxes_on_the_grid():
    scores = np.zeros((2, 3, 10), np.float32)
    vertical = np.zeros((2, 3, 10, 2), np.float32)
    side = np.zeros((2, 3, 10), np.float32)
    boxes, sc, side_x = proposals(scores, vertical, side)
    assert boxes.shape == (60, 4) and sc.shape == (60,) and side_x.shape == (60,)
    widths = boxes[:, 2] - boxes[:, 0]
    assert np.allclose(widths, 15.0)
    assert set(boxes[:, 0].tolist()) == {0.0, 16.0, 32.0}


def test_a_box_and_its_quadrilateral_give_the_same_targets():
    box = np.array([[20, 40, 200, 70], [250, 100, 300, 150]], dtype=np.float32)
    quads = as_quads(box)
    assert quads.shape == (2, 4, 2)
    a, b = make_targets(box, 12, 20), make_targets(quads, 12, 20)
    for field in ("labels", "vertical", "side", "side_mask"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


def test_targets_follow_a_tilted_line_strip_by_strip():
    """A line rising 0.25 px per px: each 16 px column learns the quadrilateral's own extent there."""
    quad = np.array([[[16, 100], [208, 52], [208, 82], [16, 130]]], dtype=np.float32)
    t = make_targets(quad, 12, 16)
    _, cy, ha = anchor_grid(12, 16)
    dcy, dh = decode_vertical(t.vertical, cy, ha)
    centres = {}
    for i, j, k in np.argwhere(t.labels == 1):
        centres.setdefault(int(j), []).append(dcy[i, j, k])
        x_lo, x_hi = 16 * j, 16 * j + 16
        assert dh[i, j, k] == pytest.approx(30 + 0.25 * 16, abs=1e-2)  # thickness plus one column's rise
        assert dcy[i, j, k] == pytest.approx(115 - 0.25 * ((x_lo + x_hi) / 2 - 16), abs=1e-2)
    assert sorted(centres) == list(range(1, 13))
    assert np.all(np.diff([np.mean(centres[j]) for j in sorted(centres)]) < 0)  # climbing to the right


def test_clip_x_cuts_a_polygon_to_a_vertical_strip():
    poly = np.array([[0, 0], [10, 5], [10, 15], [0, 10]], dtype=np.float32)
    strip = clip_x(poly, 2, 4)
    assert strip[:, 0].min() == pytest.approx(2) and strip[:, 0].max() == pytest.approx(4)
    assert strip[:, 1].min() == pytest.approx(1) and strip[:, 1].max() == pytest.approx(12)
    assert len(clip_x(poly, 20, 30)) == 0


def test_a_small_line_between_two_anchor_rows_gives_its_twin_anchor_no_background_label_if_asked():
    """14 px text centred on the border of rows 0 and 1: both rows' anchors overlap it equally (IoU < 0.5)."""
    line = np.array([[16, 8.5, 96, 22.5]], dtype=np.float32)
    t = make_targets(line, 6, 8, tie_ratio=0.8)
    _, cy, ha = anchor_grid(6, 8)
    iou = vertical_iou(cy[:, 2] - ha[:, 2] / 2, cy[:, 2] + ha[:, 2] / 2, np.float32(8.5), np.float32(22.5))
    top = np.unravel_index(int(np.argmax(iou)), iou.shape)
    twin = (1 - top[0], top[1])
    assert iou[top] < 0.5 and iou[twin] == pytest.approx(iou[top])  # the same picture from either row
    assert t.labels[top[0], 2, top[1]] == 1
    assert t.labels[twin[0], 2, twin[1]] == -1  # the paper's rule: background for a twin of the text anchor
    assert (t.labels[4:, 2] == 0).all()  # anchors far below stay background
    paper = make_targets(line, 6, 8)  # the default: the paper's rule, as every shipped stage trained
    assert paper.labels[twin[0], 2, twin[1]] == 0
    changed = paper.labels != t.labels
    assert changed.any() and (paper.labels[changed] == 0).all() and (t.labels[changed] == -1).all()  # bg -> ignored
