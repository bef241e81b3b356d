"""``If-None-Match`` as RFC 9110 compares it: weakly, in a list, or ``*``."""

import pytest

from deployments.conditional import names

TAG = "9f86d081884c7d65"


@pytest.mark.parametrize("header,named", [
    (f'"{TAG}"', True),
    (f'W/"{TAG}"', True),  # as a proxy that compresses answers hands it on
    (f'"other", W/"{TAG}"', True),
    (f' "other" ,"{TAG}" ', True),
    ("*", True),
    ('"other"', False),
    (f"{TAG}", False),  # unquoted: not an entity tag
    (f'"{TAG}x"', False),
    (f'W/"{TAG[:-1]}"', False),
    ("", False),
])
def test_an_if_none_match_names_the_tag_weakly_or_by_star(header, named):
    assert names(header, TAG) is named
