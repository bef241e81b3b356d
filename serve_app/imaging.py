"""Decode an upload safely: known formats only, size and pixel limits (decompression bombs), EXIF rotation.

Every upload comes out as 8-bit RGB without losing its text on the way (`to_rgb`): Pillow's own conversion clips
16-bit and float greys (a 16-bit scan came out white) and drops alpha, which shows whatever colour transparent
pixels hide (black text on a transparent PNG came out as a black image).

Large JPEGs are decoded at a reduced size (`keep_side`): libjpeg can scale by 1/2, 1/4 or 1/8 inside the inverse
DCT, which costs less than a full decode. A 600 dpi receipt scan (4961x7016) took 0.34 s to decode in full and
0.08 s at half size, and a quarter of the pixels then travel to the detector and are resized and cut into crops.
The answer still speaks in the upload's own pixels: `DecodedImage.scale` maps back.

One page of a multi-page upload (a TIFF scan, a PDF, an animated WebP or PNG) is decoded per request, the one asked
for; the page count comes from the headers, so a client learns what else the file holds without it being decoded.
A PDF page is rendered by PDFium (Chromium's PDF engine) at ``pdf_dpi``, less where the page is so large that it
would pass the pixel limit or twice ``keep_side``: the resolution is ours to choose, so a poster is not refused.

Phones save photos as HEIC (iPhones by default) or AVIF: Pillow reads AVIF itself, and HEIC through pi-heif, the
decode-only build of pillow-heif (libheif and libde265, without the GPL x265 encoder that pillow-heif carries). Both
read the primary image of the file; its rotation is the container's own (libheif applies it, and pi-heif resets
the EXIF orientation, which HEIF leaves informative), so no photo is turned twice.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import pi_heif
import pypdfium2 as pdfium
from PIL import Image, ImageOps, UnidentifiedImageError

pi_heif.register_heif_opener()  # format "HEIF"; AVIF is Pillow's own
# Our pixel limit is checked from each header, and a large JPEG is decoded reduced: Pillow's warning past 89 MP
# would log a phone's 108 MP photo, read at 1/2, as "could be decompression bomb DOS attack". Its refusal at twice
# that (179 MP, on opening) stays: `decode_image` answers it 413.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "MPO", "HEIF", "AVIF"}  # and PDF, which Pillow does not read
#: What every message that lists the accepted formats says.
ACCEPTED = "JPEG, PNG, WebP, HEIC, AVIF, BMP, TIFF or PDF"
#: The media type an upload is stored and served back with, by the format `decode_image` reports. A HEIF file is
#: nearly always HEIC (HEVC-coded), the type browsers and phones know it by.
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp",
               "TIFF": "image/tiff", "HEIF": "image/heic", "AVIF": "image/avif", "PDF": "application/pdf"}
#: ISO base media file brands (the ``ftyp`` box) of a still image or image sequence, by the format they make.
AVIF_BRANDS = {b"avif", b"avis"}
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}


class ImageError(ValueError):
    """A user-input problem with an HTTP status and a stable code, turned into a JSON error by the ingress."""

    status = 400
    code = "bad_image"


class NotAnImage(ImageError):
    status, code = 415, "unsupported_media_type"


class UnsupportedFormat(ImageError):
    status, code = 415, "unsupported_media_type"


class CorruptImage(ImageError):
    status, code = 400, "corrupt_image"


class ImageTooLarge(ImageError):
    status, code = 413, "image_too_large"


class EmptyUpload(ImageError):
    status, code = 400, "empty_upload"


class PageOutOfRange(ImageError):
    status, code = 422, "page_out_of_range"


#: Formats whose further frames are pages to read: a multi-page TIFF scan, the frames of an animated WebP or PNG.
#: MPO's further pictures are other views of the same scene (stereo, depth), not pages.
PAGED_FORMATS = {"TIFF", "WEBP", "PNG"}
#: Pillow counts a TIFF's pages by reading every page's header, 0.135 ms each: a 2.5 MB file of 20,000 one-pixel
#: pages held a decoding thread for 2.7 s before a pixel was read. Counting stops past this many.
MAX_TIFF_PAGES = 1000
#: Frames of an animation are drawn one over the other, so reaching frame N decodes every frame before it: a 14 kB
#: WebP of 300 frames of 2000x2000 took 2.2 s to reach its last. Those N frames together must stay within the
#: pixel limit.
ANIMATED_FORMATS = {"WEBP", "PNG"}
#: Each scan of a JPEG is a pass over every block of the components it holds, and a scan that changes nothing
#: (a run of empty blocks) takes a few bytes: a 376 kB progressive JPEG of 36 MP and 2,010 scans held a decoding
#: thread for 10.9 s, and 10 MiB has room for some 120,000 (libjpeg-turbo bounds scans only in its TurboJPEG API,
#: which Pillow does not use). Encoders write 1 to 4 scans, or about 10 progressive ones.
MAX_JPEG_SCANS = 100


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # RGB uint8 (H, W, 3), upright; smaller than the upload where a JPEG was reduced
    format: str
    width: int  # the upload's upright size: what boxes in answers refer to
    height: int
    page: int = 1  # which page (frame) of the upload these pixels are, from 1
    pages: int = 1  # how many it holds
    dpi: float | None = None  # PDF pages: the resolution rendered at (pixels = points * dpi / 72)

    @property
    def scale(self) -> tuple[float, float]:
        """Upload pixels per decoded pixel, along x and y (1.0 unless a JPEG was reduced)."""
        return self.width / self.pixels.shape[1], self.height / self.pixels.shape[0]


JPEG_REDUCTIONS = (1, 2, 4, 8)  # the scales libjpeg decodes at directly, never holding the full picture


def jpeg_reduction(width: int, height: int, max_pixels: int, keep_side: int | None, keep_short: int = 0) -> int:
    """How many times smaller to decode a JPEG (1, 2, 4 or 8).

    The least that fits ``max_pixels``, more as far as the long side stays at least ``keep_side`` and, for a page
    taller than wide, its width at least ``keep_short`` (a tall strip, which the detector reads wider than its
    height alone says: `detection.target_scale`). A
    phone's 50 MP photo (8160x6120) would pass a 40 MP limit in full, yet decoded at 1/2 it takes 12.5 MP, no more
    than a 12 MP photo: refusing it would turn away a picture the service can read at no extra cost.
    """
    fits = [r for r in JPEG_REDUCTIONS if math.ceil(width / r) * math.ceil(height / r) <= max_pixels]
    r = fits[0] if fits else JPEG_REDUCTIONS[-1]  # too large even so: the caller refuses it
    while (keep_side and r < JPEG_REDUCTIONS[-1] and max(width, height) / (2 * r) >= keep_side
           and (height <= width or width / (2 * r) >= keep_short)):
        r *= 2
    return r


def _stored_range(hi: float) -> int:
    """The largest value of the fewest even number of bits, from 8, that holds ``hi``."""
    bits = max(8, int(hi).bit_length())
    return (1 << (bits + bits % 2)) - 1


def _grey8(im: Image.Image) -> np.ndarray:
    """Greys of more than 8 bits in 8, as a viewer shows them.

    16-bit greys by the range of the bits they use (8, 10, 12, 14 or 16: cameras, scanners and medical images
    store 10- and 12-bit data in 16-bit files, which by the container's range came out black with at most 16
    grey levels), floats in [0, 1] or [0, 255] as such, anything else stretched between its own extremes.
    """
    a = np.array(im, dtype=np.float32)  # one float copy, scaled in place: a 50 MP scan stays near 200 MB
    lo, hi = float(a.min()), float(a.max())
    if im.mode.startswith("I;16") or (im.mode == "I" and 0 <= lo and 255 < hi <= 65535):
        a *= 255 / _stored_range(hi)
    elif im.mode == "F" and 0 <= lo and hi <= 1:
        a *= 255
    elif lo < 0 or hi > 255:
        a -= lo
        a *= 255 / max(hi - lo, 1e-12)
    np.rint(a, out=a)
    return np.clip(a, 0, 255, out=a).astype(np.uint8)


def _background(rgba: Image.Image) -> tuple[int, int, int, int]:
    """White under dark ink, black under light ink: the mean brightness of what is visible, weighted by alpha."""
    f = min(1.0, 256 / max(rgba.size))  # a sample is enough, and costs nothing next to the decode
    sample = rgba.resize((max(1, round(rgba.width * f)), max(1, round(rgba.height * f))), Image.Resampling.NEAREST)
    a = np.asarray(sample, dtype=np.float64)
    weight = a[..., 3] / 255.0
    luma = a[..., :3] @ np.array([0.299, 0.587, 0.114])
    ink = float((luma * weight).sum() / max(weight.sum(), 1e-9))
    return (0, 0, 0, 255) if ink > 127.5 else (255, 255, 255, 255)


def to_rgb(im: Image.Image) -> np.ndarray:
    """RGB uint8 pixels: wide greys brought to 8 bits, transparent pixels laid over a background that contrasts."""
    if im.mode.startswith("I") or im.mode == "F":
        return np.repeat(_grey8(im)[..., None], 3, axis=-1)
    if im.has_transparency_data:
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        lowest, _ = cast(tuple[int, int], rgba.getchannel("A").getextrema())  # one band: its (min, max)
        if lowest < 255:  # most RGBA screenshots are opaque: no compositing
            im = Image.alpha_composite(Image.new("RGBA", rgba.size, _background(rgba)), rgba)
    return np.asarray(im.convert("RGB"))


_PDFIUM = threading.Lock()  # PDFium is not thread-safe: one document at a time per process


def claimed_format(data: bytes) -> str | None:
    """The accepted format whose signature the upload starts with, whether or not the rest decodes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # TIFF, BigTIFF
        return "TIFF"
    if data[:2] == b"BM" and data[6:10] == b"\x00\x00\x00\x00":  # its reserved words are 0
        return "BMP"
    if data[4:8] == b"ftyp":  # ISO base media: the major brand, then the compatible ones, to the box's end
        end = min(int.from_bytes(data[:4], "big"), len(data), 256)
        brands = {data[8:12]} | {data[i:i + 4] for i in range(16, end - 3, 4)}
        if brands & AVIF_BRANDS:  # before HEIF: an AVIF file lists mif1 too
            return "AVIF"
        if brands & HEIF_BRANDS:
            return "HEIF"
    return None


