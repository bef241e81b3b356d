"""Decode an upload safely: known formats only, size and pixel limits (decompression bombs), EXIF rotation."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "MPO"}


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


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # RGB uint8 (H, W, 3)
    format: str

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def decode_image(data: bytes, max_bytes: int, max_pixels: int) -> DecodedImage:
    """Bytes to RGB pixels, or an `ImageError` that says exactly what is wrong."""
    if not data:
        raise EmptyUpload("the uploaded file is empty")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"upload is {len(data)} bytes; the limit is {max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            fmt = im.format or "unknown"
            if fmt not in ALLOWED_FORMATS:
                raise UnsupportedFormat(f"image format {fmt} is not accepted; send JPEG, PNG, WebP, BMP or TIFF")
            w, h = im.size
            if w * h > max_pixels:  # checked from the header, before any pixel is decoded
                raise ImageTooLarge(f"image is {w}x{h} = {w * h} pixels; the limit is {max_pixels} pixels")
            if w < 1 or h < 1:
                raise CorruptImage("image has no pixels")
            im = ImageOps.exif_transpose(im)
            rgb = np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        raise NotAnImage("the upload is not an image this service can read (JPEG, PNG, WebP, BMP or TIFF)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image refused as a decompression bomb: {exc}") from None
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"the image could not be decoded: {exc}") from None
    return DecodedImage(rgb, "JPEG" if fmt == "MPO" else fmt)
