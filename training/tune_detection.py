"""Detection settings checked on ICDAR 2015 TRAIN layouts, without touching the evaluation frames.

`../shared/train` has the IC15 TRAIN word crops with the quadrilateral each was cut from (``source_poly``) but not
the frames. Pasting every crop of a frame back at its own place on a camera-like background rebuilds the frame's
layout: real text at its real sizes, positions, tilt and perspective (each crop is warped back into its
quadrilateral). End-to-end F1 on those frames, for a grid of detection settings, says which settings suit
incidental scene text. The detector trains on the ``fit`` frames, so settings are checked on the held-out
``check`` frames (one in five, by a hash of the frame's name).

    python -m training.tune_detection --frames 100 short_side=720,960 score_threshold=0.7,0.5
    python -m training.tune_detection --frames 150 min_tilt=0.03,0.05,1e9   # how tilted lines are cut
    python -m training.tune_detection --frames 186 --busy steep_tilt=0.03,0.05,0.08,1e9   # which get less margin
    python -m training.tune_detection --set receipts --frames 30 short_side=720,960
    python -m training.tune_detection --frames 186 --busy --detector runs/ctpn5/snap2500.pt   # cluttered, lit frames

Besides P, R and F1 it prints the share of labelled words whose centre lies inside a detected line ("found"): what
the detector missed can never be read. ``--busy`` rebuilds the layouts with clutter behind the words and uneven light
over them (`training.clutter`); on those the shipped detector finds about half the words, as on real frames.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import random
import time
from typing import Any

import numpy as np
from PIL import Image

from serve_app.ocr import runtime
from serve_app.ocr.models.weights import DEFAULT_DETECTOR, DEFAULT_RECOGNIZER
from serve_app.ocr.pipeline import MIN_TILT, MIN_UNKNOWN_WORD_CONFIDENCE, MIN_WORD_CONFIDENCE, STEEP_TILT
from serve_app.ocr.predictor import PRECISIONS, DetectorRunner, OCRPredictor, RecognizerRunner
from serve_app.ocr.processing.detection import DetectionParams
from serve_app.ocr.processing.geometry import inside
from training import datasets
from training.evaluate import word_centre
from training.metrics import bag_counts, prf
from training.scene_lines import rebuild_frame
from training.scenes import scene_background

FRAME_W, FRAME_H = 1280, 720

#: Settings of the pipeline around the detector that the grid may also vary (`OCRPredictor` attributes).
PIPELINE_KNOBS = {"min_tilt": MIN_TILT, "steep_tilt": STEEP_TILT, "min_word_confidence": MIN_WORD_CONFIDENCE,
                  "min_unknown_word_confidence": MIN_UNKNOWN_WORD_CONFIDENCE}


Frame = tuple[np.ndarray, list[str], np.ndarray]  # RGB image, labelled words, their centres (N, 2)


def _centres(words: list[dict]) -> np.ndarray:
    return np.asarray([word_centre(w) for w in words], dtype=np.float64).reshape(-1, 2)


def layout_frames(n: int, seed: int = 0, warp: bool = True, part: str = "check", busy: bool = False) -> list[Frame]:
    """``n`` IC15 TRAIN frames rebuilt from their word crops: an RGB image, its words and their centres.

    With ``warp`` each crop goes back into its own quadrilateral (real tilt and perspective); without, it is
    stretched upright over the quadrilateral's bounding box, as the first version of this tool did. ``part`` picks
    the frames (`datasets.ic15_layouts`): the detector trains on ``fit``, so settings are chosen on ``check``.
    ``busy`` frames have clutter behind the words and uneven light over them (`training.clutter`).
    """
    records = datasets.read_manifest("train/words")
    layouts = datasets.ic15_layouts(part)
    rng = random.Random(seed)
    rng.shuffle(layouts)
    frames = []
    for layout in layouts[:n]:
        if warp:
            image, words, quads = rebuild_frame(rng, layout, records, (FRAME_W, FRAME_H), busy=busy)
            frames.append((image, words, quads.mean(1)))
            continue
        canvas = scene_background(rng, FRAME_W, FRAME_H)
        for i, poly in layout:
            crop = Image.fromarray(datasets.load_rgb(records[i]["path"]))
            xs, ys = [p[0] for p in poly], [p[1] for p in poly]
            x0, y0 = int(max(0, min(xs))), int(max(0, min(ys)))
            x1, y1 = int(min(FRAME_W, max(xs))), int(min(FRAME_H, max(ys)))
            canvas.paste(crop.resize((max(x1 - x0, 1), max(y1 - y0, 1)), Image.Resampling.BILINEAR), (x0, y0))
        frames.append((np.asarray(canvas), [records[i]["text"] for i, _ in layout],
                       np.asarray([np.asarray(p, dtype=np.float64).mean(0) for _, p in layout]).reshape(-1, 2)))
    return frames


def receipts(n: int) -> list[Frame]:
    """The first ``n`` SROIE TRAIN receipts, to check that scene-friendly settings do not hurt documents."""
    return [(datasets.load_rgb(r["path"]), [w["text"] for w in r["words"]], _centres(r["words"]))
            for r in datasets.read_manifest("train/receipts_sroie")[:n]]


def borndigital(n: int) -> list[Frame]:
    """ICDAR 2013 born-digital TRAIN images of the ``check`` part (no recognizer trained on their words)."""
    items = [it for it in datasets.read_manifest("train/borndigital_ic13") if datasets.held_out(it["image"])]
    frames = []
    for it in items[:n]:
        words = [w for w in it["words"] if not w.get("ignore")]
        frames.append((datasets.load_rgb(it["path"]), [w["text"] for w in words], _centres(words)))
    return frames


def score(predictor: OCRPredictor, frames: list[Frame]) -> dict[str, float]:
    matched = predicted = truth = found = 0
    seconds = []
    for image, words, centres in frames:
        t0 = time.perf_counter()
        detected, lines = predictor.detect_and_read(image)
        seconds.append(time.perf_counter() - t0)
        found += sum(any(inside(list(ln.poly), float(x), float(y)) for ln in detected) for x, y in centres)
        m, p, g = bag_counts([w.text for ln in lines for w in ln.words], words)
        matched, predicted, truth = matched + m, predicted + p, truth + g
    precision, recall, f1 = prf(matched, predicted, truth)
    labelled = sum(len(c) for *_, c in frames)
    return {"precision": precision, "recall": recall, "f1": f1, "found": found / max(labelled, 1),
            "s_median": float(np.median(seconds))}


def parse_grid(items: list[str]) -> dict[str, list[float]]:
    """``["short_side=720,960", "score_threshold=0.5"]`` to ``{"short_side": [720, 960], ...}``."""
    fields = {f.name: f.type for f in dataclasses.fields(DetectionParams)} | dict.fromkeys(PIPELINE_KNOBS, float)
    grid = {}
    for item in items:
        name, _, values = item.partition("=")
        if name not in fields:
            raise SystemExit(f"unknown detection setting '{name}', choose from {sorted(fields)}")
        cast = int if fields[name] in (int, "int") else float
        grid[name] = [cast(v) for v in values.split(",")]
    return grid


def main(args: argparse.Namespace) -> list[dict]:
    runtime.setup(args.threads)
    if args.set == "ic15-layouts":
        frames = layout_frames(args.frames, args.seed, warp=args.layout == "quad", part=args.part, busy=args.busy)
    else:
        frames = receipts(args.frames) if args.set == "receipts" else borndigital(args.frames)
    detector = DetectorRunner(args.detector or DEFAULT_DETECTOR, precision=args.precision)
    recognizer = RecognizerRunner(args.recognizer or DEFAULT_RECOGNIZER, precision=args.precision)
    predictor = OCRPredictor(detector, recognizer)
    grid = parse_grid(args.grid)
    rows = []
    print("| " + " | ".join(grid) + " | P | R | F1 | found | s/frame |")
    print("|---" * (len(grid) + 5) + "|")
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values))
        if "short_side" in setting and "max_side" not in setting:  # keep 16:9 frames at the asked short side
            setting["max_side"] = max(1280, int(setting["short_side"]) * 16 // 9 // 16 * 16)
        for knob, default in PIPELINE_KNOBS.items():
            setattr(predictor, knob, float(setting.get(knob, default)))
        knobs: dict[str, Any] = {k: v for k, v in setting.items() if k not in PIPELINE_KNOBS}  # int or float fields
        detector.params = dataclasses.replace(DetectionParams(), **knobs)
        r = {**setting, **score(predictor, frames)}
        rows.append(r)
        print("| " + " | ".join(str(v) for v in values) +
              f" | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['found']:.1%} | {r['s_median']:.3f} |",
              flush=True)
    return rows


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", default="ic15-layouts", choices=["ic15-layouts", "receipts", "borndigital"])
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--layout", default="quad", choices=["quad", "box"],
                   help="words back in their real quadrilaterals, or stretched upright over their boxes (old)")
    p.add_argument("--part", default="check", choices=["check", "fit", "all"],
                   help="which IC15 TRAIN frames: the detector trains on 'fit' ones since CTPN stage 4")
    p.add_argument("--busy", action="store_true",
                   help="layouts with clutter behind the words and uneven light over them, as real frames have")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--detector", default=None, help="CTPN weights to check (default: the shipped ones)")
    p.add_argument("--recognizer", default=None, help="CRNN weights to check (default: the shipped ones)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("grid", nargs="*", help="NAME=V1,V2 for any DetectionParams field, min_tilt, steep_tilt, "
                   "min_word_confidence or min_unknown_word_confidence; the rest keep their defaults")
    main(p.parse_args())
