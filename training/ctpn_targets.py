"""CTPN training targets: split each text-line box into 16 px strips and label the anchors of each strip's column.

Anchors whose vertical IoU with a strip reaches 0.7 (and each strip's best anchor) are text; those below 0.5 with
every strip are background; the rest are ignored. Columns within 32 px of a line's end learn the side offset.
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


def make_targets(lines: np.ndarray, h: int, w: int, stride: int = 16) -> Targets:
    """Targets for one image from line boxes ``(L, 4)`` (x0, y0, x1, y1 in network pixels) on an ``h x w`` grid."""
    cxa, cya, ha = anchor_grid(h, w, stride)
    ay0, ay1 = cya - ha / 2, cya + ha / 2  # (h, w, k)
    k = ha.shape[-1]
    best = np.zeros((h, w, k), dtype=np.float32)
    vertical = np.zeros((h, w, k, 2), dtype=np.float32)
    positive = np.zeros((h, w, k), dtype=bool)
    side = np.zeros((h, w, k), dtype=np.float32)
    side_mask = np.zeros((h, w, k), dtype=bool)
    for x0, y0, x1, y1 in lines:
        j0 = int(np.clip(np.floor(x0 / stride), 0, w - 1))
        j1 = int(np.clip(np.floor((x1 - 1) / stride), 0, w - 1))
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        iou = vertical_iou(ay0[:, j0], ay1[:, j0], np.float32(y0), np.float32(y1))  # (h, k), same for every column
        target = encode_vertical(np.float32((y0 + y1) / 2), np.float32(y1 - y0), cya[:, j0], ha[:, j0])
        top = np.unravel_index(int(np.argmax(iou)), iou.shape)
        cols = slice(j0, j1 + 1)
        better = iou[:, None, :] > best[:, cols]
        best[:, cols] = np.where(better, iou[:, None, :], best[:, cols])
        vertical[:, cols] = np.where(better[..., None], target[:, None], vertical[:, cols])
        positive[top[0], cols, top[1]] = True
        vertical[top[0], cols, top[1]] = target[top]
        for x_end in (x0, x1):
            j_lo, j_hi = max(0, int((x_end - SIDE_RANGE) // stride)), min(w, int((x_end + SIDE_RANGE) // stride) + 1)
            for j in range(j_lo, j_hi):
                if abs(cxa[0, j, 0] - x_end) <= SIDE_RANGE:
                    m = iou > NEG_IOU
                    side[:, j][m] = encode_side(np.float32(x_end), cxa[:, j][m])
                    side_mask[:, j] |= m
    labels = np.full((h, w, k), -1, dtype=np.int64)
    labels[best < NEG_IOU] = 0
    labels[(best >= POS_IOU) | positive] = 1
    return Targets(labels, vertical, side, side_mask)


assert ANCHOR_WIDTH == 16
