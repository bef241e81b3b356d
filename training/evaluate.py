"""Evaluate the OCR pipeline on ``../shared/eval/*_dev`` and print a table.

    python -m training.evaluate                        # all three sets, shipped weights, 2 threads
    python -m training.evaluate --sets words_dev --limit 200 --json runs/eval.json

Metrics (see ../shared/README.md): end-to-end bag-of-words precision/recall/F1 for scenes and documents
(case-folded, letters and digits only, predictions inside ``###`` regions skipped), exact-match accuracy and
mean CER for word crops, and seconds per image (median, p90; model load excluded).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from serve_app.ocr import runtime
from serve_app.ocr.models.weights import DEFAULT_DETECTOR, DEFAULT_RECOGNIZER
from serve_app.ocr.pipeline import MIN_TILT, ROTATIONS, turned, unturned
from serve_app.ocr.predictor import DEVICES, PRECISIONS, DetectorRunner, OCRPredictor, RecognizerRunner
from serve_app.ocr.processing.consensus import DEFAULT_WORD_SCALES
from serve_app.ocr.processing.detection import DetectionParams
from serve_app.ocr.processing.geometry import inside
from serve_app.ocr.processing.lexicon import DEFAULT_MARGIN
from serve_app.ocr.processing.recognition import to_gray
from serve_app.paths import DEFAULT_LEXICON
from training import datasets
from training.metrics import bag_counts, cer, normalise_text, prf

SETS = ("scenes_dev", "docs_dev", "words_dev")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--limit", type=int, default=None, help="first N items of each set")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--detector", default=str(DEFAULT_DETECTOR))
    p.add_argument("--recognizer", default=str(DEFAULT_RECOGNIZER))
    p.add_argument("--short-side", type=int, default=None, help="override detection input scale")
    p.add_argument("--min-tilt", type=float, default=MIN_TILT, help="lines sloping this much are cut levelled")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="as the service's setting")
    p.add_argument("--device", default="cpu", choices=DEVICES,
                   help="where the models run: cuda as a replica given a GPU (num_gpus) runs them")
    p.add_argument("--lexicon", default=str(DEFAULT_LEXICON), help="word list for corrections ('' for none)")
    p.add_argument("--lexicon-margin", type=float, default=DEFAULT_MARGIN)
    p.add_argument("--word-scales", nargs="+", type=float, default=list(DEFAULT_WORD_SCALES),
                   help="width scales each word crop is read at ('1' for one reading)")
    p.add_argument("--rotate", default="0", choices=[*map(str, ROTATIONS), "auto"],
                   help="as the service's ?rotate=: turn pages this far clockwise before reading, or find the turn")
    p.add_argument("--turn", type=int, default=0, choices=ROTATIONS,
                   help="turn each page this far clockwise first, as if it had been uploaded sideways")
    p.add_argument("--min-confidence", type=float, default=None,
                   help="as the service's ?min_confidence=: keep every word read at least this sure, known or not")
    p.add_argument("--words-as-pages", action="store_true",
                   help="send each words_dev crop as a page, the API's default (no layout=word), and read its text")
    p.add_argument("--json", default=None, help="also write the results here")
    return p


def _inside(cx: float, cy: float, box: list[float]) -> bool:
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


def _corners(box: tuple[float, float, float, float]) -> tuple[tuple[float, float], ...]:
    x0, y0, x1, y1 = box
    return (x0, y0), (x1, y0), (x1, y1), (x0, y1)


def word_centre(word: dict) -> tuple[float, float]:
    """A labelled word's centre: of its quadrilateral where the set gives one, else of its box."""
    if word.get("poly"):
        return tuple(np.asarray(word["poly"], dtype=np.float64).mean(0))
    x0, y0, x1, y1 = word["box"]
    return (x0 + x1) / 2, (y0 + y1) / 2


