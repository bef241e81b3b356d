"""Lexicon and margin checked on real text no recognizer trained on, without touching the evaluation sets.

Exact-match accuracy (case-folded letters and digits) of greedy CTC readings corrected by each lexicon at each
margin, on three sets: the held-out ICDAR 2013 born-digital TRAIN words (`datasets.borndigital_words("check")`),
800 SROIE TRAIN receipt lines and 600 degraded synthetic crops (whose words come from the dictionary, so they
favour it).

    python -m training.tune_lexicon --margins 2 3 4 --lexicons dictionary dictionary+wordfreq
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import torch

from serve_app.ocr.models.weights import DEFAULT_RECOGNIZER
from serve_app.ocr.predictor import PRECISIONS, RecognizerRunner
from serve_app.ocr.processing import lexicon
from serve_app.ocr.processing.recognition import ctc_greedy, normalise
from training import datasets
from training.build_lexicon import lexicon_words
from training.metrics import normalise_text
from training.train_crnn import heldout_synthetic

Items = list[tuple[np.ndarray, str]]


def check_sets() -> dict[str, Items]:
    lines = list(datasets.cached("train_sroie", datasets.line_crops))
    random.Random(0).shuffle(lines)
    return {"born-digital check": datasets.cached("train_borndigital_check",
                                                  lambda: datasets.borndigital_words("check")),
            "SROIE TRAIN lines": lines[:800],
            "synthetic degraded": heldout_synthetic(600, seed=999, clean=False)}


def _key(text: str) -> str:
    return normalise_text(text).replace(" ", "")


def sweep(runner: RecognizerRunner, items: Items, lexicons: dict[str, lexicon.Lexicon | None],
          margins: list[float]) -> dict[tuple[str, float], float]:
    """Accuracy per (lexicon, margin); the model runs once, only the correction changes."""
    probs = runner.column_probs([normalise(np.ascontiguousarray(g)) for g, _ in items])
    greedy = [ctc_greedy(p, runner.charset) for p in probs]
    truth = [_key(t) for _, t in items]
    out = {}
    for name, lex in lexicons.items():
        for m in margins if lex is not None else [0.0]:
            texts = [lexicon.correct(d, p, lex, runner.charset, m).text if lex is not None else d.text
                     for d, p in zip(greedy, probs)]
            out[(name, m)] = float(np.mean([_key(t) == g for t, g in zip(texts, truth)]))
    return out


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    runner = RecognizerRunner(args.recognizer, precision=args.precision, lexicon_path=None)
    lexicons: dict[str, lexicon.Lexicon | None] = {"none": None}
    for spec in args.lexicons:
        lexicons[spec] = lexicon.Lexicon(frozenset(lexicon_words(tuple(spec.split("+")))))
    sets = check_sets()
    rows = {name: sweep(runner, items, lexicons, args.margins) for name, items in sets.items()}
    cols = list(next(iter(rows.values())))
    print("| set | n | " + " | ".join(f"{lx} {m:g}" if lx != "none" else "none" for lx, m in cols) + " |")
    print("|---" * (len(cols) + 2) + "|")
    for name, res in rows.items():
        print(f"| {name} | {len(sets[name])} | " + " | ".join(f"{res[c]:.3f}" for c in cols) + " |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recognizer", default=str(DEFAULT_RECOGNIZER))
    p.add_argument("--lexicons", nargs="+", default=["dictionary", "dictionary+wordfreq"],
                   help="sources joined by '+': dictionary, wordfreq")
    p.add_argument("--margins", nargs="+", type=float, default=[2.0, 3.0, 4.0, 5.0])
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--threads", type=int, default=1)
    main(p.parse_args())
