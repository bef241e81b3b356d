"""CTPN anchors: 16 px wide, 10 heights from 11 to 283 px (each 1/0.7 the previous), one set per feature cell.

Pure NumPy so that training targets and inference decoding share exactly one definition.
"""

from __future__ import annotations

import numpy as np

#: The network's output stride: one set of anchors every 16 px, in rows and columns.
STRIDE = 16
ANCHOR_WIDTH = 16
#: The paper's 10 heights: 11 px growing by 1/0.7 per step.
ANCHOR_HEIGHTS = np.array([11, 16, 23, 33, 48, 68, 97, 139, 198, 283], dtype=np.float32)
NUM_ANCHORS = len(ANCHOR_HEIGHTS)


def anchor_grid(h: int, w: int, stride: int = STRIDE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre x, centre y and height of every anchor, each shaped ``(h, w, k)``."""
    cy = (np.arange(h, dtype=np.float32) * stride + (stride - 1) / 2)[:, None, None]
    cx = (np.arange(w, dtype=np.float32) * stride + (stride - 1) / 2)[None, :, None]
    ha = ANCHOR_HEIGHTS[None, None, :]
    shape = (h, w, NUM_ANCHORS)
    return np.broadcast_to(cx, shape), np.broadcast_to(cy, shape), np.broadcast_to(ha, shape)


def encode_vertical(cy: np.ndarray, h: np.ndarray, cya: np.ndarray, ha: np.ndarray) -> np.ndarray:
    """The paper's targets: ``vc = (cy - cya) / ha`` and ``vh = log(h / ha)``, stacked on the last axis."""
    return np.stack([(cy - cya) / ha, np.log(np.maximum(h, 1e-3) / ha)], axis=-1).astype(np.float32)


def decode_vertical(v: np.ndarray, cya: np.ndarray, ha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `encode_vertical`: centre y and height."""
    cy = v[..., 0] * ha + cya
    h = np.exp(np.clip(v[..., 1], -6.0, 6.0)) * ha
    return cy, h


def encode_side(x_side: np.ndarray, cxa: np.ndarray) -> np.ndarray:
    """Side-refinement target: offset of a line's true end from the anchor centre, in anchor widths."""
    return ((x_side - cxa) / ANCHOR_WIDTH).astype(np.float32)


def decode_side(o: np.ndarray, cxa: np.ndarray) -> np.ndarray:
    return o * ANCHOR_WIDTH + cxa


def vertical_iou(y0a: np.ndarray, y1a: np.ndarray, y0b: np.ndarray, y1b: np.ndarray) -> np.ndarray:
    """Overlap of two vertical spans over their union (broadcasting)."""
    inter = np.clip(np.minimum(y1a, y1b) - np.maximum(y0a, y0b), 0, None)
    union = (y1a - y0a) + (y1b - y0b) - inter
    return inter / np.maximum(union, 1e-6)


def proposals(
    scores: np.ndarray, vertical: np.ndarray, side: np.ndarray, stride: int = STRIDE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn one image's raw outputs into proposal boxes.

    ``scores`` is the text probability ``(h, w, k)``, ``vertical`` ``(h, w, k, 2)``, ``side`` ``(h, w, k)``.
    Returns boxes ``(M, 4)`` as x0, y0, x1, y1, their scores ``(M,)`` and refined side x ``(M,)``, one per anchor.
    """
    h, w, _ = scores.shape
    cxa, cya, ha = anchor_grid(h, w, stride)
    cy, bh = decode_vertical(vertical, cya, ha)
    x0 = cxa - ANCHOR_WIDTH / 2 + 0.5
    boxes = np.stack([x0, cy - bh / 2, x0 + ANCHOR_WIDTH - 1, cy + bh / 2], axis=-1).reshape(-1, 4)
    return boxes, scores.reshape(-1), decode_side(side, cxa).reshape(-1)
