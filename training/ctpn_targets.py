"""CTPN training targets: split each text line into 16 px strips and label the anchors of each strip's column.

A line is an axis-aligned box ``(x0, y0, x1, y1)`` or a quadrilateral ``((x, y) x 4)``. For a quadrilateral each
strip gets the quadrilateral's own vertical extent within that strip, so a tilted line is learnt as a staircase of
short proposals, which is how CTPN's fixed-width anchors can follow it. Anchors whose vertical IoU with their
strip reaches 0.7 (and each strip's best anchor) are text; those below 0.5 with every strip are background; the
rest are ignored. Columns within 32 px of a line's end learn the side offset.

``tie_ratio`` (off by default, and for every shipped stage) also ignores a strip's near-ties: anchors within that
share of its best IoU. Text 8-18 px high overlaps its best anchors under 0.7, often two of them (neighbouring rows
or heights) about equally, and the paper's rule then makes the best one text and its near twin background: two
contradicting labels for one picture, in about 3 of 10 strips of such text. Trained with 0.8 for 3,000 CPU steps it
did no better than the same run without it (`docs/accuracy.md`, 2026-12-05).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serve_app.ocr.processing.anchors import ANCHOR_WIDTH, anchor_grid, encode_side, encode_vertical, vertical_iou

POS_IOU = 0.7
NEG_IOU = 0.5
SIDE_RANGE = 32


@dataclass
class Targets:
    labels: np.ndarray  # (h, w, k) int64: 1 text, 0 background, -1 ignore
    vertical: np.ndarray  # (h, w, k, 2) float32
    side: np.ndarray  # (h, w, k) float32
    side_mask: np.ndarray  # (h, w, k) bool


def as_quads(lines: np.ndarray) -> np.ndarray:
    """Boxes ``(L, 4)`` or quadrilaterals ``(L, 4, 2)`` to quadrilaterals, clockwise from the top left."""
    lines = np.asarray(lines, dtype=np.float32)
    if lines.ndim == 3:
        return lines
    lines = lines.reshape(-1, 4)
    x0, y0, x1, y1 = lines.T
    return np.stack([np.stack([x0, y0], 1), np.stack([x1, y0], 1), np.stack([x1, y1], 1), np.stack([x0, y1], 1)], 1)


def clip_x(poly: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """A convex polygon ``(n, 2)`` cut to ``lo <= x <= hi`` (Sutherland-Hodgman against two vertical edges)."""
    for edge, sign in ((lo, 1.0), (hi, -1.0)):
        out = []
        for i in range(len(poly)):
            a, b = poly[i], poly[(i + 1) % len(poly)]
            a_in, b_in = sign * (a[0] - edge) >= 0, sign * (b[0] - edge) >= 0
            if a_in != b_in:
                t = (edge - a[0]) / (b[0] - a[0])
                out.append((edge, a[1] + t * (b[1] - a[1])))
            if b_in:
                out.append((b[0], b[1]))
        poly = np.asarray(out, dtype=np.float32).reshape(-1, 2)
        if not len(poly):
            break
    return poly


def make_targets(lines: np.ndarray, h: int, w: int, stride: int = 16, tie_ratio: float | None = None) -> Targets:
    """Targets for one image from line boxes ``(L, 4)`` or quadrilaterals ``(L, 4, 2)`` (network pixels)."""
    cxa, cya, ha = anchor_grid(h, w, stride)
    ay0, ay1 = cya - ha / 2, cya + ha / 2  # (h, w, k)
    k = ha.shape[-1]
    best = np.zeros((h, w, k), dtype=np.float32)
    tied = np.zeros((h, w, k), dtype=bool)
    vertical = np.zeros((h, w, k, 2), dtype=np.float32)
    positive = np.zeros((h, w, k), dtype=bool)
    side = np.zeros((h, w, k), dtype=np.float32)
    side_mask = np.zeros((h, w, k), dtype=bool)
    for quad in as_quads(lines):
        x0, x1 = float(quad[:, 0].min()), float(quad[:, 0].max())
        if x1 - x0 < 4 or np.ptp(quad[:, 1]) < 4:
            continue
        j0 = int(np.clip(np.floor(x0 / stride), 0, w - 1))
        j1 = int(np.clip(np.floor((x1 - 1) / stride), 0, w - 1))
        ious = {}
        for j in range(j0, j1 + 1):
            strip = clip_x(quad, j * stride, (j + 1) * stride)
            if len(strip) < 3:
                continue
            y0, y1 = float(strip[:, 1].min()), float(strip[:, 1].max())
            if y1 - y0 < 2:
                continue
            cy, sh = np.asarray((y0 + y1) / 2, np.float32), np.asarray(y1 - y0, np.float32)  # 0-d arrays
            iou = vertical_iou(ay0[:, j], ay1[:, j], np.asarray(y0, np.float32), np.asarray(y1, np.float32))  # (h, k)
            target = encode_vertical(cy, sh, cya[:, j], ha[:, j])
            ious[j] = iou
            better = iou > best[:, j]
            best[:, j] = np.where(better, iou, best[:, j])
            vertical[:, j] = np.where(better[..., None], target, vertical[:, j])
            top = np.unravel_index(int(np.argmax(iou)), iou.shape)
            if tie_ratio is not None and iou[top] > 0:
                tied[:, j] |= iou >= tie_ratio * iou[top]
            positive[top[0], j, top[1]] = True
            vertical[top[0], j, top[1]] = target[top]
        if not ious:
            continue
        for x_end in (x0, x1):
            if not 0 <= x_end <= w * stride:  # the line goes on beyond the crop: its end is not here
                continue
            j_lo, j_hi = max(0, int((x_end - SIDE_RANGE) // stride)), min(w, int((x_end + SIDE_RANGE) // stride) + 1)
            for j in range(j_lo, j_hi):
                if abs(cxa[0, j, 0] - x_end) <= SIDE_RANGE:
                    m = ious[min(ious, key=lambda c: abs(c - j))] > NEG_IOU  # the nearest strip of this line
                    side[:, j][m] = encode_side(np.asarray(x_end, np.float32), cxa[:, j][m])
                    side_mask[:, j] |= m
    labels = np.full((h, w, k), -1, dtype=np.int64)
    labels[(best < NEG_IOU) & ~tied] = 0
    labels[(best >= POS_IOU) | positive] = 1
    return Targets(labels, vertical, side, side_mask)


assert ANCHOR_WIDTH == 16
