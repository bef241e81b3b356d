"""The OCR answer as a searchable PDF (``?format=pdf``), as Tesseract's ``pdf`` output and OCRmyPDF write it.

The page as uploaded, with the words read laid over it as invisible text, so that a scan can be searched, selected
and copied from in any viewer.

Written by hand (a few objects; no PDF library writes text this way): one page per answer, the image filling it and
each word drawn in text render mode 3 (invisible) in Helvetica, one of the fonts every reader has, stretched along
its box (``Tz``) and sized to it, so that a selection covers the word it copies. A page read turned (``?rotate=``)
is shown turned, as it was read. The font's ``/Widths`` are given, so every reader lays the words out as here.
Characters past ASCII (only corrections could hold one; the recognizer reads ASCII) are written as ``?``.

A JPEG goes in as it came (no second loss) where a reader can show it so: upright (no EXIF turn), grey or RGB.
Any other lossy photo (HEIC, AVIF, WebP, a turned or CMYK JPEG) is encoded again as JPEG, and anything lossless
(PNG, TIFF, BMP, a PDF page rendered) is compressed losslessly (Flate), in grey where it has no colour.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from serve_app import __version__
from serve_app.imaging import PdfRenderer, decode_image

MEDIA_TYPE = "application/pdf"

#: Formats whose pixels were already lossy: encoded again as JPEG rather than kept losslessly at many times the size.
LOSSY = frozenset({"JPEG", "MPO", "HEIF", "AVIF", "WEBP"})
JPEG_QUALITY = 90
#: The resolution a page is laid out at when its file states none (or an implausible one: phones write 72).
DEFAULT_DPI = 300.0
_DPI_RANGE = (100.0, 2400.0)
#: Readers refuse pages past 200 inches a side (Acrobat's limit, 14,400 points): a long strip is laid out denser.
_MAX_SIDE_PT = 14_400.0

#: Helvetica's advance widths (thousandths of the font size) for ASCII 32-126, from Adobe's metrics.
HELVETICA_WIDTHS: tuple[int, ...] = (
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,  # space to /
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,  # 0-9 : ; < = > ?
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,  # @ A-O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,  # P-Z [ \ ] ^ _
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,  # ` a-o
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,  # p-z { | } ~
)
assert len(HELVETICA_WIDTHS) == 95
#: Helvetica's descent below the baseline, as a share of the font size: a word's box bottom is its descenders'.
_DESCENT = 0.207
#: The narrowest room drawn for the space after a word, as a share of the font size.
_SPACE = 0.3


@dataclass(frozen=True)
class PageImage:
    """The page's picture as a PDF image stream."""

    stream: bytes
    filter: str  # "DCTDecode" (JPEG) or "FlateDecode"
    width: int
    height: int
    grey: bool


def ascii_text(text: str) -> bytes:
    """``text`` in the font's encoding: printable ASCII, anything else as ``?``."""
    return bytes(ord(c) if 32 <= ord(c) < 127 else 63 for c in text)


def text_width(text: bytes) -> float:
    """The advance of ``text`` at a font size of 1."""
    return sum(HELVETICA_WIDTHS[b - 32] for b in text) / 1000


def _passes_as_is(upload: bytes, width: int, height: int) -> bool:
    """Whether the upload is a JPEG a reader shows as we read it: upright, grey or RGB, at the answer's size."""
    try:
        with Image.open(io.BytesIO(upload)) as im:
            return (im.format == "JPEG" and im.mode in ("L", "RGB") and im.size == (width, height)
                    and im.getexif().get(0x0112, 1) == 1)
    except Exception:  # noqa: BLE001 - not one Pillow opens (a PDF): encode the pixels instead
        return False


def page_image(upload: bytes, fmt: str, pixels: np.ndarray, width: int, height: int) -> PageImage:
    """The picture of the page: the JPEG uploaded where it passes as is, else ``pixels`` (RGB) encoded."""
    if fmt == "JPEG" and _passes_as_is(upload, width, height):
        with Image.open(io.BytesIO(upload)) as im:
            return PageImage(upload, "DCTDecode", width, height, im.mode == "L")
    grey = bool(np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 1], pixels[..., 2]))
    plane = np.ascontiguousarray(pixels[..., 0]) if grey else np.ascontiguousarray(pixels)
    h, w = pixels.shape[:2]
    if fmt in LOSSY:
        out = io.BytesIO()
        Image.fromarray(plane).save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
        return PageImage(out.getvalue(), "DCTDecode", w, h, grey)
    return PageImage(zlib.compress(plane.tobytes(), 6), "FlateDecode", w, h, grey)


