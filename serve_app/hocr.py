"""The OCR answer as hOCR 1.2 (``?format=hocr``), so that our answers can take Tesseract's place.

hOCR is the layout format Tesseract writes and tools such as OCRmyPDF read to lay a text layer over a scan.

One ``ocr_page`` in the upload's own pixels, holding an ``ocr_carea`` and its ``ocr_par`` per block of text
(`serve_app.layout`: a paragraph, a column's run of lines, a heading; OCRmyPDF reads lines only inside a
paragraph) with the block's ``ocr_line`` elements in reading order, each with its ``ocrx_word`` elements.
Confidences become ``x_wconf`` (0-100). A page read turned (``?rotate=``) carries the turn as each line's
``textangle`` (degrees counter-clockwise, as Tesseract writes it): the boxes stay where the text is in the upload.
A PDF page carries the resolution it was rendered at as ``scan_res``. A line that slopes (as the recognizer levels
it, `pipeline.is_tilted`) on a page read upright carries its ``baseline`` (slope, and offset from the box's bottom
left corner), as Tesseract writes it: OCRmyPDF lays such a line's text along it.
"""

from __future__ import annotations

from html import escape
from typing import Any

from serve_app import __version__
from serve_app.layout import enclosing, grouped_lines
from serve_app.markup import xml_safe
from serve_app.ocr.pipeline import is_tilted

MEDIA_TYPE = "text/html; charset=utf-8"
#: Where a line's baseline lies above the bottom of its box, as a share of its height: its descenders (Tesseract's
#: lines of a receipt put it a fifth of the way up).
BASELINE_LIFT = 0.2

_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
    "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
 <head>
  <title>{title}</title>
  <meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>
  <meta name="ocr-system" content="show-off-ocr {version}"/>
  <meta name="ocr-capabilities" content="ocr_page ocr_carea ocr_par ocr_line ocrx_word"/>
  <meta name="ocr-number-of-pages" content="{pages}"/>
 </head>
 <body>
"""


def _bbox(box: list[float]) -> str:
    x0, y0, x1, y1 = (round(v) for v in box)
    return f"bbox {x0} {y0} {x1} {y1}"


def _conf(confidence: float) -> str:
    return f"x_wconf {round(100 * confidence)}"


def baseline(line: dict[str, Any]) -> str:
    """``; baseline slope offset`` for a line that slopes, read upright; else nothing.

    The baseline as hOCR gives it: y = slope x + offset, from the bottom left corner of the line's box, in pixels
    (y downwards). Ours is the line's bottom edge raised by its descenders (`BASELINE_LIFT`).
    """
    poly = tuple((x, y) for x, y in line.get("poly") or [])
    if not is_tilted(poly):
        return ""
    (_, tly), (_, try_), (brx, bry), (blx, bly) = poly
    if brx <= blx:
        return ""
    slope = (bry - bly) / (brx - blx)
    x0, y1 = line["box"][0], line["box"][3]
    height = ((bly - tly) + (bry - try_)) / 2
    offset = bly + slope * (x0 - blx) - BASELINE_LIFT * height - y1
    return f"; baseline {slope:.3f} {offset:.0f}"


def page_div(answer: dict[str, Any], image_name: str | None = None) -> str:
    """One ``ocr_page``: ``answer`` is the JSON body of ``POST /api/v1/ocr`` (``serve_app.schemas.OCRResponse``)."""
    image = answer["image"]
    n = image.get("page", 1)
    page = [_bbox([0, 0, image["width"], image["height"]]), f"ppageno {n - 1}"]  # the upload's, turned or not
    if image_name:
        page.insert(0, 'image "{}"'.format(xml_safe(image_name).replace('"', "'")))  # a quote would end it
    if image.get("dpi"):
        page.append(f"scan_res {round(image['dpi'])} {round(image['dpi'])}")
    turn = f"; textangle {image['rotation']}" if image.get("rotation") else ""
    out = [f'  <div class="ocr_page" id="page_{n}" title="{escape("; ".join(page))}">\n']
    for b, lines in enumerate(grouped_lines(answer)):
        block = _bbox(enclosing([line["box"] for _, line in lines]))
        out.append(f'   <div class="ocr_carea" id="block_{n}_{b + 1}" title="{block}">\n'
                   f'    <p class="ocr_par" id="par_{n}_{b + 1}" title="{block}">\n')
        for i, line in lines:
            slope = "" if turn else baseline(line)  # a turned page's lines run along the turn: theirs is not said
            out.append(f'     <span class="ocr_line" id="line_{n}_{i}" title="{_bbox(line["box"])}{turn}{slope}; '
                       f'{_conf(line["confidence"])}">')
            words = [f'<span class="ocrx_word" id="word_{n}_{i}_{j}" title="{_bbox(w["box"])}; '
                     f'{_conf(w["confidence"])}">{escape(xml_safe(w["text"]), quote=False)}</span>'
                     for j, w in enumerate(line["words"], 1)]
            out.append(" ".join(words) + "</span>\n")
        out.append("    </p>\n   </div>\n")
    out.append("  </div>\n")
    return "".join(out)


def document(answers: list[dict[str, Any]], title: str | None = None, image_name: str | None = None) -> str:
    """An hOCR document with one page per answer (the pages of one upload, in order)."""
    head = _HEAD.format(title=escape(xml_safe(title or answers[0]["request_id"])), version=__version__,
                        pages=len(answers))
    return head + "".join(page_div(a, image_name) for a in answers) + " </body>\n</html>\n"


def to_hocr(answer: dict[str, Any]) -> str:
    """The answer to one request, as the service writes it for ``?format=hocr``."""
    return document([answer])
