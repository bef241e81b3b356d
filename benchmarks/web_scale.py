"""What the web page's downscale before sending costs in accuracy: docs_dev receipts and letter pages, in process.

    python -m benchmarks.web_scale                          # all docs_dev, 4 letter pages per size, 720 to 2048 px
    python -m benchmarks.web_scale --receipts 40 --pages 2 --sides 720 2048

Each image goes as the page sends it: scaled (bilinear, as a canvas draws) so that its long side is at most
``--sides`` px (``--high``: its height, the page's first rule), then JPEG at quality 0.9, then decoded and read as
the service reads an upload. Bag-of-words F1 as in `training.evaluate` (receipts: ``###`` regions ignored, by word
centres mapped back onto the receipt); seconds per read (detect and recognize), medians.
"""

from __future__ import annotations

import argparse
import io
import random
import time

import numpy as np
from PIL import Image

from serve_app.config import AppConfig
from serve_app.imaging import decode_image
from serve_app.ocr import runtime
from serve_app.ocr.predictor import DetectorRunner, OCRPredictor, RecognizerRunner
from training import datasets
from training.corpus import random_line
from training.metrics import bag_counts, prf
from training.pdfs import text_pdf

LETTER = (612, 792)  # points

Word = tuple[str, float, float]  # text, centre x, centre y in the sent image's pixels


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sides", nargs="+", type=int, default=[720, 1280, 1696, 2048])
    p.add_argument("--high", action="store_true", help="bound the height, not the long side")
    p.add_argument("--receipts", type=int, default=None, help="first N docs_dev receipts (default all)")
    p.add_argument("--pages", type=int, default=4, help="letter pages per font size (9 and 11 pt at 200 dpi)")
    p.add_argument("--threads", type=int, default=2)
    return p


def as_sent(im: Image.Image, side: int | None, high: bool) -> tuple[bytes, float]:
    """The page's upload of ``im`` and its scale (sent pixels per original pixel)."""
    bound = im.height if high else max(im.size)
    s = min(1.0, side / bound) if side else 1.0
    if s < 1:
        im = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue(), s


class Reader:
    def __init__(self, cfg: AppConfig) -> None:
        det, rec = cfg.detector, cfg.recognizer
        self.cfg = cfg
        self.predictor = OCRPredictor(DetectorRunner(**det.runner_args()), RecognizerRunner(**rec.runner_args()),
                                      rec.min_tilt, cfg.ingress.min_word_confidence,
                                      cfg.ingress.min_unknown_word_confidence)

    def __call__(self, data: bytes) -> tuple[list[Word], float]:
        long, short = self.cfg.detector.detection.keep_sides()
        decoded = decode_image(data, 10**9, self.cfg.ingress.max_pixels, long, keep_short=short)
        t0 = time.perf_counter()
        lines = self.predictor(decoded.pixels)
        seconds = time.perf_counter() - t0
        sx, sy = decoded.scale
        return [(w.text, (w.box[0] + w.box[2]) / 2 * sx, (w.box[1] + w.box[3]) / 2 * sy)
                for ln in lines for w in ln.words], seconds


class Tally:
    def __init__(self) -> None:
        self.m = self.p = self.g = 0
        self.seconds: list[float] = []

    def add(self, words: list[str], truth: list[str], seconds: float) -> None:
        m, p, g = bag_counts(words, truth)
        self.m, self.p, self.g = self.m + m, self.p + p, self.g + g
        self.seconds.append(seconds)

    def row(self, name: str, side: int | None) -> str:
        precision, recall, f1 = prf(self.m, self.p, self.g)
        return (f"| {name} | {side or 'as it is'} | {len(self.seconds)} | {precision:.3f} | {recall:.3f} | {f1:.3f} | "
                f"{np.median(self.seconds):.2f} |")


def main(args: argparse.Namespace) -> None:
    runtime.setup(args.threads)
    read = Reader(AppConfig())
    sides: list[int | None] = [None, *args.sides]
    print(f"| images | {'height' if args.high else 'long side'} at most | n | precision | recall | F1 | s/read |")
    print("|---|---|---|---|---|---|---|")
    receipts = {side: Tally() for side in sides}
    for item in datasets.read_manifest("eval/docs_dev")[:args.receipts]:
        im = Image.open(item["path"]).convert("RGB")
        truth = [w["text"] for w in item["words"] if not w.get("ignore")]
        ignored = [w["box"] for w in item["words"] if w.get("ignore")]
        for side in sides:
            data, s = as_sent(im, side, args.high)
            words, seconds = read(data)
            kept = [t for t, cx, cy in words
                    if not any(b[0] <= cx / s <= b[2] and b[1] <= cy / s <= b[3] for b in ignored)]
            receipts[side].add(kept, truth, seconds)
    for side in sides:
        print(receipts[side].row("docs_dev receipts", side), flush=True)
    rng = random.Random(0)
    for size in (9, 11):
        letters = {side: Tally() for side in sides}
        for _ in range(args.pages):
            lines = [random_line(rng).encode("latin-1", "ignore").decode("latin-1")
                     for _ in range(int((LETTER[1] - 72) / (1.4 * size)))]
            page = decode_image(text_pdf([lines], size=size, width=LETTER[0], height=LETTER[1]), 10**9, 10**9,
                                None, 1, 200)
            for side in sides:
                words, seconds = read(as_sent(Image.fromarray(page.pixels), side, args.high)[0])
                letters[side].add([t for t, _, _ in words], " ".join(lines).split(), seconds)
        for side in sides:
            print(letters[side].row(f"letter pages, {size} pt at 200 dpi", side), flush=True)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
