"""Box helpers shared by detection, recognition and evaluation: NMS, clipping, point in polygon."""

from __future__ import annotations

import numpy as np


def box_area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    areas = box_area(boxes)
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        xx0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx1 - xx0, 0, None) * np.clip(yy1 - yy0, 0, None)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-6)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    out = boxes.copy()
    out[..., [0, 2]] = np.clip(out[..., [0, 2]], 0, width - 1)
    out[..., [1, 3]] = np.clip(out[..., [1, 3]], 0, height - 1)
    return out


def inside(poly: np.ndarray | list, x: float, y: float) -> bool:
    """Even-odd rule: whether point ``(x, y)`` lies inside polygon ``poly`` (``(N, 2)`` vertices)."""
    pts = np.asarray(poly, dtype=np.float64)
    hit = False
    for (x1, y1), (x2, y2) in zip(pts, np.roll(pts, -1, axis=0)):
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            hit = not hit
    return hit
