"""``?pages=`` and ``--pages``: one parser, bounded before it expands a range."""

import time

import pytest

from serve_app.pages import TooManyPages, parse_pages


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
