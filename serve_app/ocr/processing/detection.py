"""CTPN pre- and post-processing: resize and normalise an image, and turn raw outputs into text lines."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from serve_app.ocr.processing.anchors import STRIDE, proposals
from serve_app.ocr.processing.geometry import clip_boxes, nms
from serve_app.ocr.processing.textlines import TextLine, build_lines

#: The second view (`shifted`) moves the frame by half the grid of network pixels CTPN's anchors sit on.
VIEW_SHIFT = STRIDE // 2

#: ImageNet statistics: the input normalisation every backbone here was designed around.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True)
class DetectionParams:
    """Knobs of detection that do not change the network (so they can be tuned without retraining).

    Scale and thresholds were chosen with `training.tune_detection` on TRAIN data only: rebuilt ICDAR 2015 frames
    (small incidental text wants a 720p frame upscaled to 1696 px) and SROIE receipts (which gain as well).
    """

    short_side: int = 960
    max_side: int = 1696
    min_short_side: int = 960
    max_long_side: int = 27136  # a tall strip's height at most, in all (its cost grows with it)
    pass_side: int = 6784  # a taller strip is read in overlapping parts of this many rows (`windows`)
    max_upscale: float = 2.0
    score_threshold: float = 0.4  # 0.5 until the full CRNN: its word-confidence filter drops the extra noise
    nms_threshold: float = 0.3
    proposals_per_cell: float = 4.0  # at most this many per 16 x 16 cell of the frame go to NMS (both views)
    line_min_score: float = 0.6
    line_max_gap: int = 50
    line_min_overlap: float = 0.45  # 0.5 split tilted lines where a digit's proposal is taller than its neighbours'
    line_min_proposals: int = 2
    views: int = 2  # 2: the frame is also read moved by half an anchor row down and right (`shifted`)


def target_scale(width: int, height: int, p: DetectionParams) -> float:
    """Scale that brings the short side to ``short_side`` without the long side passing ``max_side``.

    A page more than ``max_side / min_short_side`` times taller than wide (a whole web page's screenshot, a chat, a
    till roll) keeps its width at ``min_short_side`` instead, its height growing up to ``max_long_side`` (read in
    parts, `windows`): brought to ``max_side``, a 1280 x 5000 screenshot of 16 px text was read at 0.34 of its size
    and not one line was found.
    Only a tall strip: its lines run across its width, so their size goes with it. A wide strip's lines run along
    it, as high as the strip may be (a 6800 x 685 banner of 112 px letters would be read at full size, too large
    for the detector and at 4x the cost).
    """
    short, long = min(width, height), max(width, height)
    s = min(p.short_side / short, p.max_side / long)
    if height > width:
        s = max(s, min(min(p.min_short_side, p.short_side) / width, p.max_long_side / height))
    return min(s, p.max_upscale)


#: Normalisation as one multiply-add on uint8 pixels: ``x * SCALE + SHIFT == (x / 255 - MEAN) / STD``.
SCALE = (1.0 / (255.0 * STD)).astype(np.float32)
SHIFT = (-MEAN / STD).astype(np.float32)
_SCALE, _SHIFT = torch.from_numpy(SCALE), torch.from_numpy(SHIFT)


@dataclass(frozen=True)
class Reduced:
    """A frame already brought to the detector's scale (`reduce`), with that scale and the size it had.

    The ingress sends this instead of the upload's pixels: a 12 MP photo is 36 MB through Ray's object store (and
    over the network where the detector runs on another node), at the detector's scale 3.7 MB.
    """

    pixels: np.ndarray
    scale: float
    width: int
    height: int


def _network_size(width: int, height: int, p: DetectionParams) -> tuple[float, int, int]:
    s = target_scale(width, height, p)
    return s, max(16, round(width * s)), max(16, round(height * s))


def _nchw(image: np.ndarray) -> torch.Tensor:
    with warnings.catch_warnings():  # arrays from Ray's object store are read-only; nothing here writes to them
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]  # NCHW view of HWC memory


def _resized(pixels: torch.Tensor, nw: int, nh: int) -> torch.Tensor:
    return F.interpolate(pixels, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)


def reduce(image: np.ndarray, p: DetectionParams) -> np.ndarray | Reduced:
    """``image`` at the detector's scale where that shrinks it, else ``image`` itself.

    The pixels are the ones `preprocess` would make of ``image`` (the same resize), so the lines found are the same.
    """
    h, w = image.shape[:2]
    s, nw, nh = _network_size(w, h, p)
    if nw >= w or nh >= h:
        return image
    small = _resized(_nchw(image), nw, nh)[0].permute(1, 2, 0).contiguous().numpy()
    return Reduced(small, s, w, h)


def size_of(image: np.ndarray | Reduced) -> tuple[int, int]:
    """Width and height of the frame the lines are reported in: a reduced frame's original size."""
    if isinstance(image, Reduced):
        return image.width, image.height
    return image.shape[1], image.shape[0]


