"""What ``?region=`` gives against reading the whole page and keeping the words inside: docs_dev receipts, in process.

    python -m benchmarks.regions                 # every docs_dev receipt, its top, middle and bottom thirds
    python -m benchmarks.regions --receipts 20 --photos 10

Each receipt's labelled words are split by their centres into thirds of its height; a third's region is the bounds
of its words, ``--pad`` px more on each side (what a user drags over). The region is read as the ingress reads it
(the upload decoded at its own size, the part cut out and framed in its background colour, read as a page, boxes
moved back) and scored on the words whose centres lie in it (``###`` regions ignored), against the whole receipt
read as served with the words whose centres lie in the region kept. Bag-of-words F1 as in `training.evaluate`;
seconds per read (decode excluded), medians.

Then small print on a large photo, where a region matters most: a label of a few lines (``--print`` px letters)
pasted at random onto a 4032 x 3024 JPEG (a 12 MP phone photo), read whole (the detector sees it at most 1696 px
wide: the print shrinks to 42%) and as the label's region.
"""

from __future__ import annotations

import argparse
import io
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.web_scale import Reader, Tally
from serve_app.config import AppConfig
from serve_app.imaging import decode_image
from serve_app.ocr import runtime
from serve_app.ocr.predictor import OCRPredictor
from serve_app.regions import FRAME, Region, clipped, crop, framed
from training import datasets
from training.corpus import random_line
from training.metrics import prf
from training.synth import render_lines


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--receipts", type=int, default=None, help="first N receipts (default all)")
    p.add_argument("--set", default="eval/docs_dev", help="the receipts: eval/docs_dev to measure, "
                   "train/receipts_sroie to choose by")
    p.add_argument("--pad", type=int, default=8, help="pixels around a third's words in its region")
    p.add_argument("--photos", type=int, default=20, help="large photos with a small label (0: none)")
    p.add_argument("--print", type=int, default=18, help="the label's letter size in pixels")
    p.add_argument("--threads", type=int, default=2)
    return p


def thirds(item: dict, width: int, height: int, pad: int = 8) -> list[tuple[Region, list[dict]]]:
    """Each third's region (its words' bounds, padded) and the labelled words whose centres lie in that region."""
    words = item["words"]
    out = []
    for k in range(3):
        band = [w for w in words if k * height / 3 <= (w["box"][1] + w["box"][3]) / 2 < (k + 1) * height / 3]
        if not [w for w in band if not w.get("ignore")]:
            continue
        bounds = (min(w["box"][0] for w in band) - pad, min(w["box"][1] for w in band) - pad,
                  max(w["box"][2] for w in band) + pad, max(w["box"][3] for w in band) + pad)
        region = clipped(tuple(max(0, round(v)) for v in bounds), width, height)  # type: ignore[arg-type]
        out.append((region, [w for w in words if _in(region, (w["box"][0] + w["box"][2]) / 2,
                                                        (w["box"][1] + w["box"][3]) / 2)]))
    return out


def _in(region: Region, x: float, y: float) -> bool:
    return region[0] <= x <= region[2] and region[1] <= y <= region[3]


def row(tally: Tally, name: str) -> str:
    precision, recall, f1 = prf(tally.m, tally.p, tally.g)
    return (f"| {name} | {len(tally.seconds)} | {precision:.3f} | {recall:.3f} | {f1:.3f} | "
            f"{np.median(tally.seconds):.3f} |")


def main(args: argparse.Namespace) -> None:
    runtime.setup(args.threads)
    cfg = AppConfig()
    det = cfg.detector
    predictor = Reader(cfg).predictor
    whole, parts = Tally(), Tally()
    for item in datasets.read_manifest(args.set)[:args.receipts]:
        data = Path(item["path"]).read_bytes()
        long, short = det.detection.keep_sides()
        served = decode_image(data, 10**9, cfg.ingress.max_pixels, long, keep_short=short)
        t0 = time.perf_counter()
        lines = predictor(served.pixels)
        seconds = time.perf_counter() - t0
        sx, sy = served.scale
        found = [(w.text, (w.box[0] + w.box[2]) / 2 * sx, (w.box[1] + w.box[3]) / 2 * sy)
                 for ln in lines for w in ln.words]
        full = decode_image(data, 10**9, cfg.ingress.max_pixels, None)  # a region's decode: not reduced
        for region, labelled in thirds(item, served.width, served.height, args.pad):
            truth = [w["text"] for w in labelled if not w.get("ignore")]
            ignored = [w["box"] for w in labelled if w.get("ignore")]

            def kept(words: list[tuple[str, float, float]], ignored: list = ignored) -> list[str]:
                return [t for t, x, y in words if not any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in ignored)]

            whole.add(kept([w for w in found if _in(region, w[1], w[2])]), truth, seconds)
            part, left, top = crop(full.pixels, region, *full.scale)
            part, left, top = framed(part), left - FRAME, top - FRAME  # as the ingress reads a region
            t0 = time.perf_counter()
            read = predictor(part)
            fx, fy = full.scale
            parts.add(kept([(w.text, ((w.box[0] + w.box[2]) / 2 + left) * fx, ((w.box[1] + w.box[3]) / 2 + top) * fy)
                            for ln in read for w in ln.words]), truth, time.perf_counter() - t0)
    print("| read | regions | precision | recall | F1 | s/read |")
    print("|---|---|---|---|---|---|")
    print(row(whole, "whole receipt, words in the region kept"), flush=True)
    print(row(parts, "`?region=` (the region alone)"), flush=True)
    if args.photos:
        photos(predictor, cfg, args.photos, args.print)


def photos(predictor: OCRPredictor, cfg: AppConfig, n: int, size: int) -> None:
    """Small print on a 12 MP photo, read whole and as its region, each decoded as the ingress decodes it."""
    rng = random.Random(0)
    whole, parts = Tally(), Tally()
    for _ in range(n):
        lines = [random_line(rng).encode("latin-1", "ignore").decode("latin-1")[:40] for _ in range(3)]
        label, _ = render_lines(lines, size=size, margin=size)
        photo = Image.new("RGB", (4032, 3024), tuple(rng.randint(150, 235) for _ in range(3)))
        x, y = rng.randint(0, photo.width - label.width), rng.randint(0, photo.height - label.height)
        photo.paste(label, (x, y))
        out = io.BytesIO()
        photo.save(out, "JPEG", quality=90)
        data, truth = out.getvalue(), " ".join(lines).split()
        long, short = cfg.detector.detection.keep_sides()
        served = decode_image(data, 10**9, cfg.ingress.max_pixels, long, keep_short=short)
        t0 = time.perf_counter()
        found = predictor(served.pixels)
        whole.add([w.text for ln in found for w in ln.words], truth, time.perf_counter() - t0)
        full = decode_image(data, 10**9, cfg.ingress.max_pixels, None)
        part, _, _ = crop(full.pixels, (x, y, x + label.width, y + label.height), *full.scale)
        t0 = time.perf_counter()
        read = predictor(framed(part))
        parts.add([w.text for ln in read for w in ln.words], truth, time.perf_counter() - t0)
    print(row(whole, f"12 MP photo, {size} px print, read whole"))
    print(row(parts, f"12 MP photo, {size} px print, `?region=` the label"))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
