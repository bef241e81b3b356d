"""Reading an upload turned a quarter or a half: the image turned, the answer turned back, the turn chosen."""

import asyncio

import numpy as np
import pytest

from serve_app.ocr.pipeline import (
    ROTATIONS,
    SAMPLE_LINES,
    UPRIGHT_CONFIDENCE,
    UPRIGHT_SCORE,
    UPRIGHT_WORDS,
    LineResult,
    assemble,
    best_rotation,
    find_turn,
    reading_score,
    turned,
    unturned,
    upright_enough,
    widest,
)
from serve_app.ocr.processing.recognition import Crop, Decoded, Word
from serve_app.ocr.processing.textlines import TextLine


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
    letters = reading(("G", 0.95), ("6", 0.95), ("A", 0.99), ("G=E", 0.98))  # read off the columns of a turned receipt
    assert not upright_enough(letters) and reading_score(letters) < UPRIGHT_SCORE


def _page(right: int, upright_sure: float = 0.6):
    """`find_turn`'s collaborators for a page that reads well at turn ``right``: 12 lines per turn, of growing width.

    Lines found at any other turn read "ol" at ``upright_sure`` (the upload as it comes) or 0.6 confidence.
    """
    found, reads = [], []

    async def find(degrees: int):
        found.append(degrees)
        lines = [TextLine((0, 40 * i, 100 + 10 * i, 40 * i + 32), (), 0.9, 3) for i in range(12)]
        return lines, [Crop(np.full((32, 8), degrees, np.float32), *ln.box) for ln in lines]

    async def read(crops):
        degrees = int(crops[0].pixels[0, 0])
        reads.append((degrees, len(crops)))
        if degrees == right:
            return [Decoded("TOTAL 1250", list(range(0, 20, 2)), [0.99] * 10) for _ in crops]
        sure = upright_sure if degrees == 0 else 0.6
        return [Decoded("ol", [0, 2], [sure] * 2) for _ in crops]

    def keep(lines, crops, readings):
        return assemble(lines, crops, readings, min_word_confidence=0.5)

    return find, read, keep, found, reads


def test_a_turned_page_is_judged_on_its_widest_lines_and_only_the_winner_is_read_whole():
    find, read, keep, found, reads = _page(right=180)
    degrees, results = asyncio.run(find_turn(find, read, keep))
    assert degrees == 180 and sorted(found) == list(ROTATIONS)
    assert [r.text for r in results] == ["TOTAL 1250"] * 12  # every line of the winner, in order
    assert [r.box[1] for r in results] == [40 * i for i in range(12)]
    assert reads[0] == (0, 12)  # the upload as it comes is read whole
    assert sorted(reads[1:4]) == [(90, SAMPLE_LINES), (180, SAMPLE_LINES), (270, SAMPLE_LINES)]
    assert reads[4:] == [(180, 12 - SAMPLE_LINES)]  # then the rest of the winner only
    assert widest([TextLine((0, 0, w, 1), (), 1, 1) for w in (5, 50, 9, 40)], 2) == [1, 3]  # in reading order


def test_an_upload_that_reads_upright_is_read_once():
    find, read, keep, found, reads = _page(right=0)
    degrees, results = asyncio.run(find_turn(find, read, keep))
    assert degrees == 0 and found == [0] and reads == [(0, 12)] and len(results) == 12


def test_a_doubtful_upload_that_still_reads_best_as_it_comes_is_not_read_again():
    find, read, keep, found, reads = _page(right=-1, upright_sure=0.7)  # no turn reads well; the upload reads best
    degrees, results = asyncio.run(find_turn(find, read, keep))
    assert degrees == 0 and sorted(found) == list(ROTATIONS) and len(results) == 12
    assert [n for d, n in reads if d == 0] == [12]  # the upload's whole reading is kept, not repeated


def test_the_turn_is_judged_on_the_service_filter_whatever_filter_the_answer_uses():
    def none_sure_enough(lines, crops, readings):  # a request asking for words read 100 % sure
        return assemble(lines, crops, readings, min_word_confidence=1.0)

    find, read, keep, found, reads = _page(right=0)
    degrees, results = asyncio.run(find_turn(find, read, keep, none_sure_enough))
    # judged upright on `keep`, so read once (on the request's filter nothing is upright: all four turns would be
    # read), and answered with the request's filter
    assert degrees == 0 and found == [0] and reads == [(0, 12)] and results == []
