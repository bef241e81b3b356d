"""The same images read on the CPU and on a GPU: whether the answers agree, and what each costs, in process.

    python -m benchmarks.devices IMAGE [IMAGE ...]                       # cpu fp32 (the reference), cpu auto, cuda auto
    python -m benchmarks.devices imgs/*.jpg --runs cpu:fp32 cuda:bf16 cuda:fp32

The first run named is the reference: every other run's words are compared with its words on each image (bag of
words, case-folded, as `training.evaluate` counts them) and its seconds per image are medians after one warm-up
image. A GPU whose answers agree with fp32 on the CPU as closely as the CPU's own int8 does is as accurate as the
tables in docs/accuracy.md; the full check is then `python -m training.evaluate --device cuda`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from serve_app.config import AppConfig
from serve_app.imaging import decode_image
from serve_app.ocr import runtime
from serve_app.ocr.predictor import DetectorRunner, OCRPredictor, RecognizerRunner
from training.metrics import bag_counts, prf, tokens


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--runs", nargs="+", default=None,
                   help="device:precision, the first the reference (default: cpu:fp32 cpu:auto, and cuda:auto "
                        "where torch sees a GPU)")
    p.add_argument("--threads", type=int, default=2, help="torch's CPU threads")
    return p


def predictor(cfg: AppConfig, device: str, precision: str) -> OCRPredictor:
    det, rec = cfg.detector, cfg.recognizer
    return OCRPredictor(DetectorRunner(**{**det.runner_args(), "precision": precision, "device": device}),
                        RecognizerRunner(**{**rec.runner_args(), "precision": precision, "device": device}),
                        rec.min_tilt, cfg.ingress.min_word_confidence, cfg.ingress.min_unknown_word_confidence)


def read_all(p: OCRPredictor, pixels: list[np.ndarray]) -> tuple[list[list[str]], list[float]]:
    """Each image's words, and the seconds each took (the first image read once before, unmeasured)."""
    p(pixels[0])
    words, seconds = [], []
    for px in pixels:
        if p.detector.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        results = p(px)
        seconds.append(time.perf_counter() - t0)
        words.append(tokens(" ".join(r.text for r in results)))
    return words, seconds


def main(args: argparse.Namespace) -> list[dict]:
    runtime.setup(args.threads)
    runs = args.runs or ["cpu:fp32", "cpu:auto"] + (["cuda:auto"] if torch.cuda.is_available() else [])
    cfg = AppConfig()
    limits = cfg.ingress
    pixels = [decode_image(path.read_bytes(), limits.max_upload_bytes, limits.max_pixels).pixels
              for path in args.images]
    rows, reference = [], None
    for run in runs:
        device, precision = run.split(":")
        p = predictor(cfg, device, precision)
        words, seconds = read_all(p, pixels)
        if reference is None:
            reference = words
        agree = [prf(*bag_counts(w, r))[2] if (w or r) else 1.0 for w, r in zip(words, reference, strict=True)]
        rows.append({"run": run, "precision": p.detector.precision, "images": len(pixels),
                     "f1_vs_reference": float(np.mean(agree)), "same_words": sum(a == 1.0 for a in agree),
                     "s_median": float(np.median(seconds)), "s_p90": float(np.percentile(seconds, 90))})
    print(f"| run | resolved | images | F1 against {runs[0]} | images with the same words | s/image median | p90 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['precision']} | {r['images']} | {r['f1_vs_reference']:.3f} | {r['same_words']} | "
              f"{r['s_median']:.3f} | {r['s_p90']:.3f} |")
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
