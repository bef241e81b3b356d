"""A region of a page to read (`?region=x0,y0,x1,y1`), in the pixels the answer's boxes are in.

A browser crops an image it can draw before sending it, but not a PDF page or a TIFF's second frame: those go whole,
and the service crops them. A client reading one field of a scanned form needs the same. The region is in the
upload's upright pixels (a PDF page's as rendered at its dpi), so boxes of an earlier answer name it as they are,
and the answer's boxes stay in the page's pixels.
"""

from __future__ import annotations

import math

import numpy as np

from serve_app.imaging import ImageError

#: Fewer pixels than this across holds no line the detector finds, nor a word the recognizer reads.
MIN_SIDE = 8
#: The border of its own background colour a region is read inside (`framed`): two of the detector's anchor widths.
FRAME = 32

Region = tuple[int, int, int, int]


class RegionOutside(ImageError):
    status, code = 422, "region_outside"


def parse_region(spec: str) -> Region:
    """``"x0,y0,x1,y1"`` as whole pixels holding it (``x0, y0`` down, ``x1, y1`` up); ValueError says what is wrong."""
    parts = [p.strip() for p in spec.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"region {spec!r}: give x0,y0,x1,y1, four numbers of pixels from the page's top left "
                         "(as an answer's boxes are)")
    x0, y0, x1, y1 = values
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"region {spec!r}: x1 must be greater than x0 and y1 greater than y0")
    return math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)


def clipped(region: Region, width: int, height: int) -> Region:
    """``region`` within a ``width`` x ``height`` page; `RegionOutside` where too little of it is on the page."""
    x0, y0, x1, y1 = region
    inside = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if inside[2] - inside[0] < MIN_SIDE or inside[3] - inside[1] < MIN_SIDE:
        raise RegionOutside(f"region {','.join(map(str, region))} holds less than {MIN_SIDE} x {MIN_SIDE} pixels "
                            f"of the page, which is {width} x {height}")
    return inside


def crop(pixels: np.ndarray, region: Region, sx: float = 1.0, sy: float = 1.0) -> tuple[np.ndarray, int, int]:
    """The pixels of ``region`` (upload pixels) from a decode ``sx``, ``sy`` upload pixels per pixel smaller.

    Returns the crop and its top left in ``pixels``' own coordinates, where its boxes are to be moved back.
    """
    x0, y0, x1, y1 = region
    left, top = math.floor(x0 / sx), math.floor(y0 / sy)
    right = min(pixels.shape[1], max(left + 1, math.ceil(x1 / sx)))
    bottom = min(pixels.shape[0], max(top + 1, math.ceil(y1 / sy)))
    return pixels[top:bottom, left:right], left, top


def framed(part: np.ndarray, margin: int = FRAME) -> np.ndarray:
    """``part`` inside ``margin`` pixels of its border's median colour.

    Cut out bare, a region has text at its very edge, where the detector's edge anchors ran lines on to the edge
    and lost words cut by it. 60 SROIE TRAIN receipts' thirds (`benchmarks.regions --set train/receipts_sroie`): F1
    0.927 bare, 0.930 inside 16 px of its edge pixels repeated, 0.932 / 0.933 / 0.932 inside 16 / 32 / 48 px of
    the median colour.
    """
    border = np.concatenate([part[0], part[-1], part[:, 0], part[:, -1]])
    out = np.empty((part.shape[0] + 2 * margin, part.shape[1] + 2 * margin, *part.shape[2:]), part.dtype)
    out[:] = np.median(border, axis=0).astype(part.dtype)
    out[margin:margin + part.shape[0], margin:margin + part.shape[1]] = part
    return out
