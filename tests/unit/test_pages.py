"""``?pages=`` and ``--pages``: one parser, bounded before it expands a range."""

import pickle
import time

import pytest

from serve_app.pages import SPEC_MAX_LENGTH, TooManyPages, in_parts, page_spec, parse_pages


def test_pages_are_all_or_a_list_of_ranges():
    assert parse_pages("all") == []
    assert parse_pages("3,1-2,2") == [1, 2, 3]
    assert parse_pages(" 2 - 4 ,7") == [2, 3, 4, 7]
    for bad in ("0", "", "a-b", "2-x", "4-2", "1,,2", "1-", "-3", "1.5", "²", "all,2", "0-3"):
        with pytest.raises(ValueError) as caught:
            parse_pages(bad)
        assert "from 1" in str(caught.value) and repr(bad) in str(caught.value)


def test_more_pages_than_a_request_may_read_are_refused_before_they_are_listed():
    assert parse_pages("1-3,5,3", most=4) == [1, 2, 3, 5]
    t0 = time.perf_counter()
    for spec in ("1-999999999", "1-5", "1-3,7-8", "1-2,999999990-999999999"):
        with pytest.raises(TooManyPages) as caught:
            parse_pages(spec, most=4)
        assert caught.value.status == 413 and "at most 4" in str(caught.value)
    assert time.perf_counter() - t0 < 0.1  # a billion pages named were never listed


@pytest.mark.parametrize("pages", [[1], [1, 2, 3], [1, 2, 3, 5], [2, 4, 6, 7, 8, 10], list(range(3, 60)), [9, 10]])
def test_a_spelling_of_page_numbers_reads_back_as_those_numbers(pages):
    assert parse_pages(page_spec(pages)) == pages
    assert page_spec([1, 2, 3, 5]) == "1-3,5"


def test_pages_past_a_limit_are_asked_for_in_parts_of_that_many_each_within_the_apis_length():
    assert in_parts(list(range(2, 53)), 50) == ["2-51", "52"]
    assert in_parts(list(range(1, 101)), 50) == ["1-50", "51-100"]
    assert in_parts([], 50) == []
    scattered = list(range(10_000, 30_000, 3))  # 50 of them spell out to 299 characters
    parts = in_parts(scattered, 50)
    assert all(len(p) <= SPEC_MAX_LENGTH and len(parse_pages(p)) <= 50 for p in parts)
    assert [n for p in parts for n in parse_pages(p)] == scattered
    assert max(len(parse_pages(p)) for p in parts) == 25  # halved until it fits, not split page by page


def test_too_many_pages_says_how_many_a_request_reads():
    with pytest.raises(TooManyPages) as refused:
        parse_pages("1-60", 50)
    assert refused.value.limit == 50
    again = pickle.loads(pickle.dumps(refused.value))  # as an exception crosses processes
    assert isinstance(again, TooManyPages) and str(again) == str(refused.value)
