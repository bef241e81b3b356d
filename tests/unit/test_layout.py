"""Blocks of text from line boxes in reading order: paragraphs, columns, headings, a receipt's rows."""

import textwrap

import numpy as np
import pytest
from PIL import Image, ImageDraw

from serve_app.layout import line_blocks, plain_text, text_blocks, turned_box, with_blocks
from serve_app.ocr.predictor import DetectorRunner, OCRPredictor, RecognizerRunner
from training.synth import default_font, font_at


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


def indented(rows: list[tuple[float, float]], height: float = 30, pitch: float = 45) -> list[list[float]]:
    """Single lines, one per row, from their (left, right) edges: single-spaced, no space between paragraphs."""
    return [[x0, i * pitch, x1, i * pitch + height] for i, (x0, x1) in enumerate(rows)]


def test_in_prose_without_space_between_paragraphs_an_indented_first_line_starts_one():
    first, body, last = (97, 1000), (59, 1010), (59, 700)  # indented 1.3 heights; a paragraph's short last line
    page = indented([first, body, last, first, body, body, last, first, body, last])
    assert text_blocks(page) == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    wobbly = indented([(86, 750), (59, 760), (46, 520), (86, 760), (59, 755), (59, 500)], height=22, pitch=33)
    assert text_blocks(wobbly) == [0, 0, 0, 1, 1, 1]  # a left edge the detector put 0.6 heights out
    two_line = indented([first, last, first, last, first, last])  # as many indented lines as lines at the margin
    assert text_blocks(two_line) == [0, 0, 1, 1, 2, 2]
    # a 9 pt PDF page's paragraphs of two lines as the detector found them: one margin line put 1.1 heights out
    # left the indented lines the largest group of left edges; the margin is the leftmost edge a third share
    pdf = indented([(129, 1152), (105, 807), (127, 1233), (97, 881), (127, 1186), (99, 557), (125, 1153), (97, 806),
                    (128, 1233), (71, 883), (124, 1187), (101, 557)], height=23.5, pitch=35)
    assert text_blocks(pdf) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_an_indent_that_is_no_paragraph_starts_nothing():
    hanging = indented([(59, 1000), (98, 1010), (98, 700), (59, 1000), (97, 1010), (96, 720)])  # list items
    assert text_blocks(hanging) == [0] * 6
    numbered = indented([(18, 82), (18, 129), (12, 160), (35, 101), (18, 137), (18, 125), (35, 110), (16, 113)],
                        height=10, pitch=17)  # "6. Transformers: Revenge / of the Fallen": short second lines
    assert text_blocks(numbered) == [0] * 8
    small_print = indented([(86, 543), (84, 542), (73, 542), (118, 498), (69, 551), (135, 476), (137, 493)])
    assert text_blocks(small_print) == [0] * 7  # centred lines, each between its neighbours
    cash = indented([(20, 400), (20, 410), (60, 410), (20, 400), (20, 405)])  # one indented line: no habit of it
    assert text_blocks(cash) == [0] * 5
    item_and_price = [[20, 0, 200, 30], [320, 0, 400, 30], [60, 45, 400, 75], [20, 90, 400, 120],
                      [60, 135, 400, 165], [20, 180, 400, 210]]  # rows of two lines are not prose
    assert text_blocks(item_and_price) == [0] * 6


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


def test_a_rendered_page_of_indented_paragraphs_reads_as_its_paragraphs():
    """The shipped models' line boxes, not made-up ones: their left edges must carry the indent."""
    paragraphs = ["The committee met on Tuesday to review the budget for the coming year and agreed that the library "
                  "should keep its opening hours through the winter months.",
                  "Several members asked whether the reading room could be heated more cheaply, and the treasurer "
                  "promised a report on the cost of new windows before the next meeting.",
                  "Finally the chair thanked the volunteers who had catalogued the donated books."]
    font = font_at(default_font(), 30)
    rows = [(60 + (font.getlength("    ") if i == 0 else 0), text)
            for para in paragraphs for i, text in enumerate(textwrap.wrap(para, 62))]
    page = Image.new("RGB", (1300, 80 + 45 * len(rows)), "white")
    draw = ImageDraw.Draw(page)
    for k, (x, text) in enumerate(rows):
        draw.text((x, 40 + 45 * k), text, font=font, fill="black")
    results = OCRPredictor(DetectorRunner(), RecognizerRunner())(np.asarray(page))
    assert len(results) == len(rows) == 8
    text = plain_text([r.text for r in results], text_blocks([r.box for r in results]))
    assert [len(p.splitlines()) for p in text.split("\n\n")] == [len(textwrap.wrap(p, 62)) for p in paragraphs]
