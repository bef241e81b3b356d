"""Pages full of text, as the service reads them: A4 letters set edge to edge and whole web pages' screenshots.

    python -m benchmarks.dense_pages                  # 2 pages of each kind, about 2 minutes on 2 cores
    python -m benchmarks.dense_pages --pages 1 --kinds a4-300-8 screenshot-1280x9000
    python -m benchmarks.dense_pages --kinds screenshot-1280x5000 --detection pass_side=2048  # read in parts
    python -m benchmarks.dense_pages --kinds screenshot-1280x5000 --url http://127.0.0.1:8000  # over HTTP
    python -m benchmarks.dense_pages --kinds screenshot-1280x20000 --parts 2 3 6  # what replicas gain on a page
    python -m benchmarks.dense_pages --kinds screenshot-1280x5000 --parts 2 --detection pass_side=2048

Each page is rendered here (common English words, DejaVu fonts), sent as a PNG would be and read in process with
the shipped models and the service's settings (`web_scale.Reader`). Until 2026-12-06 NMS took a flat 2,000
proposals and a page taller than 1.77:1 was brought to 1696 px high: an A4 page of 8 pt text read F1 0.55-0.59 and
a 1280 x 5000 screenshot of 16 px text 0.00 (docs/accuracy.md, "Dense pages and tall strips"). Bag-of-words F1 as in
`training.evaluate`; seconds per read (detect and recognize), medians.
"""

from __future__ import annotations

import argparse
import functools
import io
import random
import time
from collections.abc import Callable
from typing import TypeVar, cast

import httpx
import numpy as np
from PIL import Image, ImageDraw

from benchmarks.web_scale import Reader, Tally
from serve_app.config import AppConfig
from serve_app.imaging import decode_image
from serve_app.ocr import runtime
from serve_app.ocr.pipeline import make_crops
from serve_app.ocr.predictor import DetectorRunner, RecognizerRunner
from serve_app.ocr.processing import detection, recognition
from training.corpus import common_words
from training.fonts import latin_fonts
from training.synth import default_font, font_at

T = TypeVar("T")

SERIF, SANS = "DejaVuSerif.ttf", "DejaVuSans.ttf"

#: name: (width, height, font file, size in px, line pitch in px, margin in px)
KINDS: dict[str, tuple[int, int, str, int, int, int]] = {
    "a4-300-10": (2481, 3507, SERIF, 42, 50, 240),  # 10 pt at 300 dpi: a scanned letter
    "a4-300-8": (2481, 3507, SERIF, 33, 40, 240),
    "a4-200-8": (1654, 2338, SERIF, 22, 26, 160),
    "screenshot-1280x2000": (1280, 2000, SANS, 16, 25, 30),  # 16 px text, as a browser sets it
    "screenshot-1280x5000": (1280, 5000, SANS, 16, 25, 30),
    "screenshot-1280x9000": (1280, 9000, SANS, 16, 25, 30),
    "screenshot-1280x20000": (1280, 20000, SANS, 16, 25, 30),  # read in parts (`detection.windows`)
}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", nargs="+", choices=sorted(KINDS), default=list(KINDS))
    p.add_argument("--pages", type=int, default=2, help="pages of each kind (each its own words)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--detection", nargs="*", default=[], metavar="KEY=VALUE",
                   help="detection settings to read with instead of the defaults, e.g. pass_side=2048")
    p.add_argument("--parts", nargs="+", type=int, metavar="N",
                   help="instead: how long the detector takes for each page whole and in the parts of a tall strip "
                   "(`detection.split`), and the recognizer for its line crops whole and in N parts "
                   "(`recognition.parts`): the longest part is what replicas on machines of their own take")
    p.add_argument("--url", help="read through a running service instead (e.g. http://127.0.0.1:8000), its own "
                   "settings; each row then also says the service's detect and recognize seconds")
    return p


def over_http(url: str) -> Callable[[bytes], tuple[list[str], float, dict[str, float]]]:
    """Each page posted to the service as an upload is: its words, the request's seconds and its stages' seconds."""
    client = httpx.Client(base_url=url, timeout=600)

    def read(data: bytes) -> tuple[list[str], float, dict[str, float]]:
        t0 = time.perf_counter()
        r = client.post("/api/v1/ocr", files={"image": ("page.png", data, "image/png")})
        r.raise_for_status()
        answer = r.json()
        words = [w["text"] for line in answer["lines"] for w in line["words"]]
        stages = {k.removesuffix("_ms"): v / 1e3 for k, v in answer["timings"].items()}
        return words, time.perf_counter() - t0, stages
    return read


def render(kind: str, seed: int) -> tuple[bytes, list[str], int]:
    """A page of ``kind`` as PNG bytes, its words and its number of lines: each line as many words as fit."""
    width, height, font_name, size, pitch, margin = KINDS[kind]
    rng, vocab = random.Random(seed), list(common_words())
    path = next((f for f in latin_fonts() if f.endswith("/" + font_name)), default_font())
    font = font_at(path, size)
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    words: list[str] = []
    lines = 0
    for y in range(margin, height - margin - size, pitch):
        line = " ".join(rng.choice(vocab) for _ in range(40))
        while draw.textlength(line, font=font) > width - 2 * margin:
            line = line.rsplit(" ", 1)[0]
        draw.text((margin, y), line, fill=(20, 20, 20), font=font)
        words += line.split()
        lines += 1
    out = io.BytesIO()
    page.save(out, "PNG")
    return out.getvalue(), words, lines


