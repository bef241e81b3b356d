"""The shipped weights read fixed rendered pages exactly: guards against a broken export or a bad retrain."""

import asyncio

import numpy as np
import pytest
from PIL import Image

from serve_app.ocr.predictor import DetectorRunner, OCRPredictor, RecognizerRunner, native_bf16
from training.fonts import latin_fonts
from training.metrics import edit_distance
from training.synth import render_lines

PAGES = [
    ("DejaVuSans.ttf", ["Invoice number 4521", "Total due 38.90", "Thank you"]),
    ("LiberationSerif-Regular.ttf", ["The quick brown fox", "jumps over 12 lazy dogs"]),
    ("LiberationMono-Regular.ttf", ["ORDER 7731", "Qty 2 x 4.50"]),
]


#: Every precision the service can run in; ``auto`` is one of them (int8 on x86-64, else bf16 or fp32).
PRECISIONS = ["fp32", "int8", pytest.param("bf16", marks=pytest.mark.skipif(
    not native_bf16(), reason="this CPU has no bf16 instructions (emulated bf16 is never chosen)"))]


@pytest.fixture(scope="module", params=PRECISIONS)
def predictor(request):
    return OCRPredictor(DetectorRunner(precision=request.param), RecognizerRunner(precision=request.param))


def font(name: str) -> str:
    for f in latin_fonts():
        if f.endswith("/" + name):
            return f
    pytest.skip(f"font {name} not installed")


@pytest.mark.parametrize(("font_name", "lines"), PAGES, ids=[p[0] for p in PAGES])
def test_shipped_weights_read_rendered_pages_exactly(predictor, font_name, lines):
    img, truth = render_lines(lines, font_path=font(font_name), size=30)
    result = predictor(np.asarray(img))
    assert [r.text for r in result] == lines
    for r, t in zip(result, truth):
        assert abs(r.box[1] - t.box[1]) < 12 and abs(r.box[3] - t.box[3]) < 12
        assert r.confidence > 0.5


@pytest.mark.parametrize("precision", PRECISIONS)
def test_shipped_weights_read_cropped_words_at_every_width(precision):
    """The word path (``layout=word``): five widths of each crop agree on the rendered word."""
    recognizer = RecognizerRunner(precision=precision)
    assert len(recognizer.word_scales) == 5
    words = ["Invoice", "4521", "Thank", "jumps", "ORDER"]
    img, truth = render_lines([" ".join(words)], font_path=font("DejaVuSans.ttf"), size=30)
    gray = np.asarray(img.convert("L"))
    crops = [gray[max(0, int(y0) - 4): int(y1) + 4, max(0, int(x0) - 5): int(x1) + 5]
             for _, (x0, y0, x1, y1) in truth[0].words]
    crops.append(np.rot90(crops[0], -1))  # a word turned a quarter: read turned back
    expected = words + [words[0]]
    assert [recognizer.read_word(c).text for c in crops] == expected
    assert [d.text for d in recognizer.read_words(crops)] == expected  # together, as the batched deployment does


@pytest.mark.parametrize("precision", PRECISIONS)
def test_shipped_weights_read_condensed_words_without_dropping_letters(precision):
    """Text squeezed to a third of its width: no view is read so narrow that the word no longer fits its columns.

    Read at 0.7 of that width as well, six of these lost a letter ("Invice", "Eveyone", "Specia").
    """
    words = ["Invoice", "Everyone", "Special", "Station", "Toppings", "Minimum", "Thank", "Harvest"]
    img, truth = render_lines([" ".join(words)], font_path=font("DejaVuSans.ttf"), size=30)
    gray = np.asarray(img.convert("L"))
    crops = [gray[max(0, int(y0) - 4): int(y1) + 4, max(0, int(x0) - 5): int(x1) + 5]
             for _, (x0, y0, x1, y1) in truth[0].words]
    condensed = [np.asarray(Image.fromarray(c).resize((round(c.shape[1] * 0.35), c.shape[0]), Image.BILINEAR))
                 for c in crops]
    assert [d.text for d in RecognizerRunner(precision=precision).read_words(condensed)] == words


@pytest.mark.parametrize("angle", [-12, -10, 10, 14])
def test_shipped_weights_read_tilted_lines(angle):
    """Scene text is often tilted: the detector follows it and each line is cut levelled before reading."""
    lines = ["Fresh bread daily", "Open until 9 pm"]
    img, _ = render_lines(lines, font_path=font("DejaVuSans.ttf"), size=30)
    tilted = img.rotate(angle, resample=Image.BILINEAR, expand=True, fillcolor=(255, 255, 255))
    result = OCRPredictor(DetectorRunner(), RecognizerRunner())(np.asarray(tilted.convert("RGB")))
    assert len(result) == 2  # each tilted line found whole, not in pieces
    for r, truth in zip(sorted(result, key=lambda r: r.box[1]), lines):
        # at -8 to -10 degrees the detector misses the "O" of "Open" (its left end): one character of slack
        assert edit_distance(r.text, truth) <= 1, (r.text, truth)
    for r in result:
        (x0, t0), (x1, t1) = r.poly[0], r.poly[1]
        assert (t1 - t0) / (x1 - x0) == pytest.approx(-np.tan(np.radians(angle)), abs=0.05)  # edges follow it


def test_shipped_weights_find_the_turn_of_an_upside_down_page_also_from_async_code(predictor):
    """`OCRPredictor.read(..., "auto")` runs `find_turn` on an event loop of its own, inside a running one too."""
    img, _ = render_lines(PAGES[0][1], font_path=font(PAGES[0][0]), size=30)
    upside_down = np.ascontiguousarray(np.asarray(img)[::-1, ::-1])

    async def from_a_coroutine():
        return predictor.read(upside_down, "auto")

    for rotation, result in (predictor.read(upside_down, "auto"), asyncio.run(from_a_coroutine())):
        assert rotation == 180 and [r.text for r in result] == PAGES[0][1]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_page_read_in_parts_gives_every_crop_the_probabilities_of_one_call(precision):
    """Replicas read a long page's parts at once (`recognition.parts`); each part must pad and batch its crops as
    the whole page would, since low-precision kernels and the BiLSTM's backward pass over padding change a reading
    with its batch. Lines of many lengths, so that parts cut between buckets of several widths."""
    from serve_app.ocr.processing.recognition import crop_line, parts

    words = "the quick brown fox jumps over 12 lazy dogs and pays 38.90 in cash".split()
    lines = [" ".join(words[: 1 + k % len(words)]) for k in range(48)]
    img, truth = render_lines(lines, font_path=font("DejaVuSans.ttf"), size=24)
    page = np.asarray(img)
    crops = [crop_line(page, t.box).pixels for t in truth]
    recognizer = RecognizerRunner(precision=precision, max_batch=8)
    whole = recognizer.column_probs(crops)
    split = parts([c.shape[1] for c in crops], 8, 12)
    assert len(split) == 4
    for part in split:
        for i, probs in zip(part, recognizer.column_probs([crops[i] for i in part])):
            assert np.array_equal(probs, whole[i]), (i, lines[i])