def is_pdf(data: bytes) -> bool:
    """PDF readers accept the header anywhere in the first 1024 bytes."""
    return b"%PDF-" in data[:1024]


def pdf_scale(width_pt: float, height_pt: float, dpi: float, max_pixels: int, keep_side: int | None,
              keep_short: int = 0) -> float:
    """Pixels per point: ``dpi`` / 72 unless the page would pass ``max_pixels``, or ``keep_side``.

    ``keep_side`` gives way to ``keep_short`` for a page taller than wide: a tall strip keeps that many pixels
    across.
    """
    s = min(dpi / 72, math.sqrt(max_pixels / max(width_pt * height_pt, 1e-9)))
    if keep_side:
        s = min(s, max(keep_side / max(width_pt, height_pt), keep_short / width_pt if height_pt > width_pt else 0))
    while math.ceil(width_pt * s) * math.ceil(height_pt * s) > max_pixels:  # rounding up must not pass the limit
        s *= 0.995
    return s


def decode_pdf(data: bytes, max_pixels: int, keep_side: int | None, page: int, dpi: float,
               keep_short: int = 0) -> DecodedImage:
    """One page of a PDF as RGB pixels on white."""
    with _PDFIUM:
        try:
            doc = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            reason = "it is password protected" if "password" in str(exc).lower() else str(exc)
            raise CorruptImage(f"the PDF could not be opened: {reason}") from None
        try:
            pages = len(doc)
            if not 1 <= page <= pages:
                raise PageOutOfRange(f"page {page} was asked for; the PDF has {pages} page{'s' * (pages > 1)}")
            pg = doc[page - 1]
            w_pt, h_pt = pg.get_size()  # upright: the page's own rotation is taken into account, as in rendering
            if not (w_pt >= 1 and h_pt >= 1):
                raise CorruptImage(f"PDF page {page} has no area ({w_pt:.0f} x {h_pt:.0f} points)")
            scale = pdf_scale(w_pt, h_pt, dpi, max_pixels, keep_side, keep_short)
            try:
                rgb = np.array(pg.render(scale=scale, rev_byteorder=True, fill_color=(255, 255, 255, 255),
                                         may_draw_forms=True).to_numpy()[..., :3])
            except pdfium.PdfiumError as exc:
                raise CorruptImage(f"PDF page {page} could not be rendered: {exc}") from None
        finally:
            doc.close()
    return DecodedImage(rgb, "PDF", rgb.shape[1], rgb.shape[0], page, pages, round(scale * 72, 2))


