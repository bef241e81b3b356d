r"""The OCR answer as Tesseract's TSV (``?format=tsv``): one row per page, block, paragraph, line and word.

It is what ``pytesseract.image_to_data`` parses and what pipelines built on it read, a table to load with
``pandas.read_csv(..., sep="\t", quoting=csv.QUOTE_NONE)``: ``level`` (1 page, 2 block, 3 paragraph, 4 line,
5 word), the numbers that place a row in its page, block, paragraph and line, its box as ``left top width height``
in the upload's pixels, and for a word its ``conf`` (0-100; -1 on the other levels) and ``text``. Blocks are
`serve_app.layout`'s, each one paragraph, numbered as Tesseract numbers them: lines from 1 in each paragraph, words
from 1 in each line. A tab or line break in a corrected line (stored data) becomes a space: the format has no
quoting.
"""

from __future__ import annotations

from typing import Any

from serve_app.layout import enclosing, grouped_lines

MEDIA_TYPE = "text/tab-separated-values; charset=utf-8"
COLUMNS = ("level", "page_num", "block_num", "par_num", "line_num", "word_num", "left", "top", "width", "height",
           "conf", "text")
_NOT_IN_A_CELL = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


def _row(level: int, place: tuple[int, int, int, int, int], box: list[float], conf: float | None = None,
         text: str = "") -> str:
    x0, y0, x1, y1 = (round(v) for v in box)
    score = "-1" if conf is None else f"{100 * min(max(conf, 0.0), 1.0):.6f}"
    return "\t".join(map(str, (level, *place, x0, y0, x1 - x0, y1 - y0, score, text.translate(_NOT_IN_A_CELL))))


def page_rows(answer: dict[str, Any]) -> list[str]:
    """The rows of one page: ``answer`` is the JSON body of ``POST /api/v1/ocr`` or stored data."""
    image = answer["image"]
    n = image.get("page", 1)
    rows = [_row(1, (n, 0, 0, 0, 0), [0, 0, image["width"], image["height"]])]
    for b, group in enumerate(grouped_lines(answer)):
        lines = [line for _, line in group if line["words"]]
        if not lines:
            continue
        box = enclosing([line["box"] for line in lines])
        rows += [_row(2, (n, b + 1, 0, 0, 0), box), _row(3, (n, b + 1, 1, 0, 0), box)]
        for i, line in enumerate(lines, 1):
            rows.append(_row(4, (n, b + 1, 1, i, 0), line["box"]))
            rows += [_row(5, (n, b + 1, 1, i, j), w["box"], w["confidence"], w["text"])
                     for j, w in enumerate(line["words"], 1)]
    return rows


def document(answers: list[dict[str, Any]]) -> str:
    """One table for the pages of one upload, in order, under one header row."""
    return "\n".join(["\t".join(COLUMNS), *(row for answer in answers for row in page_rows(answer))]) + "\n"


def to_tsv(answer: dict[str, Any]) -> str:
    """The answer to one request, as the service writes it for ``?format=tsv``."""
    return document([answer])