def resolution(upload: bytes, answer: dict[str, Any]) -> float:
    """Pixels per inch to lay the page out at: a PDF page's rendering, else the file's own where plausible."""
    image = answer["image"]
    dpi = image.get("dpi")
    if not dpi:
        try:
            with Image.open(io.BytesIO(upload)) as im:
                x = float(im.info.get("dpi", (0, 0))[0])
        except Exception:  # noqa: BLE001 - no header Pillow reads: the default
            x = 0.0
        dpi = x if _DPI_RANGE[0] <= x <= _DPI_RANGE[1] else DEFAULT_DPI
    return max(float(dpi), 72 * max(image["width"], image["height"]) / _MAX_SIDE_PT)


def _num(v: float) -> str:
    return f"{v:.3f}".rstrip("0").rstrip(".") or "0"


def turned_box(box: list[float], rotation: int, width: int, height: int) -> list[float]:
    """A box in the upload's pixels (``width`` x ``height``), on the upload turned ``rotation`` degrees clockwise."""
    x0, y0, x1, y1 = box
    return {0: [x0, y0, x1, y1], 90: [height - y1, x0, height - y0, x1], 180: [width - x1, height - y1, width - x0,
            height - y0], 270: [y0, width - x1, y1, width - x0]}[rotation]


def picture_matrix(rotation: int, width: float, height: float) -> tuple[float, ...]:
    """Where the picture (the upload, ``width`` x ``height`` points) lies on a page turned ``rotation`` clockwise.

    PDF draws an image into the unit square, u to the right and v up from its bottom left corner.
    """
    w, h = width, height
    return {0: (w, 0, 0, h, 0, 0), 90: (0, -w, h, 0, 0, w), 180: (-w, 0, 0, -h, w, h),
            270: (0, w, -h, 0, h, 0)}[rotation]


def _word_ops(text: bytes, box: list[float], page_h: float, k: float) -> str:
    """Draw ``text`` invisibly over ``box`` (pixels of the page as read): sized to its height, stretched to its width.

    The baseline is the font's descent above the box's bottom, where a word's descenders end.
    """
    x0, y0, x1, y1 = (v * k for v in box)
    width, size = x1 - x0, y1 - y0
    if width <= 0 or size <= 0:
        return ""
    stretch = 100 * width / (text_width(text) * size)
    return (f"/F0 {_num(size)} Tf {_num(stretch)} Tz 1 0 0 1 {_num(x0)} {_num(page_h - y1 + _DESCENT * size)} Tm "
            f"<{text.hex()}> Tj\n")


def page_content(answer: dict[str, Any], k: float) -> tuple[bytes, float, float]:
    """The page's content stream and size in points: the picture, then every word, invisible, in reading order.

    The page is the upload turned as it was read (``image.rotation``): upright, so that it is shown and its words
    are copied the way they read (PDFium copied the words of a page left upside down in reverse order).

    Each word is drawn with a space after it, the two stretched together from the word's start to the next word's
    (at least a third of the font size past the word's end), so that readers copy the space: a space drawn on its
    own was dropped where the word before it was stretched (a lone ``:``), and the recognizer's words often abut.
    A line's last word is followed by a space too: readers join lines that share a row (a label and its price).
    """
    image = answer["image"]
    rotation = int(image.get("rotation") or 0) % 360
    width, height = image["width"], image["height"]
    page_w, page_h = (width * k, height * k) if rotation in (0, 180) else (height * k, width * k)
    cm = " ".join(_num(v) for v in picture_matrix(rotation, width * k, height * k))
    ops = [f"q {cm} cm /Im0 Do Q\nBT 3 Tr\n"]
    for line in answer["lines"]:
        words = [(w["text"].strip(), turned_box(w["box"], rotation, width, height)) for w in line["words"]
                 if w["text"].strip()]
        for (text, box), after in zip(words, [*words[1:], None]):
            reach = box[2] + _SPACE * (box[3] - box[1])
            if after is not None:
                reach = max(reach, after[1][0])
            ops.append(_word_ops(ascii_text(text) + b" ", [box[0], box[1], reach, box[3]], page_h, k))
    ops.append("ET\n")
    return "".join(ops).encode("ascii"), page_w, page_h


