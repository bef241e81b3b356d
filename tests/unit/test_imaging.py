import io

import numpy as np
import pytest
from PIL import Image

from serve_app.imaging import CorruptImage, EmptyUpload, ImageTooLarge, NotAnImage, UnsupportedFormat, decode_image

MB = 1024 * 1024


def encoded(fmt: str, size=(40, 20), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (200, 10, 10) if mode == "RGB" else 128).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF"])
def test_accepted_formats_decode_to_rgb(fmt):
    img = decode_image(encoded(fmt), MB, 10_000)
    assert img.pixels.shape == (20, 40, 3) and img.pixels.dtype == np.uint8 and img.format == fmt


def test_grayscale_becomes_rgb():
    assert decode_image(encoded("PNG", mode="L"), MB, 10_000).pixels.shape == (20, 40, 3)


@pytest.mark.parametrize(
    "data,max_bytes,max_pixels,exc,status",
    [
        (b"", MB, 10_000, EmptyUpload, 400),
        (b"hello, I am text", MB, 10_000, NotAnImage, 415),
        (encoded("GIF"), MB, 10_000, UnsupportedFormat, 415),
        (encoded("PNG")[:60], MB, 10_000, CorruptImage, 400),
        (encoded("PNG"), 50, 10_000, ImageTooLarge, 413),
        (encoded("PNG", size=(200, 100)), MB, 10_000, ImageTooLarge, 413),
    ],
)
def test_bad_uploads_raise_errors_with_http_status(data, max_bytes, max_pixels, exc, status):
    with pytest.raises(exc) as info:
        decode_image(data, max_bytes, max_pixels)
    assert info.value.status == status and str(info.value)


def test_decompression_bomb_is_refused_from_the_header():
    # a 20000 x 20000 PNG of one colour compresses to a few hundred KB but would need 1.2 GB decoded
    buf = io.BytesIO()
    Image.new("L", (20000, 20000)).save(buf, "PNG")
    with pytest.raises(ImageTooLarge, match="pixels"):
        decode_image(buf.getvalue(), 10 * MB, 40_000_000)


def test_exif_orientation_is_applied():
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 20)).save(buf, "JPEG", exif=exif)
    assert decode_image(buf.getvalue(), MB, 10_000).pixels.shape == (40, 20, 3)
