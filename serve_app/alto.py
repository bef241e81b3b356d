"""The OCR answer as ALTO 4.4 XML (``?format=alto``): the layout format of library and archive digitisation.

ALTO (Analyzed Layout and Text Object, maintained at the Library of Congress) holds a page's words with their
boxes and confidences beside a METS record in newspaper and book archives; Tesseract writes it (``tesseract page.png
out alto``), and digitisation tools import it. One ``Page`` per answer, in the upload's own pixels
(``MeasurementUnit`` pixel), holding a ``PrintSpace`` with a ``TextBlock`` per block of text (`serve_app.layout`: a
paragraph, a column's run of lines, a heading) whose ``TextLine`` elements come in reading order, each with its
``String`` elements (``WC``: the word's confidence, 0-1) and an ``SP`` between two of them. A line whose answer has
a polygon carries it as its ``Shape``, so a tilted line keeps its slant. A page read turned (``?rotate=``) carries
the turn as each block's ``ROTATION`` (degrees counter-clockwise, as hOCR's ``textangle``): the boxes stay where
the text is in the upload. A line a user corrected (stored data) is one ``String`` of the corrected text over the
line, marked ``CS="true"``.

The element order and attribute types follow the ALTO 4.4 schema (``alto-4-4.xsd``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from serve_app import __version__
from serve_app.layout import enclosing, grouped_lines
from serve_app.markup import xml_safe

NS = "http://www.loc.gov/standards/alto/ns-v4#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA = "http://www.loc.gov/alto/v4/alto-4-4.xsd"
MEDIA_TYPE = "application/xml"


def _el(parent: ET.Element, tag: str, text: str | None = None, /, **attrs: Any) -> ET.Element:
    el = ET.SubElement(parent, f"{{{NS}}}{tag}",
                       {k: xml_safe(str(v)) for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = xml_safe(text)
    return el


def _geometry(box: list[float]) -> dict[str, int]:
    x0, y0, x1, y1 = (round(v) for v in box)
    return {"HPOS": x0, "VPOS": y0, "WIDTH": x1 - x0, "HEIGHT": y1 - y0}


def _points(poly: list[list[float]]) -> str:
    return " ".join(f"{round(x)},{round(y)}" for x, y in poly)


def _page(layout: ET.Element, answer: dict[str, Any]) -> None:
    image = answer["image"]
    n = image.get("page", 1)
    page = _el(layout, "Page", ID=f"page_{n}", PHYSICAL_IMG_NR=n, WIDTH=image["width"], HEIGHT=image["height"],
               PROCESSING="ocr")
    space = _el(page, "PrintSpace", HPOS=0, VPOS=0, WIDTH=image["width"], HEIGHT=image["height"])
    for b, group in enumerate(grouped_lines(answer)):
        lines = [(i, line) for i, line in group if line["words"]]  # a TextLine holds one String or more
        if lines:
            block = _el(space, "TextBlock", ID=f"block_{n}_{b + 1}",
                        **_geometry(enclosing([line["box"] for _, line in lines])),
                        ROTATION=image.get("rotation") or None)
            for i, line in lines:
                _line(block, line, f"{n}_{i}")


def _line(block: ET.Element, line: dict[str, Any], at: str) -> None:
    text_line = _el(block, "TextLine", ID=f"line_{at}", **_geometry(line["box"]),
                    CS="true" if line.get("corrected") else None)
    if line.get("poly"):
        _el(_el(text_line, "Shape"), "Polygon", POINTS=_points(line["poly"]))
    for j, word in enumerate(line["words"], 1):
        if j > 1:
            gap_from, gap_to = round(line["words"][j - 2]["box"][2]), round(word["box"][0])
            _el(text_line, "SP", HPOS=gap_from, VPOS=round(line["box"][1]), WIDTH=max(0, gap_to - gap_from))
        _el(text_line, "String", ID=f"string_{at}_{j}", CONTENT=word["text"], **_geometry(word["box"]),
            WC=f"{min(max(word['confidence'], 0.0), 1.0):.4g}")


def document(answers: list[dict[str, Any]], image_name: str | None = None) -> str:
    """An ALTO document with one ``Page`` per answer (the pages of one upload, in order).

    ``answers`` are JSON bodies of ``POST /api/v1/ocr`` (`serve_app.schemas.OCRResponse`) or stored data; the first
    one's ``models`` and ``created`` time describe the processing.
    """
    ET.register_namespace("", NS)
    ET.register_namespace("xsi", XSI)
    root = ET.Element(f"{{{NS}}}alto", {f"{{{XSI}}}schemaLocation": f"{NS} {SCHEMA}", "SCHEMAVERSION": "4.4"})
    description = _el(root, "Description")
    _el(description, "MeasurementUnit", "pixel")
    if image_name:
        _el(_el(description, "sourceImageInformation"), "fileName", image_name)
    processing = _el(description, "Processing", ID="ocr")
    _el(processing, "processingCategory", "contentGeneration")
    created = answers[0].get("created") if answers else None
    _el(processing, "processingDateTime", created or datetime.now(UTC).isoformat(timespec="seconds"))
    models = answers[0].get("models") if answers else None
    if models:
        _el(processing, "processingStepSettings", "; ".join(f"{k}: {v}" for k, v in sorted(models.items())))
    software = _el(processing, "processingSoftware")
    _el(software, "softwareName", "show-off-ocr")
    _el(software, "softwareVersion", __version__)
    layout = _el(root, "Layout")
    for answer in answers:
        _page(layout, answer)
    ET.indent(root, space=" ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def to_alto(answer: dict[str, Any]) -> str:
    """The answer to one request, as the service writes it for ``?format=alto``."""
    return document([answer])
