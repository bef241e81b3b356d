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
(PNG, TIFF, BMP) is compressed losslessly (Flate), in grey where it has no colour; the file's colour profile goes
with it. An uploaded PDF keeps its own pages, with the words laid over them by PDFium (`over_pdf`).
"""

from __future__ import annotations

import ctypes
import io
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from serve_app import __version__
from serve_app.imaging import decode_image
from serve_app.layout import Point, turn, turned_box
from serve_app.ocr.pipeline import is_tilted

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
    icc: bytes | None = None  # the colour profile the pixels are in (a phone's Display P3, say), where the file had one


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


def colour_profile(upload: bytes, grey: bool) -> bytes | None:
    """The upload's ICC profile where it fits the picture's channels (RGB or grey), for viewers to show its colours.

    The service decodes without colour management, so the pixels are still in the profile's space (an iPhone's
    Display P3, say): without it a viewer takes them for plain device RGB and shows them duller.
    """
    try:
        with Image.open(io.BytesIO(upload)) as im:
            icc = im.info.get("icc_profile")
    except Exception:  # noqa: BLE001 - no header Pillow reads (a PDF): none
        return None
    if not isinstance(icc, bytes) or len(icc) < 128:
        return None
    return icc if icc[16:20] == (b"GRAY" if grey else b"RGB ") else None


def page_image(upload: bytes, fmt: str, pixels: np.ndarray, width: int, height: int) -> PageImage:
    """The picture of the page: the JPEG uploaded where it passes as is, else ``pixels`` (RGB) encoded."""
    if fmt == "JPEG" and _passes_as_is(upload, width, height):
        with Image.open(io.BytesIO(upload)) as im:
            grey = im.mode == "L"
        return PageImage(upload, "DCTDecode", width, height, grey, colour_profile(upload, grey))
    grey = bool(np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 1], pixels[..., 2]))
    plane = np.ascontiguousarray(pixels[..., 0]) if grey else np.ascontiguousarray(pixels)
    h, w = pixels.shape[:2]
    icc = colour_profile(upload, grey)
    if fmt in LOSSY:
        out = io.BytesIO()
        Image.fromarray(plane).save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
        return PageImage(out.getvalue(), "DCTDecode", w, h, grey, icc)
    return PageImage(zlib.compress(plane.tobytes(), 6), "FlateDecode", w, h, grey, icc)


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


#: An affine map (a, b, c, d, e, f): (x, y) -> (a x + c y + e, b x + d y + f), as PDF writes matrices.
Affine = tuple[float, float, float, float, float, float]
#: A word and the space after it, and where it lies in the upload's pixels: its baseline's start and end, and the
#: point one font size above the start (the text's "up", wherever the text runs).
Run = tuple[bytes, Point, Point, Point]


def word_runs(answer: dict[str, Any]) -> list[Run]:
    """Every word of the answer, in reading order, as it is drawn: with the space after it.

    The word and its space are stretched together from the word's start to the next word's, and at least a third
    of the font size past its end. Readers copy a space drawn so: a space drawn on its own was dropped where the
    word before it was stretched (a lone ``:``), and the recognizer's words often abut. A line's last word is
    followed by a space too: readers join lines that share a row (a label and its price). The font size is the
    word box's height on the page as read; the baseline lies the font's descent above its bottom.
    """
    image = answer["image"]
    width, height = image["width"], image["height"]
    rotation = int(image.get("rotation") or 0) % 360
    read = (width, height) if rotation in (0, 180) else (height, width)  # the upload's size turned as read
    back = turn((360 - rotation) % 360, *read)  # from the page as read to the upload as it lies
    runs = []
    for line in answer["lines"]:
        words = [(w["text"].strip(), turned_box(w["box"], rotation, width, height)) for w in line["words"]
                 if w["text"].strip()]
        tilted = _tilted_baseline(line, rotation, width, height)
        for (text, box), after in zip(words, [*words[1:], None]):
            size = box[3] - box[1] if tilted is None else tilted[1]
            reach = box[2] + _SPACE * size
            if after is not None:
                reach = max(reach, after[1][0])
            if reach <= box[0] or size <= 0:
                continue
            if tilted is None:
                base = box[3] - _DESCENT * size
                start, end, up = (box[0], base), (reach, base), (box[0], base - size)
            else:
                start, end, up = tilted[0](box[0]), tilted[0](reach), tilted[0](box[0], size)
            runs.append((ascii_text(text) + b" ", back(*start), back(*end), back(*up)))
    return runs


def _tilted_baseline(line: dict[str, Any], rotation: int, width: int,
                     height: int) -> tuple[Callable[..., Point], float] | None:
    """A line sloping as the recognizer levels it (`pipeline.is_tilted`): its baseline, and its height across it.

    ``at(x)``: the baseline's point at an x of the page as read; ``at(x, h)``: ``h`` above it, across the line. Its
    words are drawn along the slope, at that height: laid flat over their upright boxes, a selection cut across
    the words of a photographed sign or a tilted receipt, each as tall as the slope made its box. None: flat.
    """
    if "poly" not in line:
        return None
    at = turn(rotation, width, height)
    poly = tuple(at(x, y) for x, y in line["poly"])  # from the text's top left, clockwise, as read
    if not is_tilted(poly):
        return None
    (tlx, tly), (trx, try_), (brx, bry), (blx, bly) = poly
    dx, dy = (brx - blx) + (trx - tlx), (bry - bly) + (try_ - tly)  # along the line: both edges' way
    length = math.hypot(dx, dy)
    if dx <= 0 or length == 0:
        return None
    ux, uy = dx / length, dy / length
    nx, ny = uy, -ux  # across it, towards the top of the text (y grows downwards)
    size = ((tlx - blx) * nx + (tly - bly) * ny + (trx - brx) * nx + (try_ - bry) * ny) / 2
    if size <= 0:
        return None
    lift = _DESCENT * size  # the baseline above the bottom edge, by the font's descent

    def along(x: float, h: float = 0.0) -> Point:
        s = (x - blx) / ux
        return blx + s * ux + (lift + h) * nx, bly + s * uy + (lift + h) * ny

    return along, size


def _apply(m: Affine, p: Point) -> Point:
    a, b, c, d, e, f = m
    return a * p[0] + c * p[1] + e, b * p[0] + d * p[1] + f


def _affine(at: Callable[[float, float], Point], width: float, height: float) -> Affine:
    """The affine map that ``at`` is, from where it takes three corners of a ``width`` x ``height`` rectangle."""
    (ox, oy), (rx, ry), (dx, dy) = at(0, 0), at(width, 0), at(0, height)
    return (rx - ox) / width, (ry - oy) / width, (dx - ox) / height, (dy - oy) / height, ox, oy


def text_matrix(run: Run, to_page: Affine) -> Affine:
    """The text matrix that lays ``run`` (drawn at a font size of 1) over its place, mapped by ``to_page``."""
    text, start, end, up = run
    (px, py), (qx, qy), (vx, vy) = (_apply(to_page, p) for p in (start, end, up))
    advance = text_width(text)
    return (qx - px) / advance, (qy - py) / advance, vx - px, vy - py, px, py


def picture_page(answer: dict[str, Any], k: float) -> tuple[Affine, Affine, float, float]:
    """How the upload lies on its page, turned as it was read (``image.rotation``), at ``k`` points per pixel.

    Upright, so that it is shown and its words copied the way they read (PDFium copied the words of a page left
    upside down in reverse order). Gives the picture's matrix (PDF draws an image into the unit square, from its
    bottom left), the map from the upload's pixels to the page, and the page's size in points.
    """
    image = answer["image"]
    rotation = int(image.get("rotation") or 0) % 360
    w, h = image["width"], image["height"]
    page_w, page_h = (w * k, h * k) if rotation in (0, 180) else (h * k, w * k)
    turned = turn(rotation, w, h)

    def to_page(x: float, y: float) -> Point:
        tx, ty = turned(x, y)
        return tx * k, page_h - ty * k

    return _affine(lambda u, v: to_page(u * w, (1 - v) * h), 1, 1), _affine(to_page, w, h), page_w, page_h


def page_content(answer: dict[str, Any], k: float) -> tuple[bytes, float, float]:
    """The page's content stream and size in points: the picture, then every word, invisible, in reading order."""
    picture, to_page, page_w, page_h = picture_page(answer, k)
    ops = [f"q {' '.join(map(_num, picture))} cm /Im0 Do Q\nBT 3 Tr /F0 1 Tf\n"]
    for run in word_runs(answer):
        ops.append(f"{' '.join(map(_num, text_matrix(run, to_page)))} Tm <{run[0].hex()}> Tj\n")
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
        if picture.icc:
            profile = w.reserve()
            icc = zlib.compress(picture.icc, 6)
            w.put(profile, f"<< /N {1 if picture.grey else 3} /Alternate {space} /Length {len(icc)} "
                           "/Filter /FlateDecode >>".encode(), icc)
            space = f"[/ICCBased {profile} 0 R]"
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


