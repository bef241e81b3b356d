"""``?region=``: parsed to the whole pixels holding it, clipped to the page, cut from a decode at its own scale."""

import numpy as np
import pytest

from serve_app.regions import MIN_SIDE, RegionOutside, clipped, crop, framed, parse_region


def test_a_region_is_the_whole_pixels_that_hold_it():
    assert parse_region("10,20,110,60") == (10, 20, 110, 60)
    assert parse_region(" 10.6, 20.2 ,110.1,59.5") == (10, 20, 111, 60)  # an answer's boxes, as they come


@pytest.mark.parametrize("spec,says", [("10,20,110", "four numbers"), ("a,b,c,d", "four numbers"),
                                       ("10,20,110,60,5", "four numbers"), ("-1,0,10,10", "four numbers"),
                                       ("0,0,inf,10", "four numbers"), ("50,0,10,10", "x1 must be greater"),
                                       ("0,10,10,10", "y1 greater")])
def test_a_region_that_is_not_one_says_why(spec, says):
    with pytest.raises(ValueError, match=says):
        parse_region(spec)


def test_a_region_is_clipped_to_the_page_and_refused_where_too_little_of_it_is_on_it():
    assert clipped((10, 20, 110, 60), 640, 480) == (10, 20, 110, 60)
    assert clipped((600, 400, 9000, 9000), 640, 480) == (600, 400, 640, 480)
    with pytest.raises(RegionOutside, match="640 x 480") as outside:
        clipped((700, 0, 800, 100), 640, 480)
    assert (outside.value.status, outside.value.code) == (422, "region_outside")
    with pytest.raises(RegionOutside):
        clipped((0, 0, 100, MIN_SIDE - 1), 640, 480)


def test_a_region_is_cut_from_a_reduced_decode_in_that_decodes_pixels():
    page = np.arange(400 * 600).reshape(400, 600)
    part, left, top = crop(page, (100, 40, 300, 240))
    assert (left, top) == (100, 40) and part.shape == (200, 200) and part[0, 0] == page[40, 100]
    part, left, top = crop(page, (100, 40, 301, 241), 2.0, 2.0)  # decoded at half the upload's size
    assert (left, top) == (50, 20) and part.shape == (101, 101) and part[0, 0] == page[20, 50]


def test_the_benchmarks_thirds_hold_their_words_with_a_margin_and_stay_on_the_page():
    from benchmarks.regions import thirds

    words = [{"text": t, "box": [10, y, 90, y + 20]} for t, y in (("top", 5), ("mid", 140), ("low", 270))]
    words.append({"text": "###", "box": [100, 150, 140, 170], "ignore": True})
    found = thirds({"words": words}, 160, 300, pad=8)
    assert [r for r, _ in found] == [(2, 0, 98, 33), (2, 132, 148, 178), (2, 262, 98, 298)]
    assert [[w["text"] for w in inside] for _, inside in found] == [["top"], ["mid", "###"], ["low"]]


def test_a_region_is_framed_in_its_own_background_colour():
    part = np.full((20, 30, 3), (200, 190, 180), np.uint8)
    part[5:15, 0:30] = 10  # a line of ink from edge to edge
    out = framed(part, 4)
    assert out.shape == (28, 38, 3) and np.array_equal(out[4:24, 4:34], part)
    assert out[0, 0].tolist() == [200, 190, 180] and out[14, 1].tolist() == [200, 190, 180]  # not the ink's