def eval_pages(predictor: OCRPredictor, name: str, limit: int | None, rotate: str = "0", turn: int = 0) -> dict:
    """Bag-of-words precision, recall and F1 of the answers to a set's pages.

    ``found``: labelled words inside a detected line; with ``turn`` or ``rotate``, inside a line of the answer,
    which leaves out lines without a confident word.
    """
    items = datasets.read_manifest(f"eval/{name}")[:limit]
    matched = predicted = truth = found = labelled = 0
    seconds, turns = [], []
    for it in items:
        image = datasets.load_rgb(it["path"])
        t0 = time.perf_counter()
        if rotate == "0" and not turn:
            detected, lines = predictor.detect_and_read(image)
            polys = [ln.poly for ln in detected]
        else:
            upload = turned(image, turn)
            rotation, lines = predictor.read(upload, rotate)
            lines = unturned(lines, turn, image.shape[1], image.shape[0])  # back into the labels' pixels
            turns.append((rotation + turn) % 360)  # 0: read upright
            polys = [ln.poly or _corners(ln.box) for ln in lines]  # a result without a polygon is its box
        seconds.append(time.perf_counter() - t0)
        labelled_words = [w for w in it["words"] if not w.get("ignore")]
        labelled += len(labelled_words)
        found += sum(any(inside(list(poly), *word_centre(w)) for poly in polys) for w in labelled_words)
        ignored = [w["box"] for w in it["words"] if w.get("ignore")]
        words = [w.text for ln in lines for w in ln.words
                 if not any(_inside((w.box[0] + w.box[2]) / 2, (w.box[1] + w.box[3]) / 2, b) for b in ignored)]
        m, p, g = bag_counts(words, [w["text"] for w in it["words"] if not w.get("ignore")])
        matched, predicted, truth = matched + m, predicted + p, truth + g
    precision, recall, f1 = prf(matched, predicted, truth)
    out = {"set": name, "n": len(items), "precision": precision, "recall": recall, "f1": f1,
           "found": found / max(labelled, 1), "s_median": float(np.median(seconds)),
           "s_p90": float(np.percentile(seconds, 90))}
    if turns:
        out["read_upright"] = turns.count(0) / len(turns)
    return out


def eval_words(recognizer: RecognizerRunner, limit: int | None, as_pages: OCRPredictor | None = None) -> dict:
    """Crops read as ``layout=word`` reads them, or sent as pages to ``as_pages`` (its lines' text, joined)."""
    items = datasets.read_manifest("eval/words_dev")[:limit]
    correct, cers, seconds = 0, [], []
    by_source: dict[str, list[bool]] = {}
    for it in items:
        rgb = datasets.load_rgb(it["path"])
        t0 = time.perf_counter()
        if as_pages is not None:
            text = " ".join(r.text for r in as_pages.read(rgb)[1])
        else:
            text = recognizer.read_word(to_gray(rgb)).text
        seconds.append(time.perf_counter() - t0)
        pred, gt = normalise_text(text).replace(" ", ""), normalise_text(it["text"]).replace(" ", "")
        correct += pred == gt
        by_source.setdefault(it.get("dataset", "?"), []).append(pred == gt)
        cers.append(cer(pred, gt))
    return {"set": "words_dev", "n": len(items), "accuracy": correct / max(len(items), 1), "cer": float(np.mean(cers)),
            "by_dataset": {k: float(np.mean(v)) for k, v in sorted(by_source.items())},
            "s_median": float(np.median(seconds)), "s_p90": float(np.percentile(seconds, 90))}


def table(rows: list[dict]) -> str:
    out = ["| set | n | precision | recall | F1 | word acc | CER | s/image median | s/image p90 |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def f(k: str, r: dict = r) -> str:
            return f"{r[k]:.3f}" if k in r else "–"

        out.append(f"| {r['set']} | {r['n']} | {f('precision')} | {f('recall')} | {f('f1')} | {f('accuracy')} | "
                   f"{f('cer')} | {r['s_median']:.3f} | {r['s_p90']:.3f} |")
    return "\n".join(out)


def main(args: argparse.Namespace) -> list[dict]:
    runtime.setup(args.threads)
    params = DetectionParams() if args.short_side is None else DetectionParams(short_side=args.short_side)
    recognizer = RecognizerRunner(args.recognizer, precision=args.precision, lexicon_path=args.lexicon or None,
                                  lexicon_margin=args.lexicon_margin, word_scales=tuple(args.word_scales),
                                  device=args.device)
    filters = {} if args.min_confidence is None else {"min_word_confidence": args.min_confidence,
                                                      "min_unknown_word_confidence": args.min_confidence}
    predictor = OCRPredictor(DetectorRunner(args.detector, params, args.precision, args.device), recognizer,
                             args.min_tilt,
                             **filters)
    rows = []
    for name in args.sets:
        if name == "words_dev":
            rows.append(eval_words(recognizer, args.limit, predictor if args.words_as_pages else None))
        else:
            rows.append(eval_pages(predictor, name, args.limit, args.rotate, args.turn))
    print(table(rows))
    for r in rows:
        if "found" in r:  # detection alone: a word it missed cannot be read, one it found may still be misread
            print(f"{r['set']}: {r['found']:.1%} of the labelled words lie inside a detected line")
        if "read_upright" in r:
            print(f"{r['set']}: {r['read_upright']:.1%} of the pages were read upright")
        if "by_dataset" in r:
            print("words_dev by source: " + ", ".join(f"{k} {v:.3f}" for k, v in r["by_dataset"].items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