def _device_to_page(page: Any, width: int, height: int) -> Affine:
    """The map from a rendering's pixels to the page's user space, as PDFium maps them.

    The rendering is ``width`` x ``height`` with the page's own turn applied, as the service renders it.
    """
    def at(x: float, y: float) -> Point:
        px, py = ctypes.c_double(), ctypes.c_double()
        pdfium_c.FPDF_DeviceToPage(page, 0, 0, width, height, 0, int(x), int(y), px, py)
        return px.value, py.value

    return _affine(at, width, height)


def over_pdf(upload: bytes, answers: list[dict[str, Any]]) -> bytes:
    """The pages of an uploaded PDF that were read, each with its words laid over it: the PDF's own pages kept whole.

    A scanned PDF stays as small and sharp as it came (its images are not drawn again as pixels). A page that
    already holds text keeps it alone, as OCRmyPDF's ``--skip-text`` does: another layer would copy every word twice.
    A page read turned is turned (``/Rotate``) as it was read. PDFium parses each page's content here, as in
    rendering it: in the ingress this runs in the PDF sandbox's workers (`pdf_sandbox.PdfSandbox.overlay`).
    """
    src = pdfium.PdfDocument(upload)
    out = pdfium.PdfDocument.new()
    font = pdfium_c.FPDFText_LoadStandardFont(out.raw, b"Helvetica")
    for answer in answers:
        image = answer["image"]
        out.import_pages(src, [image["page"] - 1])
        page = out[len(out) - 1]
        if page.get_textpage().count_chars() == 0:
            to_page = _device_to_page(page.raw, image["width"], image["height"])
            for run in word_runs(answer):
                obj = pdfium_c.FPDFPageObj_CreateTextObj(out.raw, font, 1.0)
                chars = ctypes.create_string_buffer(run[0].decode("ascii").encode("utf-16-le") + b"\0\0")
                pdfium_c.FPDFText_SetText(obj, ctypes.cast(chars, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
                pdfium_c.FPDFTextObj_SetTextRenderMode(obj, pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE)
                pdfium_c.FPDFPageObj_Transform(obj, *text_matrix(run, to_page))
                pdfium_c.FPDFPage_InsertObject(page.raw, obj)
            pdfium_c.FPDFPage_GenerateContent(page.raw)
        rotation = int(image.get("rotation") or 0) % 360
        if rotation:
            page.set_rotation((page.get_rotation() + rotation) % 360)
    buf = io.BytesIO()
    out.save(buf)
    return buf.getvalue()


def from_upload(answers: list[dict[str, Any]], upload: bytes, title: str = "", max_pixels: int = 2**62,
                overlay_pdf: Callable[[bytes, list[dict[str, Any]]], bytes] = over_pdf) -> bytes:
    """The pages of one upload, one answer each, as one searchable PDF (``serve_app.client --pdf``, a stored image).

    A PDF's own pages get the words laid over them (``overlay_pdf``: in the ingress, in the PDF sandbox); any other
    file's pages are decoded here again, so that the service sends each page's answer once, as JSON.
    """
    if answers and answers[0]["image"]["format"] == "PDF":
        return overlay_pdf(upload, answers)
    pages = []
    for answer in answers:
        image = answer["image"]
        decoded = decode_image(upload, len(upload), max_pixels, None, image.get("page", 1))
        picture = page_image(upload, image["format"], decoded.pixels, image["width"], image["height"])
        pages.append((answer, picture, resolution(upload, answer)))
    return document(pages, title=title)