class _Writer:
    """Numbered objects, then the cross-reference table that lets a reader find them."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.out.write(b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n")
        self.offsets: list[int] = []

    def reserve(self) -> int:
        self.offsets.append(0)
        return len(self.offsets)

    def put(self, num: int, body: bytes, stream: bytes | None = None) -> None:
        self.offsets[num - 1] = self.out.tell()
        self.out.write(f"{num} 0 obj\n".encode() + body)
        if stream is not None:
            self.out.write(b"\nstream\n" + stream + b"\nendstream")
        self.out.write(b"\nendobj\n")

    def finish(self, root: int, info: int) -> bytes:
        xref = self.out.tell()
        self.out.write(f"xref\n0 {len(self.offsets) + 1}\n0000000000 65535 f \n".encode())
        self.out.write("".join(f"{o:010d} 00000 n \n" for o in self.offsets).encode())
        self.out.write(f"trailer\n<< /Size {len(self.offsets) + 1} /Root {root} 0 R /Info {info} 0 R >>\n"
                       f"startxref\n{xref}\n%%EOF\n".encode())
        return self.out.getvalue()


def document(pages: list[tuple[dict[str, Any], PageImage, float]], title: str = "") -> bytes:
    """A PDF with one page per ``(answer, picture, dpi)``: the picture at the answer's size, its words over it."""
    w = _Writer()
    catalog, tree, font, info = w.reserve(), w.reserve(), w.reserve(), w.reserve()
    kids = []
    for answer, picture, dpi in pages:
        ops, page_w, page_h = page_content(answer, 72 / dpi)
        page, content, image = w.reserve(), w.reserve(), w.reserve()
        kids.append(page)
        w.put(page, f"<< /Type /Page /Parent {tree} 0 R /MediaBox [0 0 {_num(page_w)} {_num(page_h)}] "
                    f"/Resources << /XObject << /Im0 {image} 0 R >> /Font << /F0 {font} 0 R >> >> "
                    f"/Contents {content} 0 R >>".encode())
        ops = zlib.compress(ops, 6)
        w.put(content, f"<< /Length {len(ops)} /Filter /FlateDecode >>".encode(), ops)
        space = "/DeviceGray" if picture.grey else "/DeviceRGB"
        w.put(image, f"<< /Type /XObject /Subtype /Image /Width {picture.width} /Height {picture.height} "
                     f"/ColorSpace {space} /BitsPerComponent 8 /Filter /{picture.filter} "
                     f"/Length {len(picture.stream)} >>".encode(), picture.stream)
    w.put(catalog, f"<< /Type /Catalog /Pages {tree} 0 R >>".encode())
    w.put(tree, f"<< /Type /Pages /Kids [{' '.join(f'{p} 0 R' for p in kids)}] /Count {len(kids)} >>".encode())
    widths = " ".join(map(str, HELVETICA_WIDTHS))
    w.put(font, f"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding "
                f"/FirstChar 32 /LastChar 126 /Widths [{widths}] >>".encode())
    w.put(info, f"<< /Producer <{('show-off-ocr ' + __version__).encode().hex()}> "
                f"/Title <{ascii_text(title).hex()}> >>".encode())
    return w.finish(catalog, info)


def to_pdf(answer: dict[str, Any], upload: bytes, pixels: np.ndarray) -> bytes:
    """The answer to one request as a one-page searchable PDF (``?format=pdf``).

    ``upload`` is the file as sent, ``pixels`` the page as decoded (upright RGB; smaller than the answer's size
    where a large JPEG was decoded reduced: stretched back over the page).
    """
    image = answer["image"]
    picture = page_image(upload, image["format"], pixels, image["width"], image["height"])
    return document([(answer, picture, resolution(upload, answer))], title=answer["request_id"])


def from_upload(answers: list[dict[str, Any]], upload: bytes, title: str = "", max_pixels: int = 2**62,
                render_pdf: PdfRenderer | None = None) -> bytes:
    """The pages of one upload, one answer each, as one searchable PDF (``serve_app.client --pdf``, a stored image).

    Each page is decoded here again from the file (a PDF page rendered at the resolution the answer was read at),
    so that the service sends each page's answer once, as JSON.
    """
    pages = []
    for answer in answers:
        image = answer["image"]
        decoded = decode_image(upload, len(upload), max_pixels, None, image.get("page", 1), image.get("dpi") or 200,
                               render_pdf)
        if decoded.dpi and not image.get("dpi"):  # a stored answer keeps its pixels, not the resolution of them
            answer = {**answer, "image": {**image, "dpi": decoded.dpi * image["width"] / decoded.width}}
        picture = page_image(upload, image["format"], decoded.pixels, image["width"], image["height"])
        pages.append((answer, picture, resolution(upload, answer)))
    return document(pages, title=title)


def as_corrected(answer: dict[str, Any], lines: list[str]) -> dict[str, Any]:
    """``answer`` with each line whose text ``lines`` changes laid over its box as one run of the corrected text.

    A correction says a line's text, not where its words are. A whole-image correction with another number of
    lines than were read cannot be placed: the words stay as read.
    """
    if len(lines) != len(answer["lines"]):
        return answer
    out = []
    for line, text in zip(answer["lines"], lines, strict=True):
        if text != line["text"]:
            line = {**line, "words": [{"text": text, "box": line["box"], "confidence": 1.0}]}
        out.append(line)
    return {**answer, "lines": out}
