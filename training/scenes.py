"""Synthetic scene frames for the CTPN: real TRAIN word crops placed in rows on cluttered, camera-like backgrounds.

`../shared/train` has no ICDAR 2015 scene frames, only 6,468 real word crops cut from them and from IIIT5K. Pasting
those crops (with their own lighting, blur and perspective) onto busy backgrounds, at the small sizes incidental
text has, gives the detector real scene text to find; words pasted side by side on a row form one labelled line.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from training.augment import perspective_coeffs
from training.clutter import clutter, photo_light
from training.corpus import random_line
from training.fonts import latin_fonts
from training.synth import contrasting_colours, draw_line, font_at, line_extent


def _blotches(rng: random.Random, w: int, h: int) -> np.ndarray:
    """Low-frequency colour noise at a few scales: walls, foliage, sky and shadows, roughly."""
    nrng = np.random.default_rng(rng.randrange(2**31))
    out = np.zeros((h, w, 3), dtype=np.float32)
    for cells, weight in ((3, 1.0), (9, 0.5), (27, 0.25)):
        grid = nrng.uniform(0, 255, (cells, cells, 3)).astype(np.uint8)
        layer = Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC)
        out += weight * np.asarray(layer, dtype=np.float32)
    out /= 1.75
    gray = out.mean(axis=2, keepdims=True)
    return gray + rng.uniform(0.15, 0.8) * (out - gray)  # real scenes are far less saturated than noise


def scene_background(rng: random.Random, w: int, h: int) -> Image.Image:
    img = Image.fromarray(np.clip(_blotches(rng, w, h), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(3, 25)):  # signs, windows, poles, cars: flat shapes with edges
        c = tuple(rng.randint(0, 255) for _ in range(3))
        x0, y0 = rng.randint(-w // 4, w), rng.randint(-h // 4, h)
        x1, y1 = x0 + rng.randint(4, w // 2), y0 + rng.randint(4, h // 2)
        kind = rng.random()
        if kind < 0.5:
            draw.rectangle([x0, y0, x1, y1], fill=c if rng.random() < 0.7 else None, outline=c, width=rng.randint(1, 4))
        elif kind < 0.75:
            draw.ellipse([x0, y0, x1, y1], fill=c)
        else:
            draw.line([(x0, y0), (x1, y1)], fill=c, width=rng.randint(1, 6))
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3)))
    return img


def camera_background(rng: random.Random, w: int, h: int, busy: bool = False) -> Image.Image:
    """`scene_background`, with man-made clutter drawn over it when ``busy`` (`training.clutter`)."""
    img = scene_background(rng, w, h)
    return clutter(rng, img) if busy else img


def paste_quad(canvas: Image.Image, crop: Image.Image, quad: list | np.ndarray) -> None:
    """Warp a word crop back into the quadrilateral it was cut from, so its real tilt and perspective return."""
    q = np.asarray(quad, dtype=np.float64)
    x0, y0 = np.floor(q.min(0)).astype(int)
    x1, y1 = np.ceil(q.max(0)).astype(int)
    size = (int(x1 - x0) + 1, int(y1 - y0) + 1)
    w, h = crop.size
    coeffs = perspective_coeffs(np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64), q - [x0, y0])
    warped = crop.transform(size, Image.Transform.PERSPECTIVE, coeffs, resample=Image.Resampling.BILINEAR)
    mask = Image.new("L", crop.size, 255).transform(size, Image.Transform.PERSPECTIVE, coeffs,
                                                    resample=Image.Resampling.BILINEAR)
    canvas.paste(warped, (int(x0), int(y0)), mask)


def faded(rng: random.Random, crop: Image.Image) -> Image.Image:
    """A word crop with its contrast cut to 30-80 %: faint signs, glare and haze, the words a detector misses most."""
    a = np.asarray(crop, dtype=np.float32)
    mean = a.reshape(-1, a.shape[-1]).mean(0) if a.ndim == 3 else a.mean()
    k = rng.uniform(0.3, 0.8)
    return Image.fromarray(np.clip(mean + k * (a - mean), 0, 255).astype(np.uint8))


def low_resolution(rng: random.Random, img: Image.Image) -> Image.Image:
    """The image shrunk to 45-85 % and enlarged back: small camera text, soft after the service's own upscaling."""
    f = rng.uniform(0.45, 0.85)
    small = img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))), Image.Resampling.BILINEAR)
    return small.resize(img.size, Image.Resampling.BILINEAR)


def compose_frame(rng: random.Random, words: Sequence[tuple[Image.Image, np.ndarray | list[list[float]]]],
                  frame: tuple[int, int], busy: bool = False, hard: bool = False) -> Image.Image:
    """A whole frame: each word crop warped into its quadrilateral on a background, lit as a camera would when busy.

    In a ``hard`` frame half the words are faded (`faded`).
    """
    canvas = camera_background(rng, *frame, busy=busy)
    for crop, quad in words:
        paste_quad(canvas, faded(rng, crop) if hard and rng.random() < 0.5 else crop, quad)
    return photo_light(rng, canvas) if busy else canvas


