"""Reading one word from several views: CTC likelihoods, width scaling and the consensus spelling."""

import itertools

import numpy as np
import pytest

from serve_app.ocr.processing.consensus import fitted_scales, log_likelihoods, read_views, resize_width
from serve_app.ocr.processing.lexicon import Lexicon
from serve_app.ocr.processing.recognition import ctc_greedy
from tests.unit.test_lexicon import columns, sure


def test_log_likelihoods_sum_every_alignment():
    probs = columns([{"a": 0.5, "b": 0.2, "_": 0.3}, {"a": 0.4, "b": 0.4, "_": 0.2}])
    brute: dict[str, float] = {}
    for path in itertools.product(range(probs.shape[1]), repeat=len(probs)):
        text = ctc_greedy(np.eye(probs.shape[1])[list(path)]).text
        brute[text] = brute.get(text, 0.0) + float(np.prod([probs[t, k] for t, k in enumerate(path)]))
    texts = ["a", "ab", "b", "ba", ""]
    got = log_likelihoods(probs, texts)
    for text, ll in zip(texts, got):
        assert np.exp(ll) == pytest.approx(brute[text], rel=1e-4)
    assert log_likelihoods(probs, ["aa", "bb"]).max() == -np.inf  # a repeat needs a blank between: 3 columns


def test_resize_width_keeps_height_and_ink():
    gray = np.zeros((32, 40), np.float32)
    gray[:, 10:20] = 1.0
    wide, narrow = resize_width(gray, 1.25), resize_width(gray, 0.8)
    assert wide.shape == (32, 50) and narrow.shape == (32, 32)
    assert resize_width(gray, 1.0) is gray
    assert wide.sum() / gray.sum() == pytest.approx(1.25, rel=0.05)  # the stroke widens with the crop
    assert narrow.sum() / gray.sum() == pytest.approx(0.8, rel=0.05)
    u8 = (gray * 255).astype(np.uint8)
    assert resize_width(u8, 0.8).dtype == np.uint8 and resize_width(u8, 0.8).max() == 255


def test_one_view_reads_as_greedy_and_the_views_outvote_one():
    # view 1 leans to "cat" (0.5 vs 0.45); views 2 and 3 read "cot" clearly: their mean likelihood wins
    v1 = columns([sure("c"), {"a": 0.5, "o": 0.45}, sure("t")])
    v2 = columns([sure("c"), sure("_"), {"o": 0.9, "a": 0.08}, sure("t")])
    v3 = columns([sure("c"), {"o": 0.8, "a": 0.15}, sure("_"), sure("t"), sure("_")])
    alone = read_views([v1])
    assert alone.text == "cat" and alone == ctc_greedy(v1)
    both = read_views([v1, v2, v3])
    assert both.text == "cot"
    assert len(both.columns) == 3 and both.columns[0] == 0 and both.columns[-1] == 2  # over view 1's columns
    assert 0.5 < both.confidence < 1.0


def test_the_lexicon_picks_a_dictionary_spelling_close_to_the_consensus():
    lex = Lexicon(frozenset({"house"}))
    v1 = columns([sure("h"), {"0": 0.6, "o": 0.35}, sure("u"), sure("s"), sure("e")])
    v2 = columns([sure("h"), {"0": 0.55, "o": 0.4}, sure("u"), sure("s"), sure("e"), sure("_")])
    assert read_views([v1, v2]).text == "h0use"
    assert read_views([v1, v2], lex).text == "house"
    assert read_views([v1, v2], lex, margin=0.0).text == "h0use"  # no slack: the likelier spelling stays
    sure0 = columns([sure("h"), {"0": 0.97, "o": 0.01}, sure("u"), sure("s"), sure("e")])
    assert read_views([sure0, sure0], lex).text == "h0use"  # both views are sure of "0": not a near miss


def test_scales_are_raised_only_where_a_view_would_give_too_few_columns_per_character():
    scales = (1.0, 0.7, 0.85, 1.15, 1.4)
    # 40 columns at scale 1 for 8 characters: 0.7 still gives 3.5 per character, nothing changes
    assert fitted_scales(scales, 40, 1.0, 8) == scales
    # 10 columns for 8 characters: every view needs at least 1.5 * 8 = 12 columns, so scale 1.2 at the least
    assert fitted_scales(scales, 10, 1.0, 8) == (1.2, 1.4)
    # the same measured on a view read at 0.5
    assert fitted_scales(scales, 5, 0.5, 8) == (1.2, 1.4)
    assert fitted_scales(scales, 10, 1.0, 8, min_columns=0) == scales
    assert fitted_scales(scales, 0, 1.0, 0) == scales  # nothing read: nothing to fit