def seconds_to_read(recognizer: RecognizerRunner, crops: list[np.ndarray]) -> float:
    """The recognizer's time for ``crops`` in one call, best of two."""
    return best_of_two(lambda: recognizer.read(crops))[0]


def best_of_two(fn: Callable[[], T]) -> tuple[float, T]:
    """``fn``'s seconds, the better of two calls, and what it returned."""
    best, out = float("inf"), None
    for _ in range(2):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, cast(T, out)


def detector_parts_row(kind: str, detector: DetectorRunner, pixels: np.ndarray) -> str:
    """A page's detection whole in one call, and as its parts (`detection.split`) one call each, then joined."""
    frame = detection.reduce(pixels, detector.params)
    whole, lines = best_of_two(lambda: detector.detect([frame])[0])
    strip = detection.split(frame, detector.params)
    timed = [best_of_two(functools.partial(detector.propose, [part])) for part in strip.parts]
    join, joined = best_of_two(lambda: detection.lines_of([f[0] for _, f in timed], strip, detector.params))
    assert joined == lines, kind  # the same lines, however they were read
    longest, every = max(t for t, _ in timed), sum(t for t, _ in timed)
    return (f"| {kind} | {len(strip.parts)} | {whole:.2f} | {longest:.2f} | {join:.2f} | {every:.2f} "
            f"| {whole / (longest + join):.2f}x |")


def parts_table(reader: Reader, kinds: list[str], counts: list[int]) -> None:
    """The first page of each kind: detected whole and in its parts, and its line crops read whole and in parts.

    One part at a time, each in every count of parts asked for (the detector's parts are the strip's own).
    """
    cfg, recognizer = reader.cfg, reader.predictor.recognizer
    pages = {}
    print("| page | detector parts | whole, s | longest part, s | joining, s | all parts, s | as fast as |")
    print("|---|---|---|---|---|---|---|")
    for kind in kinds:
        data, _, _ = render(kind, 0)
        long, short = cfg.detector.detection.keep_sides()
        pages[kind] = decode_image(data, 10**9, cfg.ingress.max_pixels, long, keep_short=short).pixels
        print(detector_parts_row(kind, reader.predictor.detector, pages[kind]), flush=True)
    print()
    print("| page | parts | crops per part | longest part, s | all parts, s | as fast as |")
    print("|---|---|---|---|---|---|")
    for kind in kinds:
        pixels = pages[kind]
        lines = reader.predictor.detector.detect([pixels])[0]
        crops = [c.pixels for c in make_crops(pixels, lines, cfg.recognizer.max_crop_width, cfg.recognizer.min_tilt)]
        whole = seconds_to_read(recognizer, crops)
        print(f"| {kind} | 1 | {len(crops)} | {whole:.2f} | {whole:.2f} | 1.00x |", flush=True)
        for n in counts:
            split = recognition.parts([c.shape[1] for c in crops], cfg.recognizer.max_crops_per_forward,
                                      max(1, round(len(crops) / n)))
            times = [seconds_to_read(recognizer, [crops[i] for i in p]) for p in split]
            sizes = ", ".join(str(len(p)) for p in split)
            print(f"| {kind} | {len(split)} | {sizes} | {max(times):.2f} | {sum(times):.2f} | "
                  f"{whole / max(times):.2f}x |", flush=True)


def main(args: argparse.Namespace) -> None:
    settings = {k: float(v) if "." in v else int(v) for k, v in (kv.split("=", 1) for kv in args.detection)}
    config = AppConfig.load(overrides={"detector": {"detection": settings}})
    if args.parts:
        runtime.setup(args.threads)
        parts_table(Reader(config), args.kinds, args.parts)
        return
    if args.url:
        read = over_http(args.url)
    else:
        runtime.setup(args.threads)
        reader = Reader(config)

        def read(data: bytes) -> tuple[list[str], float, dict[str, float]]:
            words, seconds = reader(data)
            return [text for text, _, _ in words], seconds, {}
    stage_columns = (" detect s | recognize s |", "---|---|") if args.url else ("", "")
    print("| page | lines on it | pages | precision | recall | F1 | s/read |" + stage_columns[0])
    print("|---|---|---|---|---|---|---|" + stage_columns[1])
    for kind in args.kinds:
        tally, lines, stages = Tally(), 0, []
        for seed in range(args.pages):
            data, truth, lines = render(kind, seed)
            words, seconds, spent = read(data)
            tally.add(words, truth, seconds)
            stages.append(spent)
        extra = "".join(f" {np.median([s[k] for s in stages]):.2f} |" for k in ("detect", "recognize") if args.url)
        print(tally.row(kind, lines) + extra, flush=True)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