def _page_count(im: Image.Image, fmt: str) -> int:
    """Pages of a paged format: from the header for an animation, by walking the pages of a TIFF (up to a limit)."""
    if fmt not in PAGED_FORMATS:
        return 1
    if fmt != "TIFF":
        return int(getattr(im, "n_frames", 1))
    count = 1
    try:
        while count <= MAX_TIFF_PAGES:
            im.seek(count)  # Pillow walks the headers one by one and remembers where each page starts
            count += 1
    except EOFError:
        im.seek(0)
        return count
    raise ImageTooLarge(f"the TIFF holds more than {MAX_TIFF_PAGES} pages; send at most {MAX_TIFF_PAGES} at a time")


def jpeg_scans(data: bytes) -> int:
    """How many scans (SOS markers) a JPEG holds, from its bytes alone; 0 when its headers do not parse.

    The headers are walked segment by segment to the first scan, so that an embedded thumbnail does not count.
    From there no ``FF DA`` can be anything but a scan's start, since entropy-coded data escapes each ``FF``; the
    count stops at the end of the image (an MPO's further pictures are not read).
    """
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return 0
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte before a marker
            i += 1
        elif marker == 0xDA:  # in numpy: bytes.find and count took 19 ms over a 7 MiB JPEG, this 3.7 ms
            tail = np.frombuffer(data, np.uint8, offset=i)
            after_ff = tail[np.flatnonzero(tail[:-1] == 0xFF) + 1]
            ends = np.flatnonzero(after_ff == 0xD9)
            return int(np.count_nonzero(after_ff[:ends[0] if len(ends) else None] == 0xDA))
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return 0


