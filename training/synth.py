"""Synthetic printed text: word and line crops for the CRNN, whole pages with line boxes for the CTPN.

Plain Pillow, one font file per sample, seeded `random.Random` everywhere so that a seed reproduces a set.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.augment import distort_crop, photometric
from training.corpus import random_line, random_word
from training.fonts import latin_fonts


@functools.lru_cache(maxsize=4096)
def font_at(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def contrasting_colours(rng: random.Random) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Foreground and background with enough contrast to be legible."""
    while True:
        r = rng.random()
        if r < 0.6:
            bg = tuple(rng.randint(200, 255) for _ in range(3))
            fg = tuple(rng.randint(0, 80) for _ in range(3))
        elif r < 0.8:
            bg = tuple(rng.randint(0, 70) for _ in range(3))
            fg = tuple(rng.randint(180, 255) for _ in range(3))
        else:
            bg = tuple(rng.randint(0, 255) for _ in range(3))
            fg = tuple(rng.randint(0, 255) for _ in range(3))
        lum_bg = 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2]
        lum_fg = 0.299 * fg[0] + 0.587 * fg[1] + 0.114 * fg[2]
        if abs(lum_bg - lum_fg) > 90:
            return fg, bg  # type: ignore[return-value]


def _background(rng: random.Random, w: int, h: int, bg: tuple[int, int, int]) -> Image.Image:
    arr = np.empty((h, w, 3), dtype=np.float32)
    arr[:] = bg
    if rng.random() < 0.4:  # gradient
        g = np.linspace(-1, 1, w if rng.random() < 0.5 else h, dtype=np.float32) * rng.uniform(5, 35)
        arr += g[None, :, None] if g.size == w else g[:, None, None]
    if rng.random() < 0.5:  # paper grain
        arr += np.random.default_rng(rng.randrange(2**31)).normal(0, rng.uniform(2, 12), (h, w, 1))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def line_extent(font: ImageFont.FreeTypeFont, text: str, x: float, y: float) -> tuple[float, float, float, float]:
    """The box a reader would draw around ``text`` drawn at (x, y): ink left/right, cap top to descender bottom."""
    ink = font.getbbox(text)
    ref = font.getbbox("Hg")
    return x + ink[0], y + min(ref[1], ink[1]), x + ink[2], y + max(ref[3], ink[3])


def render_crop(rng: random.Random, text: str | None = None, clean: bool = False) -> tuple[np.ndarray, str]:
    """A grayscale crop of one word or line, padded like the service's line crops (with jitter), and its text."""
    if text is None:
        text = random_word(rng) if rng.random() < 0.6 else random_line(rng, max_words=4, max_chars=24)
    font = font_at(rng.choice(latin_fonts()), rng.randint(22, 44))
    fg, bg = ((0, 0, 0), (255, 255, 255)) if clean else contrasting_colours(rng)
    x0, y0, x1, y1 = line_extent(font, text, 0, 0)
    bh = y1 - y0
    px = (bh * rng.uniform(0.05, 0.5), bh * rng.uniform(0.05, 0.5))
    py = (bh * rng.uniform(0.03, 0.3), bh * rng.uniform(0.03, 0.3))
    w, h = int(x1 - x0 + px[0] + px[1]) + 1, int(bh + py[0] + py[1]) + 1
    img = _background(rng, w, h, bg) if not clean else Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    draw.text((px[0] - x0, py[0] - y0), text, font=font, fill=fg)
    if not clean:
        if rng.random() < 0.15:
            ly = int(py[0] + bh * rng.choice([1.02, 0.55]))
            draw.line([(0, ly), (w, ly)], fill=fg, width=max(1, int(bh / 15)))
        if rng.random() < 0.2:  # squeeze or stretch, as real fonts and cameras do
            img = img.resize((max(4, int(w * rng.uniform(0.7, 1.3))), h), Image.Resampling.BILINEAR)
        img = distort_crop(rng, img, geometric=0.45)  # curved baselines, perspective, rotation, blur, noise, JPEG
    return np.asarray(img.convert("L")), text


