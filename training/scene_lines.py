"""Scene line crops cut the way the service cuts them, for teaching the CRNN to read what it is actually given.

The CRNN learnt scene text from tight word crops and reads 88 % of the ICDAR 2015 TRAIN crops alone, but only a
third of the same words end to end: the service hands it detected *lines*, levelled by `recognition.crop_tilted`,
with a looser vertical extent (a tilted line's strips stack up), neighbours, and one more resampling. Here each
``fit`` frame layout (`datasets.ic15_layouts`) is rebuilt, run through our detector, and every detected line is cut
exactly as `pipeline.make_crops` cuts it. Its label is the frame's words whose centres fall inside the line, in
order along it; lines that cut a word short or brush past one outside are dropped, so no label lies.

    python -m training.scene_lines --renders 1 --show 20   # build (cached under runs/cache) and print a few
    python -m training.scene_lines --busy 0.6               # 60 % of the frames cluttered and unevenly lit
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import random
from pathlib import Path

import numpy as np
from PIL import Image

from serve_app.ocr.alphabet import sanitize
from serve_app.ocr.pipeline import make_crops
from serve_app.ocr.processing.geometry import inside
from serve_app.ocr.processing.textlines import TextLine
from serve_app.paths import DEFAULT_DETECTOR
from training import datasets
from training.scenes import compose_frame

FRAME = (1280, 720)
PACKED = "train/scene_lines"  # where `training.pack` writes built lines, under the shared folder


def rebuild_frame(rng: random.Random, layout: list[tuple[int, list[list[float]]]], records: list[dict],
                  frame: tuple[int, int] = FRAME, busy: bool = False) -> tuple[np.ndarray, list[str], np.ndarray]:
    """One IC15 TRAIN frame from its word crops: RGB image, texts and quadrilaterals ``(L, 4, 2)``.

    A ``busy`` frame has clutter behind the words and uneven light over all of it (`training.clutter`).
    """
    crops = [(Image.fromarray(datasets.load_rgb(records[i]["path"])), poly) for i, poly in layout]
    canvas = compose_frame(rng, crops, frame, busy)
    texts = [records[i]["text"] for i, _ in layout]
    quads = np.asarray([poly for _, poly in layout], dtype=np.float32).reshape(-1, 4, 2)
    return np.asarray(canvas), texts, quads


def line_label(line: TextLine, texts: list[str], quads: np.ndarray, slack: float = 0.25) -> str | None:
    """The words a detected line holds, in order along it, or None where the line would teach a wrong label.

    Wrong labels come from a line that ends inside a word (more than ``slack`` of the word's width outside), or
    that runs over a word whose centre lies outside it (half or more of that word's corners inside).
    """
    poly = np.asarray(line.poly or ((line.box[0], line.box[1]), (line.box[2], line.box[1]),
                                    (line.box[2], line.box[3]), (line.box[0], line.box[3])), dtype=np.float32)
    (x0, _), (x1, _) = poly[0], poly[1]
    held = []
    for text, quad in zip(texts, quads):
        cx, cy = quad.mean(0)
        corners = sum(inside(poly, float(x), float(y)) for x, y in quad)
        if inside(poly, float(cx), float(cy)):
            w = max(float(np.ptp(quad[:, 0])), 1.0)
            outside = max(0.0, x0 - quad[:, 0].min()) + max(0.0, quad[:, 0].max() - x1)
            if outside > slack * w or text == "###":
                return None
            held.append((float(cx), text))
        elif corners >= 2:
            return None
    if not held:
        return None
    return " ".join(t for _, t in sorted(held))


def build(part: str = "fit", renders: int = 1, seed: int = 0, weights: str | None = None,
          limit: int | None = None, busy: float = 0.0) -> list[tuple[np.ndarray, str]]:
    """Grayscale uint8 line crops (32 px high, as the recognizer gets them) and their labels.

    A ``busy`` share of the frames gets clutter and uneven light: real frames do, and the detector finds words
    there that it misses on a clean background, which the CRNN then has to read.
    """
    from serve_app.ocr.predictor import DetectorRunner  # torch, only when building

    detector = DetectorRunner(weights) if weights else DetectorRunner()
    records = datasets.read_manifest("train/words")
    layouts = datasets.ic15_layouts(part)[:limit]
    rng = random.Random(seed)
    out = []
    for r in range(renders):
        for k, layout in enumerate(layouts):
            image, texts, quads = rebuild_frame(rng, layout, records, busy=busy > 0 and rng.random() < busy)
            lines = detector.detect([image])[0]
            for line, crop in zip(lines, make_crops(image, lines)):
                label = line_label(line, texts, quads)
                if label:
                    out.append((((crop.pixels + 1.0) * 127.5).clip(0, 255).astype(np.uint8), label))
            if k % 100 == 0:
                print(f"render {r + 1}/{renders}: frame {k}/{len(layouts)}, {len(out)} lines", flush=True)
    return out


def cut_rule() -> str:
    """A short hash of how the service cuts lines: the crop functions and the margins and slopes they are given."""
    from serve_app.ocr import pipeline
    from serve_app.ocr.processing import recognition

    parts = [inspect.getsource(f) for f in (pipeline.make_crops, recognition.crop_line, recognition.crop_tilted)]
    parts += [repr((pipeline.MIN_TILT, pipeline.STEEP_TILT, pipeline.STEEP_PAD_Y, recognition.INPUT_HEIGHT))]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:6]


def cache_name(renders: int = 1, part: str = "fit", busy: float = 0.0) -> str:
    """Keyed by the shipped detector's bytes and the cut rule: either changes the crops, so they are built afresh.

    (Keyed by the detector alone, the crops built before steep lines were cut with less margin went on being used.)
    """
    detector = hashlib.sha1(Path(DEFAULT_DETECTOR).read_bytes()).hexdigest()[:8]
    return (f"ic15_scene_lines_{part}_x{renders}_{detector}_cut{cut_rule()}"
            + (f"_busy{round(busy * 100)}" if busy else ""))


def cached(renders: int = 1, part: str = "fit", busy: float = 0.0) -> list[tuple[np.ndarray, str]]:
    """The built crops (under runs/cache, or a packed copy), labels mapped to our alphabet as words are."""
    name = cache_name(renders, part, busy)
    packed = datasets.shared_dir() / PACKED / name
    if (packed / "manifest.jsonl").is_file():  # a GPU machine reads the lines `training.pack` built here
        items = [(np.asarray(Image.open(it["path"]).convert("L")), it["text"]) for it in datasets.read_manifest(packed)]
    else:
        items = datasets.cached(name, lambda: build(part, renders, busy=busy))
    return [(gray, text) for gray, text in ((g, sanitize(t)) for g, t in items) if text.strip()]


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--renders", type=int, default=1, help="times each frame is rebuilt on a fresh background")
    p.add_argument("--part", default="fit", choices=["fit", "check", "all"])
    p.add_argument("--busy", type=float, default=0.0, help="share of frames with clutter and uneven light")
    p.add_argument("--show", type=int, default=10)
    args = p.parse_args()
    items = cached(args.renders, args.part, args.busy)
    words = sum(len(t.split()) for _, t in items)
    print(f"{len(items)} line crops holding {words} words")
    for gray, text in items[: args.show]:
        print(f"  {gray.shape[1]:4d} px  {text!r}")