#: How a PDF page becomes pixels: `decode_pdf` in this process, or a `pdf_sandbox.PdfSandbox`'s ``render``.
PdfRenderer = Callable[[bytes, int, int | None, int, float, int], DecodedImage]


def decode_image(data: bytes, max_bytes: int, max_pixels: int, keep_side: int | None = None,
                 page: int = 1, pdf_dpi: float = 200, render_pdf: PdfRenderer | None = None,
                 keep_short: int = 0) -> DecodedImage:
    """Bytes to RGB pixels of one ``page`` (from 1), or an `ImageError` that says exactly what is wrong.

    A JPEG whose long side is at least twice ``keep_side`` is decoded at 1/2, 1/4 or 1/8 of its size, as far as
    the long side stays at least ``keep_side`` (and a tall page's width at least ``keep_short``), and one past
    ``max_pixels`` as reduced as it must be to fit. Only
    the asked page is decoded; the answer says how many there are, so a client that sent page 1 of a scanned letter
    learns that pages 2 and 3 wait.
    """
    if not data:
        raise EmptyUpload("the uploaded file is empty")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"upload is {len(data)} bytes; the limit is {max_bytes} bytes")
    try:  # no warnings.catch_warnings here: it is not thread-safe, and decoding runs in threads (the ingress)
        im: Image.Image = Image.open(io.BytesIO(data))
        fmt = im.format or "unknown"
        if fmt not in ALLOWED_FORMATS:
            raise UnsupportedFormat(f"image format {fmt} is not accepted; send {ACCEPTED}")
        if fmt in ("JPEG", "MPO") and (scans := jpeg_scans(data)) > MAX_JPEG_SCANS:
            raise ImageTooLarge(f"the JPEG is split into {scans} scans, each decoded over the whole image; the "
                                f"limit is {MAX_JPEG_SCANS} (encoders write about 10): save it again as a plain JPEG")
        pages = _page_count(im, fmt)  # headers only, no pixels
        if not 1 <= page <= pages:
            raise PageOutOfRange(f"page {page} was asked for; the image has {pages} page{'s' * (pages > 1)}")
        if page > 1 and fmt in ANIMATED_FORMATS and page * im.width * im.height > max_pixels:
            raise ImageTooLarge(f"frame {page} of an animation is reached by decoding the {page - 1} before it: "
                                f"{page} x {im.width}x{im.height} = {page * im.width * im.height} pixels; the limit "
                                f"is {max_pixels} pixels")
        if page > 1:
            im.seek(page - 1)
        w, h = im.size  # pages of one TIFF may differ in size
        if w < 1 or h < 1:
            raise CorruptImage("image has no pixels")
        if fmt in ("JPEG", "MPO") and (r := jpeg_reduction(w, h, max_pixels, keep_side, keep_short)) > 1:
            im.draft("RGB", (max(1, w // r), max(1, h // r)))  # from the header: nothing is decoded yet
        if im.width * im.height > max_pixels:  # checked from the header, before any pixel is decoded
            reduced = f", {im.width}x{im.height} even decoded reduced" if im.size != (w, h) else ""
            raise ImageTooLarge(f"image is {w}x{h} = {w * h} pixels{reduced}; the limit is {max_pixels} pixels")
        before = im.size
        im = ImageOps.exif_transpose(im)
        if im.size != before:  # turned a quarter: the upload's axes swap too
            w, h = h, w
        rgb = to_rgb(im)
    except UnidentifiedImageError:
        if is_pdf(data):
            return (render_pdf or decode_pdf)(data, max_pixels, keep_side, page, pdf_dpi, keep_short)
        if claimed := claimed_format(data):
            raise CorruptImage(f"the upload starts as a {claimed} file but could not be decoded: damaged or cut "
                               "short") from None
        raise NotAnImage(f"the upload is not an image this service can read ({ACCEPTED})") from None
    except Image.DecompressionBombError as exc:  # past twice Pillow's own limit: refused on opening
        raise ImageTooLarge(f"image refused as a decompression bomb: {exc}") from None
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"the image could not be decoded: {exc}") from None
    return DecodedImage(rgb, "JPEG" if fmt == "MPO" else fmt, w, h, page, pages)
