"""CRNN pre- and post-processing: line crops at a fixed height, width buckets, greedy CTC decoding and word boxes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from serve_app.ocr.alphabet import BLANK, CHARSET

INPUT_HEIGHT = 32
COLUMN_STRIDE = 4


@dataclass(frozen=True)
class Crop:
    """A normalised grayscale line image ``(32, W)`` and where it came from, to map columns back to pixels."""

    pixels: np.ndarray
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def scale(self) -> float:
        """Crop pixels per original pixel along x."""
        return self.pixels.shape[1] / max(self.x1 - self.x0, 1e-6)


def to_gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    return (image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.uint8)


def normalise(gray: np.ndarray, max_width: int = 1600) -> np.ndarray:
    """A grayscale uint8 crop resized to height 32 (aspect kept, width a multiple of 4) and scaled to [-1, 1]."""
    h, w = gray.shape
    nw = int(np.clip(round(w * INPUT_HEIGHT / max(h, 1) / COLUMN_STRIDE) * COLUMN_STRIDE, COLUMN_STRIDE * 4, max_width))
    img = Image.fromarray(gray).resize((nw, INPUT_HEIGHT), Image.Resampling.BILINEAR)
    return (np.asarray(img, dtype=np.float32) / 127.5) - 1.0


def crop_line(
    image: np.ndarray, box: tuple[float, float, float, float], pad_y: float = 0.15, pad_x: float = 0.25,
    max_width: int = 1600,
) -> Crop:
    """Cut a line box out of an RGB or gray image with some context, as the recognizer was trained to see it."""
    h_img, w_img = image.shape[:2]
    x0, y0, x1, y1 = box
    bh = max(y1 - y0, 1.0)
    cx0 = max(0.0, x0 - pad_x * bh)
    cx1 = min(float(w_img), x1 + pad_x * bh)
    cy0 = max(0.0, y0 - pad_y * bh)
    cy1 = min(float(h_img), y1 + pad_y * bh)
    ix0, iy0, ix1, iy1 = int(cx0), int(cy0), max(int(np.ceil(cx1)), int(cx0) + 1), max(int(np.ceil(cy1)), int(cy0) + 1)
    gray = to_gray(image[iy0:iy1, ix0:ix1])
    return Crop(normalise(gray, max_width), float(ix0), float(iy0), float(ix1), float(iy1))


def line_slope(poly: tuple[tuple[float, float], ...]) -> float:
    """Slope (dy/dx) of a line quadrilateral's centre line; CTPN fits top and bottom edges across its proposals."""
    (x0, t0), (x1, t1), (_, b1), (_, b0) = poly[:4]
    return ((t1 + b1) - (t0 + b0)) / 2 / max(x1 - x0, 1e-6)


def crop_tilted(
    image: np.ndarray, poly: tuple[tuple[float, float], ...], pad_y: float = 0.15, pad_x: float = 0.25,
    max_width: int = 1600,
) -> Crop:
    """Cut a tilted line out along its own axis, so the recognizer sees it level, as it was trained to.

    An axis-aligned box around tilted text is tall and holds the line diagonally, squeezed to a few pixels once
    the crop is scaled to 32 px high. The crop here is turned by the centre line's angle; its thickness is the
    quadrilateral's mean vertical height times the cosine. ``x0``/``x1`` of the result are where the crop's
    ends fall along x on the centre line, so CTC columns still map to image x linearly (`split_words`).
    """
    (x0, t0), (x1, t1), (_, b1), (_, b0) = poly[:4]
    c0, c1 = (t0 + b0) / 2, (t1 + b1) / 2
    angle = np.arctan2(c1 - c0, x1 - x0)
    cos, sin = float(np.cos(angle)), float(np.sin(angle))
    thick = max(((b0 - t0) + (b1 - t1)) / 2 * cos, 1.0)
    out_w = float(np.hypot(x1 - x0, c1 - c0)) + 2 * pad_x * thick
    out_h = thick * (1 + 2 * pad_y)
    # output (u, v) -> image (x, y): start half a crop-height off the centre line's padded left end
    ox = x0 - pad_x * thick * cos + out_h / 2 * sin
    oy = c0 - pad_x * thick * sin - out_h / 2 * cos
    corners_x = [ox, ox + out_w * cos, ox - out_h * sin, ox + out_w * cos - out_h * sin]
    corners_y = [oy, oy + out_w * sin, oy + out_h * cos, oy + out_w * sin + out_h * cos]
    h_img, w_img = image.shape[:2]
    rx0, ry0 = max(int(min(corners_x)), 0), max(int(min(corners_y)), 0)
    rx1, ry1 = min(int(np.ceil(max(corners_x))) + 1, w_img), min(int(np.ceil(max(corners_y))) + 1, h_img)
    gray = to_gray(image[ry0:max(ry1, ry0 + 1), rx0:max(rx1, rx0 + 1)])
    w_px, h_px = max(int(round(out_w)), 1), max(int(round(out_h)), 1)
    warped = Image.fromarray(gray).transform(
        (w_px, h_px), Image.Transform.AFFINE, (cos, -sin, ox - rx0, sin, cos, oy - ry0),
        resample=Image.Resampling.BILINEAR, fillcolor=int(np.median(gray)),
    )
    mid_x0 = ox - out_h / 2 * sin
    return Crop(normalise(np.asarray(warped), max_width), mid_x0, min(t0, t1), mid_x0 + out_w * cos, max(b0, b1))


