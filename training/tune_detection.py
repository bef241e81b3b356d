"""Detection settings checked on ICDAR 2015 TRAIN layouts, without touching the evaluation frames.

`../shared/train` has the IC15 TRAIN word crops with the quadrilateral each was cut from (``source_poly``) but not
the frames. Pasting every crop of a frame back at its own place on a camera-like background rebuilds the frame's
layout: real text at its real sizes and positions. End-to-end F1 on those frames, for a grid of detection
settings, says which settings suit incidental scene text.

    python -m training.tune_detection --frames 100 short_side=720,960 score_threshold=0.7,0.5
    python -m training.tune_detection --set receipts --frames 30 short_side=720,960
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import random
import time
from collections import defaultdict

import numpy as np
import torch
from PIL import Image

from serve_app.ocr.predictor import DetectorRunner, OCRPredictor, RecognizerRunner
from serve_app.ocr.processing.detection import DetectionParams
from training import datasets
from training.metrics import bag_counts, prf
from training.scenes import scene_background

FRAME_W, FRAME_H = 1280, 720


def layout_frames(n: int, seed: int = 0) -> list[tuple[np.ndarray, list[str]]]:
    """``n`` IC15 TRAIN frames rebuilt from their word crops: an RGB image and its words."""
    by_frame: dict[str, list[dict]] = defaultdict(list)
    for rec in datasets.read_manifest("train/words"):
        if rec.get("source_image") and rec.get("source_poly"):
            by_frame[rec["source_image"]].append(rec)
    rng = random.Random(seed)
    names = sorted(by_frame)
    rng.shuffle(names)
    frames = []
    for name in names[:n]:
        canvas = scene_background(rng, FRAME_W, FRAME_H)
        words = []
        for rec in by_frame[name]:
            xs, ys = [p[0] for p in rec["source_poly"]], [p[1] for p in rec["source_poly"]]
            x0, y0 = int(max(0, min(xs))), int(max(0, min(ys)))
            x1, y1 = int(min(FRAME_W, max(xs))), int(min(FRAME_H, max(ys)))
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            crop = Image.fromarray(datasets.load_rgb(rec["path"])).resize((x1 - x0, y1 - y0), Image.BILINEAR)
            canvas.paste(crop, (x0, y0))
            words.append(rec["text"])
        frames.append((np.asarray(canvas), words))
    return frames


def receipts(n: int) -> list[tuple[np.ndarray, list[str]]]:
    """The first ``n`` SROIE TRAIN receipts, to check that scene-friendly settings do not hurt documents."""
    return [(datasets.load_rgb(r["path"]), [w["text"] for w in r["words"]])
            for r in datasets.read_manifest("train/receipts_sroie")[:n]]


def score(predictor: OCRPredictor, frames: list[tuple[np.ndarray, list[str]]]) -> dict[str, float]:
    matched = predicted = truth = 0
    seconds = []
    for image, words in frames:
        t0 = time.perf_counter()
        lines = predictor(image)
        seconds.append(time.perf_counter() - t0)
        m, p, g = bag_counts([w.text for ln in lines for w in ln.words], words)
        matched, predicted, truth = matched + m, predicted + p, truth + g
    precision, recall, f1 = prf(matched, predicted, truth)
    return {"precision": precision, "recall": recall, "f1": f1, "s_median": float(np.median(seconds))}


def parse_grid(items: list[str]) -> dict[str, list[float]]:
    """``["short_side=720,960", "score_threshold=0.5"]`` to ``{"short_side": [720, 960], ...}``."""
    fields = {f.name: f.type for f in dataclasses.fields(DetectionParams)}
    grid = {}
    for item in items:
        name, _, values = item.partition("=")
        if name not in fields:
            raise SystemExit(f"unknown detection setting '{name}', choose from {sorted(fields)}")
        cast = int if fields[name] in (int, "int") else float
        grid[name] = [cast(v) for v in values.split(",")]
    return grid


def main(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    frames = layout_frames(args.frames, args.seed) if args.set == "ic15-layouts" else receipts(args.frames)
    detector, recognizer = DetectorRunner(precision=args.precision), RecognizerRunner(precision=args.precision)
    predictor = OCRPredictor(detector, recognizer)
    grid = parse_grid(args.grid)
    rows = []
    print("| " + " | ".join(grid) + " | P | R | F1 | s/frame |")
    print("|---" * (len(grid) + 4) + "|")
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values))
        if "short_side" in setting and "max_side" not in setting:  # keep 16:9 frames at the asked short side
            setting["max_side"] = max(1280, int(setting["short_side"]) * 16 // 9 // 16 * 16)
        detector.params = dataclasses.replace(DetectionParams(), **setting)
        r = {**setting, **score(predictor, frames)}
        rows.append(r)
        print("| " + " | ".join(str(v) for v in values) +
              f" | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['s_median']:.3f} |", flush=True)
    return rows


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", default="ic15-layouts", choices=["ic15-layouts", "receipts"])
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("grid", nargs="*", help="NAME=V1,V2 for any DetectionParams field; the rest keep their defaults")
    main(p.parse_args())
