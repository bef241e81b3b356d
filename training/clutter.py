"""Real-world clutter for synthetic scene frames: the structure and light that smooth backgrounds lack.

The detector finds 96 % of the words on IC15 TRAIN layouts rebuilt on `scenes.scene_background` but only about half
of them on real frames. A real frame is busy where the layouts are smooth: shelves, tiles and windows (grids seen in
perspective), railings and blinds (rows of vertical bars, which look like CTPN's 16 px strips of text), signboards,
logos and strokes, and uneven light over everything, text included. `clutter` draws such structure onto a
background before the words go on; `photo_light` lights and degrades the finished frame as a camera would.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from training.augment import perspective_coeffs


def _colour(rng: random.Random, base: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    if base is None or rng.random() < 0.4:
        g = rng.randint(0, 255)
        r, gr, b = (int(np.clip(g + rng.randint(-40, 40), 0, 255)) for _ in range(3))
        return r, gr, b
    r, gr, b = (int(np.clip(c + rng.randint(-70, 70), 0, 255)) for c in base)
    return r, gr, b


def _warp_onto(img: Image.Image, layer: Image.Image, mask: Image.Image, rng: random.Random,
               box: tuple[int, int, int, int]) -> None:
    """Paste ``layer`` through ``mask`` into ``box``, seen in a random perspective."""
    x0, y0, x1, y1 = box
    w, h = layer.size
    bw, bh = max(x1 - x0, 4), max(y1 - y0, 4)
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    dst = np.array([[0, 0], [bw, 0], [bw, bh], [0, bh]], dtype=np.float64)
    dst += np.array([[rng.uniform(-0.2, 0.2) * bw, rng.uniform(-0.2, 0.2) * bh] for _ in range(4)])
    dst -= dst.min(0)
    size = (int(dst[:, 0].max()) + 1, int(dst[:, 1].max()) + 1)
    coeffs = perspective_coeffs(src, dst)
    img.paste(layer.transform(size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR),
              (x0, y0), mask.transform(size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR))


def _grid(rng: random.Random, w: int, h: int, base: tuple[int, int, int]) -> tuple[Image.Image, Image.Image]:
    """Tiles, shelves, windows, brickwork: a lattice of lines, some rows offset."""
    layer = Image.new("RGB", (w, h), _colour(rng, base))
    draw = ImageDraw.Draw(layer)
    line = _colour(rng, base)
    sx, sy = rng.randint(8, max(9, w // 3)), rng.randint(8, max(9, h // 3))
    width = rng.randint(1, 5)
    brick = rng.random() < 0.3
    for i, y in enumerate(range(0, h + sy, sy)):
        draw.line([(0, y), (w, y)], fill=line, width=width)
        off = sx // 2 if brick and i % 2 else 0
        for x in range(-off, w + sx, sx):
            draw.line([(x, y), (x, y + sy)], fill=line, width=width)
    return layer, Image.new("L", (w, h), 255)


def _bars(rng: random.Random, w: int, h: int, base: tuple[int, int, int]) -> tuple[Image.Image, Image.Image]:
    """Railings, blinds, barcodes, book spines: vertical bars of uneven width, hard negatives for a strip detector."""
    layer = Image.new("RGB", (w, h), _colour(rng, base))
    mask = Image.new("L", (w, h), 0 if rng.random() < 0.5 else 255)
    draw, mdraw = ImageDraw.Draw(layer), ImageDraw.Draw(mask)
    fill = _colour(rng, base)
    x = rng.uniform(0, 6)
    while x < w:
        bw = rng.uniform(1, 8)
        draw.rectangle([x, 0, x + bw, h], fill=fill)
        mdraw.rectangle([x, 0, x + bw, h], fill=255)
        x += bw + rng.uniform(1, 14)
    return layer, mask


def _strokes(rng: random.Random, w: int, h: int, base: tuple[int, int, int]) -> tuple[Image.Image, Image.Image]:
    """Logos, pictograms, cables and foliage edges: bundles of curved strokes that are not letters."""
    layer = Image.new("RGB", (w, h), _colour(rng, base))
    mask = Image.new("L", (w, h), 0)
    draw, mdraw = ImageDraw.Draw(layer), ImageDraw.Draw(mask)
    fill = _colour(rng, base)
    for _ in range(rng.randint(2, 12)):
        pts = [(rng.uniform(0, w), rng.uniform(0, h))]
        for _ in range(rng.randint(2, 6)):
            px, py = pts[-1]
            pts.append((px + rng.uniform(-w / 2, w / 2), py + rng.uniform(-h / 2, h / 2)))
        width = rng.randint(1, max(2, min(w, h) // 8))
        draw.line(pts, fill=fill, width=width, joint="curve")
        mdraw.line(pts, fill=255, width=width, joint="curve")
    return layer, mask


def _panel(rng: random.Random, w: int, h: int, base: tuple[int, int, int]) -> tuple[Image.Image, Image.Image]:
    """A signboard, door or box: a shaded slab with a rim."""
    a, b = np.array(_colour(rng, base), np.float32), np.array(_colour(rng, base), np.float32)
    t = np.linspace(0, 1, h if rng.random() < 0.5 else w, dtype=np.float32)
    ramp = a + (b - a) * t[:, None]
    arr = ramp[:, None, :].repeat(w, 1) if len(t) == h else ramp[None, :, :].repeat(h, 0)
    layer = Image.fromarray(arr.astype(np.uint8))
    if rng.random() < 0.6:
        ImageDraw.Draw(layer).rectangle([0, 0, w - 1, h - 1], outline=_colour(rng, base), width=rng.randint(1, 6))
    return layer, Image.new("L", (w, h), 255)


def _texture(rng: random.Random, w: int, h: int, base: tuple[int, int, int]) -> tuple[Image.Image, Image.Image]:
    """Gravel, fabric, leaves, carpet: fine noise at a random grain, stretched along one axis at times."""
    nrng = np.random.default_rng(rng.randrange(2**31))
    gw, gh = max(2, w // rng.randint(1, 6)), max(2, h // rng.randint(1, 6))
    if rng.random() < 0.3:
        gh = max(2, gh // 6)
    noise = nrng.normal(0, rng.uniform(15, 60), (gh, gw, 1)).astype(np.float32)
    arr = np.clip(np.array(_colour(rng, base), np.float32) + noise, 0, 255).astype(np.uint8)
    layer = Image.fromarray(arr.repeat(3, 2) if arr.shape[2] == 1 else arr).resize((w, h), Image.Resampling.BILINEAR)
    return layer, Image.new("L", (w, h), 255)


_MAKERS = (_grid, _bars, _strokes, _panel, _texture)


def clutter(rng: random.Random, img: Image.Image, amount: tuple[int, int] = (4, 14)) -> Image.Image:
    """Draw ``amount`` pieces of man-made structure onto ``img`` (in place), each seen in perspective."""
    w, h = img.size
    r, g, b = (int(v) for v in np.asarray(img.resize((1, 1))).reshape(3))
    base = (r, g, b)
    for _ in range(rng.randint(*amount)):
        pw = int(w * min(1.0, rng.lognormvariate(np.log(0.2), 0.7)))
        ph = int(h * min(1.0, rng.lognormvariate(np.log(0.25), 0.7)))
        pw, ph = max(pw, 12), max(ph, 12)
        x0, y0 = rng.randint(-pw // 3, w - 2 * pw // 3), rng.randint(-ph // 3, h - 2 * ph // 3)
        layer, mask = rng.choice(_MAKERS)(rng, pw, ph, base)
        if rng.random() < 0.4:
            layer = layer.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 2.0)))
        _warp_onto(img, layer, mask, rng, (x0, y0, x0 + pw, y0 + ph))
    return img


def photo_light(rng: random.Random, img: Image.Image) -> Image.Image:
    """Uneven light, glare, colour cast and camera degradation over the whole frame, text included."""
    w, h = img.size
    arr: np.ndarray = np.asarray(img, dtype=np.float32)
    nrng = np.random.default_rng(rng.randrange(2**31))
    cells = rng.randint(2, 5)
    gain = Image.fromarray((nrng.uniform(0, 1, (cells, cells)) * 255).astype(np.uint8)).resize(
        (w, h), Image.Resampling.BICUBIC)
    lo, hi = rng.uniform(0.45, 0.9), rng.uniform(1.0, 1.35)
    arr = arr * (lo + (hi - lo) * np.asarray(gain, np.float32)[..., None] / 255)
    if rng.random() < 0.3:  # a glare spot or a lamp
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.3) * max(w, h)
        yy, xx = np.ogrid[:h, :w]
        arr += rng.uniform(40, 160) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
    arr = arr * np.array([rng.uniform(0.85, 1.15) for _ in range(3)], np.float32)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.5:
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=rng.randint(35, 85))
        out = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return out
