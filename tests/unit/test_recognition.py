import numpy as np
import pytest
from PIL import Image, ImageDraw

from serve_app.ocr.alphabet import CHARSET, encode, sanitize
from serve_app.ocr.pipeline import (
    STEEP_TILT,
    assemble,
    make_crops,
    may_be_one_word,
    one_word_page,
    to_upload_pixels,
)
from serve_app.ocr.processing.recognition import (
    Crop,
    Decoded,
    crop_line,
    crop_tilted,
    ctc_greedy,
    line_slope,
    normalise,
    pad_crops,
    parts,
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
    by_default = sorted(sorted(widths[i] for i in g) for g in width_buckets(widths))  # BUCKET_RATIO: 3x
    assert by_default == [[100, 105, 110], [400, 420, 1000]]
    assert sorted(i for g in width_buckets(widths, max_batch=2) for i in g) == list(range(6))
    assert all(len(g) <= 2 for g in width_buckets(widths, max_batch=2))


@pytest.mark.parametrize("seed", range(6))
def test_a_pages_crops_go_in_parts_of_whole_buckets_that_each_form_those_buckets_again(seed):
    """What lets replicas read a long page together and still answer as one call would (`recognition.parts`)."""
    rng = np.random.default_rng(seed)
    n, max_batch, per_part = int(rng.integers(1, 900)), int(rng.choice([4, 16, 32])), int(rng.choice([8, 32, 64]))
    widths = [int(w) for w in rng.choice([64, 200, 400, 800, 1220, 1600], n) + rng.integers(0, 60, n) * 4]
    split = parts(widths, max_batch, per_part)
    assert sorted(i for p in split for i in p) == list(range(n))  # every crop once
    assert 1 <= len(split) <= max(1, round(n / per_part))
    whole = width_buckets(widths, max_batch)
    for part in split:
        # the recognizer buckets a part's crops in the order sent: the buckets of the whole page that it holds
        again = [[part[j] for j in b] for b in width_buckets([widths[i] for i in part], max_batch)]
        assert again == [b for b in whole if b[0] in part], (seed, part)
    if len(whole) >= 4 * len(split):  # balanced by padded columns, not counted crops: within a bucket or so
        costs = [sum(len(b) * max(widths[i] for i in b) for b in whole if b[0] in part) for part in split]
        biggest = max(len(b) * max(widths[i] for i in b) for b in whole)
        assert max(costs) <= sum(costs) / len(split) + biggest


def test_a_small_page_or_parts_turned_off_goes_whole():
    widths = [300, 900, 120] * 20
    assert len(parts(widths, 32, 64)) == 1 and len(parts(widths, 32, 0)) == 1
    assert sorted(parts(widths, 32, 0)[0]) == list(range(60))
    assert len(parts(widths, 8, 20)) == 3 and parts([], 32, 64) == []


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


def test_results_of_a_reduced_decode_map_back_to_upload_pixels():
    poly = ((0.0, 2.0), (100.0, 0.0), (100.0, 30.0), (0.0, 32.0))
    lines = [TextLine((0, 0, 100, 32), poly, 0.9, 5)]
    crops = [Crop(np.zeros((32, 100), np.float32), 0, 0, 100, 32)]
    (line,) = assemble(lines, crops, [Decoded("hi there", list(range(0, 16, 2)), [0.9] * 8)])
    (big,) = to_upload_pixels([line], 2.0, 3.0)
    assert big.box == (0, 0, 200, 96) and big.poly == ((0, 6), (200, 0), (200, 90), (0, 96))
    assert [w.box for w in big.words] == [(a * 2, b * 3, c * 2, d * 3) for a, b, c, d in (w.box for w in line.words)]
    assert big.text == line.text and to_upload_pixels([line], 1.0, 1.0) == [line]


def test_assemble_drops_doubtful_words_but_keeps_the_line():
    lines = [TextLine((0, 0, 100, 32), (), 0.9, 5)]
    crops = [Crop(np.zeros((32, 100), np.float32), 0, 0, 100, 32)]
    readings = [Decoded("hi xq", [0, 2, 4, 6, 8], [0.95, 0.9, 0.9, 0.4, 0.5])]
    (line,) = assemble(lines, crops, readings)
    assert line.text == "hi" and [w.text for w in line.words] == ["hi"]
    (line,) = assemble(lines, crops, readings, min_word_confidence=0.0)
    assert line.text == "hi xq"
    assert assemble(lines, crops, [Decoded("xq", [6, 8], [0.4, 0.5])]) == []


def test_words_the_lexicon_does_not_know_need_more_confidence():
    lines = [TextLine((0, 0, 100, 32), (), 0.9, 5)]
    crops = [Crop(np.zeros((32, 100), np.float32), 0, 0, 100, 32)]
    reading = Decoded("open Subwoy 24", list(range(0, 28, 2)), [0.88] * 14,
                      known=(True, False, True))
    (line,) = assemble(lines, crops, [reading])
    assert line.text == "open 24"  # 0.88 passes the plain bar (0.75) but not the unknown-word bar
    (line,) = assemble(lines, crops, [reading], min_unknown_word_confidence=0.85)
    assert line.text == "open Subwoy 24"
    # the unknown-word bar never lowers the plain one
    assert assemble(lines, crops, [reading], min_word_confidence=0.9, min_unknown_word_confidence=0.0) == []


def _rotate(points: np.ndarray, degrees: float, centre: tuple[float, float]) -> np.ndarray:
    """Points turned as PIL's ``Image.rotate(degrees)`` turns pixels (counter-clockwise on screen)."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    d = points - centre
    return np.stack([centre[0] + c * d[:, 0] + s * d[:, 1], centre[1] - s * d[:, 0] + c * d[:, 1]], 1)


def test_a_tilted_line_is_cut_along_its_axis_and_levelled():
    img = Image.new("L", (600, 400), 255)
    ImageDraw.Draw(img).rectangle([100, 140, 399, 159], fill=0)  # a bar 300 x 20
    img = img.rotate(10, resample=Image.BILINEAR, center=(250, 150), fillcolor=255)
    quad = _rotate(np.array([[100, 140], [400, 140], [400, 160], [100, 160]], float), 10, (250, 150))
    # CTPN's quadrilateral: vertical sides at the line's ends, top and bottom edges fitted along them
    x0, x1 = quad[:, 0].min(), quad[:, 0].max()
    slope = np.tan(np.radians(-10))
    c0 = (quad[0, 1] + quad[3, 1]) / 2 - slope * (quad[[0, 3], 0].mean() - x0)
    half = 10 / np.cos(np.radians(10))
    poly = ((x0, c0 - half), (x1, c0 + slope * (x1 - x0) - half), (x1, c0 + slope * (x1 - x0) + half),
            (x0, c0 + half))
    assert line_slope(poly) == pytest.approx(slope)
    crop = crop_tilted(np.asarray(img), poly)
    ink = crop.pixels < 0
    cols = np.flatnonzero(ink.any(axis=0))
    rows_per_col = [np.flatnonzero(ink[:, j]) for j in cols[5:-5]]
    tops, bottoms = [r[0] for r in rows_per_col], [r[-1] for r in rows_per_col]
    assert max(tops) - min(tops) <= 1 and max(bottoms) - min(bottoms) <= 1  # level: the bar is a band
    assert 14 <= bottoms[0] - tops[0] <= 26  # most of the 32 rows, not a sliver of a tall box
    # crop columns map back to image x along the line (for word boxes)
    to_x = lambda col: crop.x0 + col / crop.scale  # noqa: E731
    assert to_x(cols[0]) == pytest.approx(x0, abs=4) and to_x(cols[-1] + 1) == pytest.approx(x1, abs=4)
    boxed = crop_line(np.asarray(img), (x0, min(p[1] for p in poly), x1, max(p[1] for p in poly)))
    assert (boxed.pixels < 0).mean(axis=0).max() < 0.5  # the box cut holds the bar as a thin diagonal


def test_make_crops_levels_only_lines_that_slope_enough():
    image = np.full((200, 400, 3), 255, np.uint8)
    level = TextLine((10, 10, 200, 40), ((10, 10), (200, 10), (200, 40), (10, 40)), 0.9, 10)
    tilted = TextLine((10, 60, 200, 130), ((10, 100), (200, 60), (200, 90), (10, 130)), 0.9, 10)
    a, b = make_crops(image, [level, tilted], min_tilt=0.05, steep_tilt=1e9)  # the margin: the test below
    assert (a.x0, a.x1) == (crop_line(image, level.box).x0, crop_line(image, level.box).x1)
    (c,) = make_crops(image, [tilted], min_tilt=1e9)
    assert c.pixels.shape[1] == crop_line(image, tilted.box).pixels.shape[1]
    assert b.pixels.shape[1] > 2 * c.pixels.shape[1]  # levelled: as long as the line is, not a squeezed tall box
    assert abs(b.pixels.shape[1] - a.pixels.shape[1]) < 0.15 * a.pixels.shape[1]  # like a level line of its size


def test_steep_lines_are_cut_with_less_margin_above_and_below():
    """A steep line's crop is mostly text (`STEEP_PAD_Y`); a gently tilted one keeps crop_tilted's margin."""

    def ink_share(slope: float, steep_tilt: float = STEEP_TILT) -> float:
        img = Image.new("L", (700, 400), 255)
        x0, x1, top, v = 100.0, 500.0, 120.0, 24.0  # a band 24 px high (vertically) along the slope
        poly = ((x0, top), (x1, top + slope * (x1 - x0)), (x1, top + slope * (x1 - x0) + v), (x0, top + v))
        ImageDraw.Draw(img).polygon(poly, fill=0)
        line = TextLine((x0, top, x1, top + slope * (x1 - x0) + v), poly, 0.9, 20)
        (crop,) = make_crops(np.asarray(img.convert("RGB")), [line], steep_tilt=steep_tilt)
        middle = crop.pixels[:, crop.pixels.shape[1] // 3: 2 * crop.pixels.shape[1] // 3]
        return float((middle < 0).mean())

    assert ink_share(0.03) < 0.82  # 1 / (1 + 2 x 0.15) of the rows
    assert ink_share(0.2) > 0.88  # 1 / (1 + 2 x 0.04)
    assert ink_share(0.2, steep_tilt=1e9) < 0.82  # the margin is what changed


@pytest.mark.parametrize("height,width,word", [(33, 120, True), (160, 800, True), (161, 400, False),
                                               (100, 801, False), (100, 70, False), (720, 1280, False)])
def test_only_an_upload_the_size_of_a_word_crop_is_read_whole_when_no_line_is_found(height, width, word):
    """A photo without text is not a word; nor is a tall crop (vertical text, read turned by layout=word only)."""
    assert may_be_one_word(height, width) is word


def test_a_whole_upload_read_as_a_word_passes_the_word_filter_and_a_surer_reading():
    gray = np.full((40, 120), 255, np.uint8)
    sure = Decoded("Total", columns=[2, 6, 10, 14, 18], probs=[0.99] * 5, known=(True,))
    lines, crops, readings = one_word_page(gray, sure)
    assert [ln.box for ln in lines] == [(0.0, 0.0, 120.0, 40.0)] and readings == [sure]
    assert [r.text for r in assemble(lines, crops, readings)] == ["Total"]
    doubtful = Decoded("Tofal", columns=[2, 6, 10, 14, 18], probs=[0.95, 0.9, 0.8, 0.9, 0.9], known=(False,))
    assert one_word_page(gray, doubtful) == ([], [], [])  # 0.89: under the reading's 0.9
    assert one_word_page(gray, doubtful, 0.0)[2] == [doubtful]  # ?min_confidence=0: every reading
