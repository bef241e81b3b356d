import numpy as np
import pytest

from serve_app.ocr.alphabet import CHARSET, encode, sanitize
from serve_app.ocr.pipeline import assemble
from serve_app.ocr.processing.recognition import (
    Crop,
    Decoded,
    crop_line,
    ctc_greedy,
    normalise,
    pad_crops,
    split_words,
    width_buckets,
)
from serve_app.ocr.processing.textlines import TextLine


def one_hot_path(path: str) -> np.ndarray:
    """Per-column probabilities that put 0.9 on the given characters ('_' is blank)."""
    probs = np.full((len(path), len(CHARSET) + 1), 0.1 / len(CHARSET), np.float32)
    for t, ch in enumerate(path):
        probs[t, 0 if ch == "_" else CHARSET.index(ch) + 1] = 0.9
    return probs


@pytest.mark.parametrize(
    "path,text,columns",
    [
        ("__hh_e_ll_llo__", "hello", [2, 5, 7, 10, 12]),
        ("aaaa", "a", [0]),
        ("a_a", "aa", [0, 2]),
        ("____", "", []),
        ("hi_ _yo", "hi yo", [0, 1, 3, 5, 6]),
    ],
)
def test_greedy_ctc_merges_repeats_and_drops_blanks(path, text, columns):
    d = ctc_greedy(one_hot_path(path))
    assert d.text == text and d.columns == columns
    assert all(p == pytest.approx(0.9) for p in d.probs)


def test_alphabet_is_printable_ascii_with_space():
    assert len(CHARSET) == 95 and " " in CHARSET and "~" in CHARSET
    assert encode("Hi!") == [CHARSET.index("H") + 1, CHARSET.index("i") + 1, CHARSET.index("!") + 1]
    with pytest.raises(ValueError, match="not in the alphabet"):
        encode("é")
    assert sanitize("“café” – 5€") == '"caf" - 5'


def test_split_words_uses_ctc_columns_for_boxes():
    # a crop 400 px wide showing x 100..200 of the image: 4 crop px per image px, column t at crop x 4t + 2
    crop = Crop(np.zeros((32, 400), np.float32), 100.0, 10.0, 200.0, 42.0)
    d = Decoded("ab cd", columns=[10, 12, 16, 40, 42], probs=[0.9, 0.8, 0.99, 0.7, 0.6])
    words = split_words(d, crop, (100.0, 12.0, 200.0, 40.0))
    assert [w.text for w in words] == ["ab", "cd"]
    a, c = words
    assert a.box[1:4:2] == (12.0, 40.0)
    assert 100 + (10 * 4 + 2) / 4 - 3 < a.box[0] < 100 + (10 * 4 + 2) / 4
    assert a.box[2] < c.box[0]
    assert c.box[2] <= 200.0
    assert a.confidence == pytest.approx(0.85) and c.confidence == pytest.approx(0.65)


def test_split_words_ignores_leading_trailing_and_double_spaces():
    crop = Crop(np.zeros((32, 100), np.float32), 0, 0, 100, 32)
    d = Decoded(" a  b ", columns=[0, 2, 4, 6, 8, 10], probs=[0.5] * 6)
    assert [w.text for w in split_words(d, crop, (0, 0, 100, 32))] == ["a", "b"]


def test_width_buckets_keep_similar_widths_together():
    widths = [100, 400, 110, 420, 105, 1000]
    groups = width_buckets(widths, max_batch=8, max_ratio=1.5)
    as_widths = sorted(sorted(widths[i] for i in g) for g in groups)
    assert as_widths == [[100, 105, 110], [400, 420], [1000]]
    assert sorted(i for g in width_buckets(widths, max_batch=2) for i in g) == list(range(6))
    assert all(len(g) <= 2 for g in width_buckets(widths, max_batch=2))


def test_crops_are_32_high_scaled_to_minus_one_one_and_padded_with_their_edge():
    img = np.full((100, 300, 3), 255, np.uint8)
    img[40:60, 50:250] = 0
    crop = crop_line(img, (50, 40, 250, 60))
    assert crop.pixels.shape[0] == 32 and crop.pixels.shape[1] % 4 == 0
    assert crop.pixels.min() == pytest.approx(-1.0) and crop.pixels.max() == pytest.approx(1.0)
    assert crop.x0 < 50 and crop.x1 > 250
    batch = pad_crops([crop.pixels, normalise(np.zeros((10, 20), np.uint8))])
    assert batch.shape == (2, 1, 32, crop.pixels.shape[1])
    assert (batch[1, 0, :, 64:] == -1.0).all()


def test_assemble_joins_words_and_drops_empty_readings():
    lines = [TextLine((0, 0, 100, 32), (), 0.9, 5), TextLine((0, 40, 100, 72), (), 0.9, 5)]
    blank = np.zeros((32, 100), np.float32)
    crops = [Crop(blank, 0, 0, 100, 32), Crop(blank, 0, 40, 100, 72)]
    readings = [Decoded("hi there", list(range(0, 16, 2)), [0.9] * 8), Decoded("", [], [])]
    (line,) = assemble(lines, crops, readings)
    assert line.text == "hi there" and [w.text for w in line.words] == ["hi", "there"]
    assert line.to_dict()["words"][1]["text"] == "there"


def test_assemble_drops_doubtful_words_but_keeps_the_line():
    lines = [TextLine((0, 0, 100, 32), (), 0.9, 5)]
    crops = [Crop(np.zeros((32, 100), np.float32), 0, 0, 100, 32)]
    readings = [Decoded("hi xq", [0, 2, 4, 6, 8], [0.95, 0.9, 0.9, 0.4, 0.5])]
    (line,) = assemble(lines, crops, readings)
    assert line.text == "hi" and [w.text for w in line.words] == ["hi"]
    (line,) = assemble(lines, crops, readings, min_word_confidence=0.0)
    assert line.text == "hi xq"
    assert assemble(lines, crops, [Decoded("xq", [6, 8], [0.4, 0.5])]) == []