def render_layout(rng: random.Random, size: int, words: list[tuple[np.ndarray, np.ndarray]],
                  frame: tuple[int, int] = (1280, 720), busy: bool = False,
                  hard: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` crop of a real ICDAR 2015 TRAIN frame layout and its word quadrilaterals ``(L, 4, 2)``.

    ``words`` are one frame's real word crops with the quadrilateral each was cut from. Each goes back into its
    quadrilateral on a camera-like background, so tilt, perspective, sizes and neighbours are the frame's own.
    The frame is rescaled as the service rescales a 720p frame (x1.33), give or take, and cut around a word.
    A ``busy`` frame has clutter behind the words and uneven light over all of it, as real frames do. A ``hard``
    one is scaled smaller (x0.55-1.1), has faded words, and half the time loses resolution (`low_resolution`):
    small, faint words are those the detector misses most on held-out layouts.
    """
    canvas = compose_frame(rng, [(Image.fromarray(crop), quad) for crop, quad in words], frame, busy, hard)
    s = 4 / 3 * (rng.uniform(0.55, 1.1) if hard else rng.uniform(0.7, 1.4))
    canvas = canvas.resize((round(frame[0] * s), round(frame[1] * s)), Image.Resampling.BILINEAR)
    if hard and rng.random() < 0.5:
        canvas = low_resolution(rng, canvas)
    quads = np.asarray([q for _, q in words], dtype=np.float32).reshape(-1, 4, 2) * s
    cx, cy = quads[rng.randrange(len(quads))].mean(0) if len(quads) else (canvas.width / 2, canvas.height / 2)
    x = int(np.clip(cx - rng.uniform(0.1, 0.9) * size, 0, max(0, canvas.width - size)))
    y = int(np.clip(cy - rng.uniform(0.1, 0.9) * size, 0, max(0, canvas.height - size)))
    img = np.asarray(canvas.crop((x, y, x + size, y + size)))
    quads -= np.array([x, y], dtype=np.float32)
    # keep words whose whole height is in the crop; a word cut through vertically would teach wrong heights
    keep = (quads[:, :, 1].min(1) >= 0) & (quads[:, :, 1].max(1) <= size) & \
        (quads[:, :, 0].max(1) > 8) & (quads[:, :, 0].min(1) < size - 8)
    return img, quads[keep]


def _overlaps(box: tuple[float, float, float, float], taken: list[tuple[float, float, float, float]]) -> bool:
    return any(box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3] for t in taken)


def render_scene(rng: random.Random, size: int, crops: list[np.ndarray],
                 busy: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` RGB scene and its text-line boxes ``(L, 4)``; ``crops`` are real RGB word crops."""
    img = camera_background(rng, size, size, busy=busy)
    taken: list[tuple[float, float, float, float]] = []
    lines: list[tuple[float, float, float, float]] = []
    for _ in range(rng.randint(2, 14)):
        h = int(np.clip(rng.lognormvariate(np.log(20), 0.5), 8, size / 4))
        words = []
        for _ in range(rng.choice([1, 1, 2, 2, 3, 4])):
            crop = crops[rng.randrange(len(crops))] if crops else None
            if crop is None:
                break
            cw = max(4, int(crop.shape[1] * h / max(crop.shape[0], 1) * rng.uniform(0.85, 1.15)))
            words.append(Image.fromarray(crop).resize((cw, h), Image.Resampling.BILINEAR))
        if not words:
            break
        gap = int(h * rng.uniform(0.25, 0.7))
        total = sum(wd.width for wd in words) + gap * (len(words) - 1)
        if total >= size - 4:
            continue
        for _ in range(10):
            x, y = rng.randint(2, size - total - 2), rng.randint(2, size - h - 2)
            box = (x, y, x + total, y + h)
            if not _overlaps((box[0] - h, box[1] - h / 2, box[2] + h, box[3] + h / 2), taken):
                break
        else:
            continue
        for wd in words:
            img.paste(wd, (x, y))
            x += wd.width + gap
        taken.append(box)
        lines.append(box)
    if rng.random() < 0.5:  # some printed lines too: signs and posters
        draw = ImageDraw.Draw(img)
        for _ in range(rng.randint(1, 4)):
            font = font_at(rng.choice(latin_fonts()), int(np.clip(rng.lognormvariate(np.log(22), 0.5), 9, 70)))
            text = random_line(rng, max_words=3)
            tx, ty = rng.uniform(0, size * 0.6), rng.uniform(0, size * 0.9)
            b = line_extent(font, text, tx, ty)
            if not text or b[2] > size - 2 or b[3] > size - 2 or _overlaps(b, taken):
                continue
            draw_line(draw, font, text, tx, ty, contrasting_colours(rng)[0])
            taken.append(b)
            lines.append(b)
    if busy:
        img = photo_light(rng, img)
    arr = np.asarray(img).copy()
    boxes = np.array(lines, dtype=np.float32).reshape(-1, 4)
    return arr, boxes