@dataclass
class PageLine:
    text: str
    box: tuple[float, float, float, float]
    words: list[tuple[str, tuple[float, float, float, float]]] = field(default_factory=list)


def draw_line(draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont, text: str, x: float, y: float,
               fill: tuple[int, int, int]) -> PageLine:
    draw.text((x, y), text, font=font, fill=fill)
    line = PageLine(text, line_extent(font, text, x, y))
    offset = 0
    for word in text.split(" "):
        if word:
            start = text.index(word, offset)
            prefix = font.getlength(text[:start])
            wb = line_extent(font, word, x + prefix, y)
            line.words.append((word, (wb[0], line.box[1], wb[2], line.box[3])))
            offset = start + len(word)
    return line


def render_lines(lines: list[str], font_path: str | None = None, size: int = 32, margin: int = 40,
                 spacing: float = 1.8, width: int | None = None) -> tuple[Image.Image, list[PageLine]]:
    """A clean page with the given lines, black on white: the known input of end-to-end tests and demos."""
    font = font_at(font_path or default_font(), size)
    w = width or int(max(font.getlength(t) for t in lines) + 2 * margin)
    h = int(2 * margin + spacing * size * len(lines))
    img = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    out = [draw_line(draw, font, t, margin, margin + i * spacing * size, (0, 0, 0)) for i, t in enumerate(lines)]
    return img, out


def default_font() -> str:
    """DejaVu Sans where installed: what rendered test pages are set in."""
    fonts = latin_fonts()
    for name in ("DejaVuSans.ttf", "LiberationSans-Regular.ttf"):
        for f in fonts:
            if f.endswith("/" + name):
                return f
    return fonts[0]


def render_page(
    rng: random.Random, width: int | None = None, height: int | None = None
) -> tuple[Image.Image, list[PageLine]]:
    """A document- or sign-like page: blocks of lines in random fonts, sizes and colours, with clutter."""
    w = width or rng.randint(320, 1024)
    h = height or rng.randint(320, 1024)
    fg, bg = contrasting_colours(rng)
    img = _background(rng, w, h, bg)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(0, 4)):  # clutter: rules, boxes and blobs that are not text
        c = tuple(rng.randint(0, 255) for _ in range(3))
        x0, y0 = rng.randint(0, w), rng.randint(0, h)
        kind = rng.random()
        if kind < 0.4:
            draw.line([(x0, y0), (x0 + rng.randint(-w, w), y0 + rng.randint(-8, 8))], fill=c, width=rng.randint(1, 4))
        elif kind < 0.7:
            draw.rectangle([x0, y0, x0 + rng.randint(5, w // 3), y0 + rng.randint(5, h // 3)], outline=c,
                           width=rng.randint(1, 3))
        else:
            r = rng.randint(3, 40)
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=c)
    lines: list[PageLine] = []
    y = rng.uniform(4, 40)
    while y < h - 12:
        size = int(np.clip(rng.lognormvariate(np.log(22), 0.45), 10, 90))
        font = font_at(rng.choice(latin_fonts()), size)
        colour = fg if rng.random() < 0.8 else contrasting_colours(rng)[0]
        n = rng.randint(1, 6)
        spacing = rng.uniform(1.15, 2.2)
        x_base = rng.uniform(4, w * 0.4)
        for _ in range(n):
            if y + size * 1.3 > h:
                break
            x = x_base
            segments = 2 if rng.random() < 0.2 else 1
            for _ in range(segments):
                text = random_line(rng, max_words=5)
                while text and x + font.getlength(text) > w - 4:
                    text = text.rsplit(" ", 1)[0] if " " in text else text[:-1]
                text = text.strip()
                if text and rng.random() < 0.95:
                    lines.append(draw_line(draw, font, text, x, y, colour))
                    x = lines[-1].box[2] + rng.uniform(3, 10) * size
                if x > w - 4 * size:
                    break
            y += size * spacing
        y += rng.uniform(0, 3) * size
    return photometric(rng, img), lines
