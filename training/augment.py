"""Geometric and photometric distortions of crops and pages: what cameras do to text that fonts alone do not.

Curved baselines, perspective, rotation, margin jitter, blur, noise, JPEG and contrast changes. Everything takes a
seeded `random.Random`, so a seed reproduces a sample.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageFilter


def perspective_coeffs(src: np.ndarray, dst: np.ndarray) -> tuple[float, ...]:
    """The 8 coefficients PIL's PERSPECTIVE transform wants to map output points ``dst`` back to input ``src``."""
    rows = []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return tuple(np.linalg.solve(np.array(rows, dtype=np.float64), src.reshape(8).astype(np.float64)))


def _edge_fill(arr: np.ndarray) -> tuple[int, ...] | int:
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    fill = np.median(border, axis=0)
    return int(fill) if np.ndim(fill) == 0 else tuple(int(v) for v in fill)


def perspective(rng: random.Random, img: Image.Image, strength: float = 0.08) -> Image.Image:
    """Move each corner by up to ``strength`` of the crop's height (and a little of its width)."""
    w, h = img.size
    dx, dy = strength * h + 0.02 * w, strength * h
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    dst = src + np.array([[rng.uniform(-dx, dx), rng.uniform(-dy, dy)] for _ in range(4)])
    dst -= dst.min(axis=0)
    ow, oh = int(np.ceil(dst[:, 0].max())), int(np.ceil(dst[:, 1].max()))
    fill = _edge_fill(np.asarray(img))
    return img.transform((max(ow, 4), max(oh, 4)), Image.Transform.PERSPECTIVE, perspective_coeffs(src, dst),
                         Image.Resampling.BILINEAR, fillcolor=fill)


def curve(rng: random.Random, img: Image.Image, max_amplitude: float = 0.15) -> Image.Image:
    """Bend the baseline: shift every column by a sine of up to ``max_amplitude`` of the height."""
    arr = np.asarray(img)
    h, w = arr.shape[:2]
    amp = rng.uniform(0.03, max_amplitude) * h
    period = rng.uniform(1.0, 3.0) * w
    phase = rng.uniform(0, 2 * np.pi)
    shift = np.round(amp * np.sin(2 * np.pi * np.arange(w) / period + phase)).astype(int)
    shift -= shift.min()
    pad = int(shift.max())
    fill = _edge_fill(arr)
    out = np.empty((h + pad, w, *arr.shape[2:]), dtype=arr.dtype)
    out[...] = fill
    rows = np.arange(h)[:, None] + shift[None, :]
    out[rows, np.arange(w)[None, :]] = arr
    return Image.fromarray(out)


def arc(rng: random.Random, gray: np.ndarray, max_angle: float = 2.6) -> np.ndarray:
    """Set a crop's text along a circle, as round signs do: the glyphs turn with it (`curve` only shifts columns).

    The text's middle line keeps its length and spans up to ``max_angle`` radians, over or under the centre.
    """
    h, w = gray.shape
    angle = rng.uniform(0.4, max(0.4, min(max_angle, w / (0.8 * h))))
    radius = w / angle
    over = rng.random() < 0.6  # text over the centre (tops outward) is the commoner sign layout
    # forward-map the crop's border to find the output's extent
    xs = np.concatenate([np.linspace(0, w, 32), np.linspace(0, w, 32), np.zeros(8), np.full(8, w)])
    ys = np.concatenate([np.zeros(32), np.full(32, h), np.linspace(0, h, 8), np.linspace(0, h, 8)])
    theta = (xs - w / 2) / radius
    r = radius + (h / 2 - ys) if over else radius - h / 2 + ys
    px, py = r * np.sin(theta), (-r * np.cos(theta)) if over else r * np.cos(theta)
    x0, y0 = px.min(), py.min()
    ow, oh = int(np.ceil(px.max() - x0)) + 1, int(np.ceil(py.max() - y0)) + 1
    gx, gy = np.meshgrid(np.arange(ow) + x0, np.arange(oh) + y0)
    dist = np.hypot(gx, gy)
    theta = np.arctan2(gx, -gy) if over else np.arctan2(gx, gy)
    sx = w / 2 + radius * theta - 0.5
    sy = (h / 2 - (dist - radius) if over else dist - (radius - h / 2)) - 0.5
    inside = (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)
    sx, sy = np.clip(sx, 0, w - 1), np.clip(sy, 0, h - 1)
    ix, iy = np.minimum(sx.astype(int), w - 2 if w > 1 else 0), np.minimum(sy.astype(int), h - 2 if h > 1 else 0)
    fx, fy = sx - ix, sy - iy
    g = gray.astype(np.float32)
    jx, jy = np.minimum(ix + 1, w - 1), np.minimum(iy + 1, h - 1)
    out = (g[iy, ix] * (1 - fx) * (1 - fy) + g[iy, jx] * fx * (1 - fy)
           + g[jy, ix] * (1 - fx) * fy + g[jy, jx] * fx * fy)
    out[~inside] = _edge_fill(gray)
    return np.rint(out).astype(np.uint8)


