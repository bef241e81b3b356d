"""Reading an upload turned a quarter or a half: the image turned, the answer turned back, the turn chosen."""

import numpy as np
import pytest

from serve_app.ocr.pipeline import (
    ROTATIONS,
    UPRIGHT_CONFIDENCE,
    UPRIGHT_WORDS,
    LineResult,
    best_rotation,
    turned,
    unturned,
    upright_enough,
)
from serve_app.ocr.processing.recognition import Word


def ink_box(gray: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(gray)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("degrees", ROTATIONS)
def test_a_box_found_on_the_turned_image_comes_back_where_the_ink_is_in_the_upload(degrees):
    upload = np.zeros((60, 100, 3), np.uint8)  # wide: a quarter turn swaps the axes
    upload[10:20, 30:80] = 255  # a "line" near the top
    seen = turned(upload, degrees)
    assert seen.flags.c_contiguous and seen.shape == ((60, 100, 3) if degrees in (0, 180) else (100, 60, 3))
    box = tuple(float(v) for v in ink_box(seen[..., 0]))
    x0, y0, x1, y1 = box
    line = LineResult(box, "ab", 0.9, [Word("ab", box, 0.9)], ((x0, y0), (x1, y0), (x1, y1), (x0, y1)))
    (back,) = unturned([line], degrees, 100, 60)
    assert back.box == (30, 10, 80, 20) and back.words[0].box == back.box
    # the polygon keeps reading order: its first corner is the one the turn brought to the top left
    assert back.poly[0] == {0: (30, 10), 90: (30, 20), 180: (80, 20), 270: (80, 10)}[degrees]


def test_a_line_without_a_polygon_gets_the_turned_back_corners_of_its_box():
    line = LineResult((10, 5, 40, 15), "x", 0.9, [])
    (back,) = unturned([line], 180, 100, 60)
    assert back.box == (60, 45, 90, 55) and back.poly == ((90, 55), (60, 55), (60, 45), (90, 45))
    assert unturned([line], 0, 100, 60) == [line]


def reading(*words: tuple[str, float]) -> list[LineResult]:
    ws = [Word(t, (0, 0, 1, 1), c) for t, c in words]
    return [LineResult((0, 0, 1, 1), " ".join(t for t, _ in words), 0.9, ws)] if ws else []


def test_the_turn_that_reads_most_confident_text_wins_and_a_tie_keeps_the_upload_as_it_is():
    upright, upside_down = reading(("TOTAL", 0.99), ("12.50", 0.98)), reading(("OS", 0.85), ("ZI", 0.8))
    assert best_rotation({0: upside_down, 90: [], 180: upright, 270: reading(("l", 0.7))}) == 180
    assert best_rotation({0: upright, 180: upright}) == 0
    assert best_rotation({0: [], 90: [], 180: [], 270: []}) == 0


def test_only_a_confident_reading_of_the_upload_skips_the_other_turns():
    sure, unsure = UPRIGHT_CONFIDENCE + 0.01, UPRIGHT_CONFIDENCE - 0.05
    assert upright_enough(reading(*[("TOTAL", sure)] * UPRIGHT_WORDS))
    assert not upright_enough(reading(*[("OS", unsure)] * UPRIGHT_WORDS))
    assert not upright_enough(reading(*[("TOTAL", sure)] * (UPRIGHT_WORDS - 1)))  # too few words to be sure
    assert not upright_enough([])  # nothing read: maybe it is sideways
