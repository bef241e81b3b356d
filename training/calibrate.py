"""Measure int8 activation ranges on TRAIN data and store them in a weights file (`serve_app.ocr.models.quantize`).

Inputs are cut and scaled exactly as the service does it, from TRAIN data only, and never from the parts the
checks choose settings on:
- CRNN: IC15/IIIT5K TRAIN word crops and born-digital ``fit`` words, each at one of the served widths, and
  SROIE line crops from receipts the end-to-end receipt check does not read (the last ones);
- CTPN: busy IC15 ``fit`` layouts (rebuilt frames with clutter and uneven light), resized as detection resizes.

    python -m training.calibrate --model crnn     # rewrites serve_app/assets/crnn_full.pt with an int8 entry
    python -m training.calibrate --model ctpn --images 80

Only the observers' state is added (a few hundred kB); the fp16 weights are left as they were. Retraining writes a
file without it, so run this again after every export (without it `precision: auto` stays in fp32 on CPUs without
bf16).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import torch

from serve_app.ocr.models import quantize
from serve_app.ocr.models.weights import DEFAULT_DETECTOR, DEFAULT_RECOGNIZER, model_from_blob, read_weights
from serve_app.ocr.processing import consensus, detection, recognition
from training import datasets
from training.tune_detection import layout_frames

#: SROIE TRAIN receipts from here on feed calibration; `tune_detection --set receipts` reads the first 30.
LATE_RECEIPTS = 400


def crnn_inputs(n: int, seed: int) -> list[np.ndarray]:
    """Normalised crops, a third each of scene words, born-digital words and receipt lines."""
    rng = random.Random(seed)
    words = datasets.word_crops()
    born = datasets.borndigital_words("fit")
    names = {r["image"] for r in datasets.read_manifest("train/receipts_sroie")[LATE_RECEIPTS:]}
    lines = datasets.line_crops(keep=lambda it: it["image"] in names)
    out = []
    for source, k in ((words, n // 3), (born, n // 3), (lines, n - 2 * (n // 3))):
        for gray, _ in rng.sample(source, min(k, len(source))):
            crop = recognition.normalise(gray)
            if source is not lines:
                crop = consensus.resize_width(crop, rng.choice(consensus.DEFAULT_WORD_SCALES))
            out.append(crop)
    return out


def ctpn_inputs(n: int, seed: int) -> list[np.ndarray]:
    """Preprocessed detector inputs (HWC): busy IC15 ``fit`` layouts (clutter and uneven light, as real frames have).

    Scene text is where int8 detection loses words; receipts read the same whichever ranges are used. With 80 busy
    layouts the 186 busy ``check`` layouts scored F1 0.564 (words found 77.7 %), with 40 mixed images (half
    layouts, a quarter each receipts and born-digital) 0.553 (77.2 %); 30 TRAIN receipts 0.913 and 0.916.
    """
    params = detection.DetectionParams()
    return [detection.preprocess(f[0], params)[0] for f in layout_frames(n, seed, part="fit", busy=True)]


def calibrate(path: Path, inputs: list[np.ndarray], note: str) -> dict:
    """Observe ``inputs`` with the model of ``path`` and write the observers' state back into the file."""
    blob = read_weights(path)
    prepared = quantize.prepare(model_from_blob(blob))
    t0 = time.perf_counter()
    with torch.inference_mode():
        for x in inputs:
            prepared(torch.from_numpy(x).permute(2, 0, 1)[None] if x.ndim == 3 else torch.from_numpy(x)[None, None])
    blob["int8"] = quantize.observer_state(prepared)
    blob.setdefault("meta", {})["int8_calibration"] = f"{note}; {len(inputs)} inputs; engine {quantize.engine()}"
    torch.save(blob, path)
    print(f"{path}: {len(blob['int8'])} observer tensors from {len(inputs)} inputs in {time.perf_counter() - t0:.0f} s")
    return blob


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    if args.model == "crnn":
        path = Path(args.weights or DEFAULT_RECOGNIZER)
        inputs = crnn_inputs(args.crops, args.seed)
        note = "TRAIN word crops, born-digital fit words, late SROIE receipt lines"
    else:
        path = Path(args.weights or DEFAULT_DETECTOR)
        inputs = ctpn_inputs(args.images, args.seed)
        note = "busy IC15 fit layouts"
    calibrate(path, inputs, f"{note} (seed {args.seed})")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=["crnn", "ctpn"])
    p.add_argument("--weights", default=None, help="weights file to calibrate in place (default: the shipped one)")
    p.add_argument("--crops", type=int, default=600, help="CRNN: crops to observe")
    p.add_argument("--images", type=int, default=80, help="CTPN: images to observe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    main(p.parse_args())