def jitter_margins(rng: random.Random, gray: np.ndarray, amount: float = 0.12) -> np.ndarray:
    """Cut into or pad each side by up to ``amount`` of the height, as a detector's boxes would."""
    h = gray.shape[0]
    fill = _edge_fill(gray)
    d = [int(rng.uniform(-amount, amount) * h) for _ in range(4)]  # left, top, right, bottom
    out = np.pad(gray, ((max(d[1], 0), max(d[3], 0)), (max(d[0], 0), max(d[2], 0))), constant_values=fill)
    t, b = max(-d[1], 0), out.shape[0] - max(-d[3], 0)
    left, right = max(-d[0], 0), out.shape[1] - max(-d[2], 0)
    cut = out[t:b, left:right]
    return cut if cut.shape[0] >= 8 and cut.shape[1] >= 8 else gray


def photometric(rng: random.Random, img: Image.Image) -> Image.Image:
    """Blur, contrast/brightness, noise and JPEG, each with some probability."""
    if rng.random() < 0.35:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.4)))
    arr: np.ndarray = np.asarray(img, dtype=np.float32)  # float64 once noise is added
    if rng.random() < 0.5:
        arr = (arr - arr.mean()) * rng.uniform(0.5, 1.3) + arr.mean() + rng.uniform(-30, 30)
    if rng.random() < 0.3:
        arr = arr + np.random.default_rng(rng.randrange(2**31)).normal(0, rng.uniform(3, 14), arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=rng.randint(25, 90))
        img = Image.open(io.BytesIO(buf.getvalue())).convert(img.mode)
    return img


def distort_crop(rng: random.Random, img: Image.Image, geometric: float = 0.5) -> Image.Image:
    """Curve, perspective or a small rotation (together with probability ``geometric``), then photometric noise."""
    if rng.random() < geometric:
        r = rng.random()
        if r < 0.35:
            img = curve(rng, img)
        elif r < 0.8:
            img = perspective(rng, img)
        else:
            fill = _edge_fill(np.asarray(img))
            img = img.rotate(rng.uniform(-5, 5), resample=Image.Resampling.BILINEAR, expand=True, fillcolor=fill)
    return photometric(rng, img)


def augment_real_crop(rng: random.Random, gray: np.ndarray) -> np.ndarray:
    """A real TRAIN crop, distorted so that a few thousand of them go further."""
    if rng.random() < 0.15:
        return gray
    gray = jitter_margins(rng, gray)
    img = Image.fromarray(gray)
    if rng.random() < 0.15 and img.height > 16:  # a distant word: few pixels, upscaled back by the reader
        f = rng.uniform(0.35, 0.7)
        img = img.resize((max(8, int(img.width * f)), max(8, int(img.height * f))), Image.Resampling.BILINEAR)
    img = distort_crop(rng, img, geometric=0.4)
    if rng.random() < 0.2:  # squeeze or stretch
        img = img.resize((max(8, int(img.width * rng.uniform(0.75, 1.3))), img.height), Image.Resampling.BILINEAR)
    out = np.asarray(img)
    return 255 - out if rng.random() < 0.1 else out
