"""Blocks of text from line boxes in reading order: paragraphs, columns, headings, a receipt's rows."""

import pytest

from serve_app.layout import line_blocks, plain_text, text_blocks, turned_box, with_blocks


def lines_at(x0: float, x1: float, tops: list[float], height: float = 20) -> list[list[float]]:
    return [[x0, t, x1, t + height] for t in tops]


def test_a_paragraph_break_is_a_gap_clearly_wider_than_the_pages_usual_one():
    boxes = lines_at(10, 400, [0, 28, 56, 110, 138])  # 0.4 heights apart, then 1.7
    assert text_blocks(boxes) == [0, 0, 0, 1, 1]
    assert text_blocks(lines_at(10, 400, [0, 46, 92, 138])) == [0, 0, 0, 0]  # double-spaced: 1.3 apart, every row
    assert text_blocks(lines_at(10, 400, [0, 46, 92, 170, 216])) == [0, 0, 0, 1, 1]  # 2.9: a break even there
    assert text_blocks(lines_at(10, 400, [0, 100])) == [0, 1]  # a sign's name and, far below, its small print


def test_a_receipts_items_and_prices_share_rows_and_the_rows_one_block():
    boxes = [[10, 0, 120, 20], [200, 1, 260, 21], [10, 26, 140, 46], [210, 26, 260, 46], [10, 52, 90, 72]]
    assert text_blocks(boxes) == [0, 0, 0, 0, 0]


def test_each_column_in_reading_order_is_its_own_block():
    left, right = lines_at(10, 300, [0, 28, 56]), lines_at(340, 640, [0, 28, 56])
    assert text_blocks(left + right) == [0, 0, 0, 1, 1, 1]


def test_a_heading_over_its_text_is_a_block_of_its_own():
    boxes = [[10, 0, 500, 40], *lines_at(10, 400, [48, 76, 104])]  # twice as tall, then body text just below
    assert text_blocks(boxes) == [0, 1, 1, 1]


def test_a_row_that_does_not_overlap_the_one_above_sideways_starts_a_block():
    boxes = [[0, 0, 100, 20], [300, 26, 400, 46], [310, 52, 390, 72]]  # a sign's word, then a label elsewhere
    assert text_blocks(boxes) == [0, 1, 1]


def test_nothing_to_group():
    assert text_blocks([]) == []
    assert text_blocks([[5, 5, 50, 20]]) == [0]


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_a_page_read_turned_is_grouped_as_read(rotation):
    width, height = 640, 200  # the page as read
    upright = lines_at(10, 300, [0, 28, 120]) + lines_at(340, 640, [0, 28])
    back = (360 - rotation) % 360  # from the page as read to the upload as it lies
    upload = (width, height) if rotation in (0, 180) else (height, width)
    answer = {"image": {"width": upload[0], "height": upload[1], "rotation": rotation},
              "lines": [{"box": turned_box(b, back, width, height), "text": "x"} for b in upright]}
    assert line_blocks(answer) == [0, 0, 1, 2, 2]
    assert [ln["block"] for ln in with_blocks(answer)["lines"]] == [0, 0, 1, 2, 2]


def two_columns() -> dict:
    """An answer on a page in two columns of two lines each, in reading order: each column a block."""
    def line(box: list[float], text: str) -> dict:
        return {"box": box, "poly": [[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]],
                "text": text, "confidence": 0.9, "words": [{"box": box, "text": text, "confidence": 0.9}]}
    return {"request_id": "r2", "image": {"width": 660, "height": 100, "format": "PNG", "page": 1, "pages": 1,
                                          "dpi": None, "rotation": 0},
            "lines": [line([10, 0, 300, 20], "Left1"), line([10, 28, 300, 48], "Left2"),
                      line([340, 0, 640, 20], "Right1"), line([340, 28, 640, 48], "Right2")],
            "text": "Left1\nLeft2\nRight1\nRight2", "models": {"detector": "d", "recognizer": "r"}}


def test_plain_text_puts_a_blank_line_between_blocks_as_tesseract_does():
    body = two_columns()
    assert plain_text([ln["text"] for ln in body["lines"]], line_blocks(body)) == "Left1\nLeft2\n\nRight1\nRight2\n"
    assert plain_text(["a", "b"], None) == "a\nb\n"  # a correction of the whole text, other lines than were read
    assert plain_text([], []) == ""