#: Crops whose widths differ by up to this factor share a batch. A batch of 32 crops costs the CRNN a quarter of 32
#: batches of one (its BiLSTM steps are small matrix products), padding costs in proportion to the width added. At
#: 3.0 instead of 1.5 a receipt's lines are read in fewer, fuller batches: 0.41-0.47 -> 0.36-0.39 s per SROIE TRAIN
#: receipt, the whole pipeline, at the same F1 on the TRAIN checks (receipts 0.918 -> 0.919, born-digital 0.851 ->
#: 0.856, IC15 layouts 0.563 -> 0.561 busy and 0.648 -> 0.645 plain; 2-core Xeon with AMX, docs/accuracy.md).
BUCKET_RATIO = 3.0


def width_buckets(widths: list[int], max_batch: int = 32, max_ratio: float = BUCKET_RATIO) -> list[list[int]]:
    """Indices grouped so each batch's widths differ by at most ``max_ratio``: bounded padding, few batches."""
    order = sorted(range(len(widths)), key=lambda i: widths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and len(groups[-1]) < max_batch and widths[i] <= widths[groups[-1][0]] * max_ratio:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def parts(widths: list[int], max_batch: int, per_part: int, max_ratio: float = BUCKET_RATIO) -> list[list[int]]:
    """Indices of a page's crops in about ``len(widths) / per_part`` parts, to be read by replicas at once.

    Each part is a run of whole `width_buckets`, so that reading a part alone forms those very buckets and every
    crop is padded and batched as in one call of the whole page: the answer does not depend on how it was split.
    Runs are cut where the padded columns read so far pass an equal share, since a wide line costs more than a
    narrow one. ``per_part`` 0 keeps every page whole.
    """
    buckets = width_buckets(widths, max_batch, max_ratio)
    n = max(1, round(len(widths) / per_part)) if per_part else 1
    if n == 1:
        return [[i for b in buckets for i in b]] if widths else []
    costs = [len(b) * max(widths[i] for i in b) for b in buckets]
    share, spent = sum(costs) / n, 0.0
    out: list[list[int]] = [[]]
    for bucket, cost in zip(buckets, costs):
        if out[-1] and spent + cost / 2 > share * len(out) and len(out) < n:
            out.append([])
        out[-1] += bucket
        spent += cost
    return out


def pad_crops(crops: list[np.ndarray]) -> np.ndarray:
    """Right-pad ``(32, W)`` crops to a ``(N, 1, 32, Wmax)`` batch with each crop's own edge value."""
    w = max(c.shape[1] for c in crops)
    batch = np.empty((len(crops), 1, INPUT_HEIGHT, w), dtype=np.float32)
    for i, c in enumerate(crops):
        batch[i, 0, :, : c.shape[1]] = c
        batch[i, 0, :, c.shape[1]:] = c[:, -1:]
    return batch


@dataclass
class Decoded:
    """A greedy CTC reading: the text, and for each character its output column and probability.

    ``known`` says for each word of ``text.split()`` whether the lexicon vouches for it (`lexicon.mark_known`);
    None where no lexicon looked.
    """

    text: str
    columns: list[int] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    known: tuple[bool, ...] | None = None

    @property
    def confidence(self) -> float:
        return float(np.mean(self.probs)) if self.probs else 0.0


def ctc_greedy(probs: np.ndarray, charset: str = CHARSET) -> Decoded:
    """Best path decoding of ``(T, C)`` probabilities: argmax, merge repeats, drop blanks."""
    best = probs.argmax(axis=1)
    out = Decoded("")
    chars: list[str] = []
    prev = BLANK
    for t, k in enumerate(best):
        k = int(k)
        if k != BLANK and k != prev:
            chars.append(charset[k - 1])
            out.columns.append(t)
            out.probs.append(float(probs[t, k]))
        prev = k
    out.text = "".join(chars)
    return out


@dataclass(frozen=True)
class Word:
    text: str
    box: tuple[float, float, float, float]
    confidence: float
    known: bool = True  # False: letters only, and not a word of the lexicon


def split_words(decoded: Decoded, crop: Crop, line_box: tuple[float, float, float, float]) -> list[Word]:
    """Split a line reading at spaces; each word's x range comes from its characters' CTC columns.

    A character emitted at column ``t`` sits near crop x ``4t + 2``; a word spans from half a character
    spacing before its first character to half a spacing after its last, clipped to the line box.
    """
    words: list[Word] = []
    cols = decoded.columns
    if not cols:
        return words
    spacing = float(np.median(np.diff(cols))) if len(cols) > 1 else 2.0
    half = max(spacing, 1.0) / 2 + 0.5

    def to_x(col: float) -> float:
        return crop.x0 + (col * COLUMN_STRIDE + COLUMN_STRIDE / 2) / crop.scale

    start = None
    known = decoded.known or ()
    for i, ch in enumerate(decoded.text + " "):
        if ch != " " and start is None:
            start = i
        elif ch == " " and start is not None:
            text = decoded.text[start:i]
            k = len(words)
            x0 = max(line_box[0], to_x(cols[start] - half))
            x1 = min(line_box[2], to_x(cols[i - 1] + half))
            if x1 <= x0:
                x0, x1 = line_box[0], line_box[2]
            conf = float(np.mean(decoded.probs[start:i]))
            words.append(Word(text, (x0, line_box[1], x1, line_box[3]), conf, known[k] if k < len(known) else True))
            start = None
    return words


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
