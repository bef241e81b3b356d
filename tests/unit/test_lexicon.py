"""CTC n-best decoding and lexicon correction on hand-made column probabilities."""

import gzip
import itertools

import numpy as np
import pytest

from serve_app.ocr.alphabet import CHARSET
from serve_app.ocr.processing.lexicon import Lexicon, correct, ctc_nbest, mark_known
from serve_app.ocr.processing.recognition import Crop, Decoded, ctc_greedy, split_words

LEX = Lexicon(frozenset({"house", "total", "due"}))


def columns(spec: list[dict[str, float]]) -> np.ndarray:
    """One row per column; each dict gives character probabilities ('_' is blank), the rest is spread thinly."""
    probs = np.full((len(spec), len(CHARSET) + 1), 1e-5, np.float64)
    for t, col in enumerate(spec):
        for ch, p in col.items():
            probs[t, 0 if ch == "_" else CHARSET.index(ch) + 1] = p
    return probs / probs.sum(1, keepdims=True)


def sure(ch: str) -> dict[str, float]:
    return {ch: 0.98}


def test_nbest_scores_are_the_sum_over_all_alignments():
    probs = columns([{"a": 0.6, "_": 0.4}, {"a": 0.5, "b": 0.3, "_": 0.2}])
    brute: dict[str, float] = {}
    for path in itertools.product(range(probs.shape[1]), repeat=2):
        text = ctc_greedy(np.eye(probs.shape[1])[list(path)]).text
        brute[text] = brute.get(text, 0.0) + float(np.prod([probs[t, k] for t, k in enumerate(path)]))
    best = ctc_nbest(probs, beam=200, prune=0.0)  # a beam wide enough to keep every prefix
    assert [t for t, _ in best[:3]] == sorted(brute, key=brute.get, reverse=True)[:3]
    for text, score in best[:5]:
        assert np.exp(score) == pytest.approx(brute[text], rel=1e-6)


def test_a_near_miss_becomes_the_dictionary_word_and_keeps_its_columns():
    # greedy reads "h0use" ("0" at 0.5 against "o" at 0.45); the dictionary spelling is close behind
    probs = columns([sure("h"), sure("_"), {"0": 0.5, "o": 0.45}, sure("u"), sure("s"), sure("_"), sure("e")])
    greedy = ctc_greedy(probs)
    assert greedy.text == "h0use"
    fixed = correct(greedy, probs, LEX)
    assert fixed.text == "house"
    assert fixed.columns[0] == greedy.columns[0] and fixed.columns[-1] == greedy.columns[-1]
    assert correct(greedy, probs, LEX, margin=0.0).text == "h0use"  # no slack: the better path stays


def test_confident_readings_numbers_and_other_words_stay():
    probs = columns([sure("h"), {"0": 0.97, "o": 0.01}, sure("u"), sure("s"), sure("e")])
    assert correct(ctc_greedy(probs), probs, LEX).text == "h0use"  # the columns say "0": not a near miss
    line = "T0tal due 38.90"
    spec = [sure(ch) for ch in line]
    spec[1] = {"0": 0.55, "o": 0.4}
    probs = columns(spec)
    fixed = correct(ctc_greedy(probs), probs, LEX)
    assert fixed.text == "Total due 38.90"  # the case of what was read is kept
    assert len(fixed.columns) == len(fixed.text) and fixed.columns == ctc_greedy(probs).columns


def test_words_of_letters_only_that_the_lexicon_lacks_are_marked_unknown():
    reading = mark_known(Decoded("TOTAL Hcuse 38.90 A1B2 & due!", list(range(29)), [0.9] * 29), LEX)
    assert reading.known == (True, False, True, True, True, True)  # digits and punctuation: nothing to vouch for
    crop = Crop(np.zeros((32, 120), np.float32), 0, 0, 120, 32)
    words = split_words(reading, crop, (0, 0, 120, 32))
    assert [(w.text, w.known) for w in words][:2] == [("TOTAL", True), ("Hcuse", False)]
    assert all(w.known for w in split_words(Decoded("xq zz", [0, 2, 4, 6, 8], [0.9] * 5), crop, (0, 0, 120, 32)))


def test_lexicon_files_are_compared_case_and_punctuation_free(tmp_path):
    path = tmp_path / "words.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write("House\ndon't\n\n")
    lex = Lexicon.load(path)
    assert "HOUSE" in lex and "dont" in lex and "houses" not in lex


def test_the_shipped_lexicon_knows_common_words():
    from serve_app.paths import DEFAULT_LEXICON

    lex = Lexicon.load(DEFAULT_LEXICON)
    assert len(lex.words) > 100_000
    assert {"house", "total", "invoice", "thank"} <= lex.words and "h0use" not in lex


def test_the_shipped_lexicon_is_what_build_lexicon_builds():
    from serve_app.paths import DEFAULT_LEXICON
    from training.build_lexicon import lexicon_words

    shipped = Lexicon.load(DEFAULT_LEXICON).words
    dictionary_only = lexicon_words(("dictionary",))
    assert shipped == lexicon_words()  # rebuild with `python -m training.build_lexicon` when a source changes
    assert dictionary_only < shipped and {"hdtv", "lcd"} <= shipped - dictionary_only
    assert not {"everyon", "specia", "witr"} & shipped  # wordfreq's rarest tokens: misreads spelling them stay unknown


def test_lexicon_sweep_scores_each_lexicon_and_margin():
    import random

    from serve_app.ocr.predictor import RecognizerRunner
    from training.synth import render_crop
    from training.tune_lexicon import sweep

    rng = random.Random(3)
    items = [render_crop(rng, text, clean=True) for text in ("house", "total", "due")]
    runner = RecognizerRunner(precision="fp32", lexicon_path=None)
    result = sweep(runner, items + [(items[0][0], "wrong")], {"none": None, "lex": LEX}, [1.0, 4.0])
    assert set(result) == {("none", 0.0), ("lex", 1.0), ("lex", 4.0)}
    assert all(v == 0.75 for v in result.values())  # three clean words read right, the mislabelled one never


def test_words_run_together_are_split_where_the_ctc_allows_a_space():
    # greedy reads "totaldue": the column between "l" and "d" is mostly blank, a space is the runner-up
    spec = [sure(ch) for ch in "total"] + [{"_": 0.7, " ": 0.25}] + [sure(ch) for ch in "due"]
    probs = columns(spec)
    greedy = ctc_greedy(probs)
    assert greedy.text == "totaldue"
    fixed = correct(greedy, probs, LEX, split=True)
    assert fixed.text == "total due" and len(fixed.columns) == len(fixed.text)
    assert fixed.columns[0] == greedy.columns[0] and fixed.columns[-1] == greedy.columns[-1]
    assert correct(greedy, probs, LEX).text == "totaldue"  # off unless asked (single word crops)
    assert correct(greedy, probs, LEX, split=True, min_part=4).text == "totaldue"  # "due" is too short a part


def test_a_split_needs_both_the_ctc_and_the_dictionary():
    spec = [sure(ch) for ch in "total"] + [{"_": 0.999, " ": 1e-4}] + [sure(ch) for ch in "due"]
    probs = columns(spec)  # no room for a space: the beam prunes it
    assert correct(ctc_greedy(probs), probs, LEX, split=True).text == "totaldue"
    spec = [sure(ch) for ch in "tota"] + [{"_": 0.7, " ": 0.25}] + [sure(ch) for ch in "xdue"]
    probs = columns(spec)  # a space is likely, but "tota" and "xdue" are not words
    assert correct(ctc_greedy(probs), probs, LEX, split=True).text == "totaxdue"