def scaled(image: np.ndarray | Reduced, p: DetectionParams) -> tuple[torch.Tensor, float]:
    """``image`` at the detector's scale as uint8 ``(1, 3, H', W')`` (a view where nothing changes), and that scale.

    The resize is Pillow's bilinear filter (antialiased when shrinking), equal to within one grey level, run in
    torch on the caller's intra-op threads. A `Reduced` frame is at its scale already.
    """
    if isinstance(image, Reduced):
        return _nchw(image.pixels), image.scale
    s, nw, nh = _network_size(image.shape[1], image.shape[0], p)
    pixels = _nchw(image)
    if (nw, nh) != (image.shape[1], image.shape[0]):
        pixels = _resized(pixels, nw, nh)
    return pixels, s


def normalised(pixels: torch.Tensor) -> np.ndarray:
    """Scaled uint8 ``(1, 3, H, W)`` pixels to a normalised float ``(H', W', 3)`` array padded to multiples of 16.

    Channels stay last: that is the memory layout oneDNN's convolutions want (`torch.channels_last`), so the
    network reads this array without a copy. Straight from uint8 in torch, a 720p frame at 1696 px took 17-28 ms
    against 52-64 ms with Pillow and NumPy, a receipt about 20 against 65-80 ms (2 threads, AVX2).
    """
    nh, nw = pixels.shape[2:]
    ph, pw = -(-nh // 16) * 16, -(-nw // 16) * 16
    out = torch.zeros((ph, pw, 3), dtype=torch.float32)  # zero: the mean colour, as in training
    torch.addcmul(_SHIFT, pixels[0].permute(1, 2, 0), _SCALE, out=out[:nh, :nw])
    return out.numpy()


def preprocess(image: np.ndarray | Reduced, p: DetectionParams) -> tuple[np.ndarray, float]:
    """RGB uint8 ``(H, W, 3)`` (or a `Reduced` frame) to the network's whole input (`normalised`), and the scale."""
    pixels, s = scaled(image, p)
    return normalised(pixels), s


#: Rows a part of a tall strip shares with the next (`windows`), in network pixels: past the tallest anchor (283),
#: so that every line lies whole inside the part whose proposals are kept for it, with room for the network's view.
WINDOW_OVERLAP = 512


def windows(height: int, p: DetectionParams) -> list[tuple[int, int, float, float]]:
    """The parts a frame ``height`` network pixels high is read in: rows ``[r0, r1)`` and the proposal centres kept.

    A frame up to ``pass_side`` rows is read in one pass. A taller strip (a whole web page's screenshot, up to
    ``max_long_side``) is read in as few parts as fit, of one length up to ``pass_side`` rows, each overlapping the
    next by `WINDOW_OVERLAP` (less up to two grid steps, as their starts snap to the grid); a proposal is kept
    from the part whose core (the middle of each overlap between two parts) holds its centre, and the lines are
    built over all of them at once, so a line on the seam is still one line. Parts start on the 16 px anchor grid,
    so their anchors are the whole frame's. What bounds a pass's memory: a 960 x 27136 input whole would hold
    over 400 MB in one of its first activations.
    """
    if height <= p.pass_side:
        return [(0, height, -np.inf, np.inf)]
    side = p.pass_side // STRIDE * STRIDE
    n = -(-(height - WINDOW_OVERLAP) // (side - WINDOW_OVERLAP))  # as few parts as fit, all of one length
    length = -(-(height + (n - 1) * WINDOW_OVERLAP) // n // STRIDE) * STRIDE
    starts = [i * (height - length) // (n - 1) // STRIDE * STRIDE for i in range(n - 1)]
    starts.append(-(-(height - length) // STRIDE) * STRIDE)
    ends = [min(height, r0 + length) for r0 in starts]
    seams = [(starts[i + 1] + ends[i]) / 2 for i in range(n - 1)]  # the middle of each overlap
    return [(r0, r1, seams[i - 1] if i else -np.inf, seams[i] if i < n - 1 else np.inf)
            for i, (r0, r1) in enumerate(zip(starts, ends, strict=True))]


def passes(width: int, height: int, p: DetectionParams) -> int:
    """How many parts (`windows`) a ``width`` x ``height`` image is read in: 1 unless it is a very tall strip."""
    return len(windows(_network_size(width, height, p)[2], p))


@dataclass(frozen=True)
class Part:
    """One part of a frame (`windows`), at the detector's scale: what a detector replica reads on its own.

    A tall strip's parts go to the detector as calls of their own, at once, so that its replicas share them
    (`split`); a frame read in one pass is one part. ``pixels`` are rows ``[r0, r0 + len)`` of the scaled frame,
    uint8 ``(rows, W', 3)``; proposals whose centre lies in ``[lo, hi)`` are this part's to keep.
    """

    pixels: np.ndarray
    r0: int
    lo: float
    hi: float


@dataclass(frozen=True)
class Strip:
    """A frame cut into the parts it is read in, with what joining their proposals into lines needs (`lines_of`)."""

    parts: list[Part]
    scale: float
    width: int  # the frame's size, in the pixels its lines are reported in
    height: int


@dataclass(frozen=True)
class Proposals:
    """A part's proposals of both views that pass ``score_threshold``, in network pixels of the whole frame.

    Only those: the rest would be dropped first thing in `lines_from_proposals` (a 1280 x 20000 screenshot has
    1.1 M proposals, 146 k above it), and a part's come back from a replica to the ingress.
    """

    boxes: np.ndarray
    scores: np.ndarray
    side_x: np.ndarray


def split(image: np.ndarray | Reduced, p: DetectionParams) -> Strip:
    """``image`` at the detector's scale (`scaled`), cut into the parts it is read in (`windows`)."""
    pixels, scale = scaled(image, p)
    rows = pixels[0].permute(1, 2, 0)  # (H', W', 3): the scaled frame's own memory where it is channels-last
    width, height = size_of(image)
    return Strip([Part(np.ascontiguousarray(rows[r0:r1].numpy()), r0, lo, hi)
                  for r0, r1, lo, hi in windows(pixels.shape[2], p)], scale, width, height)


def part_input(part: Part) -> np.ndarray:
    """A part's pixels as the network's input (`normalised`)."""
    return normalised(_nchw(part.pixels))


def part_proposals(part: Part, views: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                   p: DetectionParams) -> Proposals:
    """A part's proposals of each view (`view_proposals`) that are its own to keep and pass the threshold."""
    kept = []
    for boxes, scores, side_x in views:
        moved, own = in_window(boxes, part.r0, part.lo, part.hi)
        own &= scores >= p.score_threshold
        kept.append((moved[own], scores[own], side_x[own]))
    boxes, scores, side_x = (np.concatenate(x) for x in zip(*kept, strict=True))
    return Proposals(boxes, scores, side_x)


def lines_of(found: list[Proposals], strip: Strip, p: DetectionParams) -> list[TextLine]:
    """The lines of a strip from its parts' proposals, in the parts' order: a line across a seam is one line."""
    boxes, scores, side_x = (np.concatenate(x) for x in zip(*((f.boxes, f.scores, f.side_x) for f in found),
                                                            strict=True))
    return lines_from_proposals(boxes, scores, side_x, strip.scale, strip.width, strip.height, p)


def in_window(boxes: np.ndarray, r0: int, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """A part's proposal boxes moved down to the frame's rows, and which of them its core keeps (`windows`)."""
    moved = boxes + np.array([0, r0, 0, r0], dtype=boxes.dtype)
    centre = (moved[:, 1] + moved[:, 3]) / 2
    return moved, (centre >= lo) & (centre < hi)


def shifted(arr: np.ndarray, k: int = VIEW_SHIFT) -> np.ndarray:
    """A prepared frame moved ``k`` network pixels down and right, zero-padded (the mean colour) to multiples of 16.

    Anchors sit in rows 16 px apart: text whose centre falls between two rows overlaps no anchor of its height
    enough, and its line is lost whole, whatever its contrast (5 of the 57 lines of a 9 pt PDF page, always the same
    ones; moving the page down by 4 network pixels moves which). Half a row further, that text sits on a row. The
    views' proposals are fused before NMS (`view_proposals`). Moving it right by half an anchor's width as well
    scored higher on the TRAIN checks than moving it down only (busy IC15 layouts 0.619 against 0.608).
    """
    ph, pw = arr.shape[:2]
    out = np.zeros((ph + STRIDE, pw + STRIDE, arr.shape[2]), dtype=arr.dtype)
    out[k:k + ph, k:k + pw] = arr
    return out


def softmax_text(logits: np.ndarray) -> np.ndarray:
    """Probability of the text class from ``(..., 2)`` logits."""
    return 1.0 / (1.0 + np.exp(logits[..., 0] - logits[..., 1]))


def view_proposals(scores: np.ndarray, vertical: np.ndarray, side: np.ndarray,
                   shift: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One view's raw outputs to proposals (boxes, scores, side x) in network pixels of the unshifted frame."""
    boxes, sc, side_x = proposals(softmax_text(scores), vertical, side)
    if shift:
        boxes, side_x = boxes - shift, side_x - shift
    return boxes, sc, side_x


def postprocess(
    scores: np.ndarray,
    vertical: np.ndarray,
    side: np.ndarray,
    scale: float,
    width: int,
    height: int,
    p: DetectionParams,
) -> list[TextLine]:
    """One image's raw outputs (text logits ``(h, w, k, 2)``, vertical, side) to lines in original pixels.

    ``width`` and ``height`` are the original image size; the feature grid may cover padding beyond it.
    """
    return lines_from_proposals(*view_proposals(scores, vertical, side), scale, width, height, p)


def max_proposals(width: int, height: int, scale: float, p: DetectionParams) -> int:
    """How many proposals of a frame NMS takes, the best first: a bound on its cost that grows with the frame.

    Counted over both views, before NMS: a SROIE TRAIN receipt gives 0.4-0.9 per cell above the score threshold, a
    screenshot of 16 px text edge to edge 2.7 (several anchor heights of a row pass). A flat 2,000 dropped the
    weakest of a receipt's 3,000 to 6,000, and with them its fainter lines (60 SROIE TRAIN receipts: F1 0.917 ->
    0.923 without it). Two per cell still dropped a screenshot's weakest rows in part: 4 of the 197 rows of a 1280 x
    5000 one, and 22 of the 797 of a 1280 x 20000 one, came back in two to four pieces with words lost between
    them; four per cell caps none of them (nor a receipt: the same lines) and still bounds NMS on noise.
    """
    cells = max(1, round(width * scale / STRIDE)) * max(1, round(height * scale / STRIDE))
    return int(p.proposals_per_cell * cells)


def lines_from_proposals(boxes: np.ndarray, sc: np.ndarray, side_x: np.ndarray, scale: float, width: int,
                         height: int, p: DetectionParams) -> list[TextLine]:
    """Proposals of one or more views (network pixels of the unshifted frame) to lines in original pixels."""
    keep = np.flatnonzero(sc >= p.score_threshold)
    if keep.size > (cap := max_proposals(width, height, scale, p)):
        keep = keep[np.argsort(-sc[keep], kind="stable")[:cap]]
    boxes, sc, side_x = boxes[keep] / scale, sc[keep], side_x[keep] / scale
    boxes = clip_boxes(boxes, width, height)
    keep = nms(boxes, sc, p.nms_threshold)
    boxes, sc, side_x = boxes[keep], sc[keep], side_x[keep]
    # the graph works on the network's 16 px grid: link in network pixels, report in original pixels
    lines = build_lines(
        boxes * scale,
        sc,
        side_x * scale,
        max_gap=p.line_max_gap,
        min_overlap=p.line_min_overlap,
        min_proposals=p.line_min_proposals,
        min_score=p.line_min_score,
    )
    out = []
    for ln in lines:
        box = tuple(float(v) for v in clip_boxes(np.asarray(ln.box) / scale, width, height))
        poly = tuple((min(max(x / scale, 0.0), float(width)), min(max(y / scale, 0.0), float(height)))
                     for x, y in ln.poly)  # kept inside the image, like the box
        out.append(TextLine(box, poly, ln.score, ln.num_proposals))  # type: ignore[arg-type]
    return out
