"""What resolution a PDF page needs to be read: ``ingress.pdf_dpi`` measured, in-process, as the service decodes.

    python -m benchmarks.pdf_pages                      # dpi 100 150 200 300, all of docs_dev, 8 pages per size
    python -m benchmarks.pdf_pages --dpi 150 200 --receipts 20 --pages 4

Two kinds of PDF:
- **scanned**: each docs_dev receipt (``../shared/eval``, measuring only) put into a PDF as an image at
  ``--scan-dpi`` (150: an 80 mm receipt of 435 px is about 138 dpi), then rendered back at each dpi; the receipt's
  own JPEG, decoded as an upload, is the reference row. End-to-end bag-of-words F1 as in `training.evaluate`.
- **born-digital**: pages of random lines (`training.corpus`) in Helvetica at 7, 9 and 11 pt (`training.pdfs`),
  rendered at each dpi; bag-of-words F1 against the lines written.

Seconds: render (inside `decode_image`) and the whole read (render, detect, recognize), medians.
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


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dpi", nargs="+", type=float, default=[100, 150, 200, 300])
    p.add_argument("--receipts", type=int, default=None, help="first N docs_dev receipts (default all)")
    p.add_argument("--scan-dpi", type=float, default=150, help="the resolution receipts are put into PDFs at")
    p.add_argument("--pages", type=int, default=8, help="born-digital pages per font size")
    p.add_argument("--sizes", nargs="+", type=float, default=[7, 9, 11], help="font sizes in points")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p


class Tally:
    """Bag-of-words counts and seconds of one row."""

    def __init__(self) -> None:
        self.m = self.p = self.g = 0
        self.render: list[float] = []
        self.total: list[float] = []

    def add(self, words: list[str], truth: list[str], render_s: float, total_s: float) -> None:
        m, p, g = bag_counts(words, truth)
        self.m, self.p, self.g = self.m + m, self.p + p, self.g + g
        self.render.append(render_s)
        self.total.append(total_s)

    def row(self, name: str) -> str:
        precision, recall, f1 = prf(self.m, self.p, self.g)
        return (f"| {name} | {len(self.total)} | {precision:.3f} | {recall:.3f} | {f1:.3f} | "
                f"{np.median(self.render) * 1e3:.0f} | {np.median(self.total):.3f} |")


def read(predictor: OCRPredictor, data: bytes, cfg: AppConfig, dpi: float) -> tuple[list, float, float, float]:
    """Words (text, centre) as the service would answer, the render scale, render and total seconds."""
    keep_side, keep_short = cfg.detector.detection.keep_sides()
    t0 = time.perf_counter()
    decoded = decode_image(data, 10**9, cfg.ingress.max_pixels, keep_side, 1, dpi, keep_short=keep_short)
    t1 = time.perf_counter()
    lines = predictor(decoded.pixels)
    t2 = time.perf_counter()
    sx, sy = decoded.scale
    words = [(w.text, (w.box[0] + w.box[2]) / 2 * sx, (w.box[1] + w.box[3]) / 2 * sy) for ln in lines for w in ln.words]
    return words, (decoded.dpi or 0) / 72, t1 - t0, t2 - t0


def scanned(predictor: OCRPredictor, cfg: AppConfig, args: argparse.Namespace) -> list[str]:
    items = datasets.read_manifest("eval/docs_dev")[:args.receipts]
    rows = {"jpeg": Tally(), **{d: Tally() for d in args.dpi}}
    for it in items:
        raw = open(it["path"], "rb").read()
        truth = [w["text"] for w in it["words"] if not w.get("ignore")]
        ignored = [w["box"] for w in it["words"] if w.get("ignore")]
        buf = io.BytesIO()
        Image.open(io.BytesIO(raw)).convert("RGB").save(buf, "PDF", resolution=args.scan_dpi, quality=95)
        for key in rows:
            words, scale, render_s, total_s = read(predictor, raw if key == "jpeg" else buf.getvalue(), cfg,
                                                   cfg.ingress.pdf_dpi if key == "jpeg" else float(key))
            to_upload = 1.0 if key == "jpeg" else args.scan_dpi / 72 / scale  # rendered pixels -> receipt pixels
            kept = [t for t, cx, cy in words if not any(
                b[0] <= cx * to_upload <= b[2] and b[1] <= cy * to_upload <= b[3] for b in ignored)]
            rows[key].add(kept, truth, render_s if key != "jpeg" else 0.0, total_s)
    return [rows[k].row(f"receipt as {'JPEG' if k == 'jpeg' else f'PDF at {k:g} dpi'}") for k in rows]


def born_digital(predictor: OCRPredictor, cfg: AppConfig, args: argparse.Namespace) -> list[str]:
    rng = random.Random(args.seed)
    out = []
    for size in args.sizes:
        per_page = int((LETTER[1] - 72) / (1.4 * size))
        pages = [[random_line(rng) for _ in range(per_page)] for _ in range(args.pages)]
        pages = [[ln.encode("latin-1", "ignore").decode("latin-1") for ln in page] for page in pages]
        rows = {d: Tally() for d in args.dpi}
        for lines in pages:
            data = text_pdf([lines], size=size, width=LETTER[0], height=LETTER[1])
            truth = " ".join(lines).split()
            for d in args.dpi:
                words, _, render_s, total_s = read(predictor, data, cfg, d)
                rows[d].add([t for t, _, _ in words], truth, render_s, total_s)
        out += [rows[d].row(f"Helvetica {size:g} pt at {d:g} dpi") for d in args.dpi]
    return out


def main(args: argparse.Namespace) -> None:
    runtime.setup(args.threads)
    cfg = AppConfig()
    det, rec = cfg.detector, cfg.recognizer
    predictor = OCRPredictor(DetectorRunner(**det.runner_args()), RecognizerRunner(**rec.runner_args()),
                             rec.min_tilt, cfg.ingress.min_word_confidence, cfg.ingress.min_unknown_word_confidence)
    print("| PDF | pages | precision | recall | F1 | render ms | s/page |")
    print("|---|---|---|---|---|---|---|")
    for row in scanned(predictor, cfg, args) + born_digital(predictor, cfg, args):
        print(row, flush=True)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
