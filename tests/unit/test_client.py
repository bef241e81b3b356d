"""The client's retry rules, on answers built by hand: which failures are sent again and how long it waits."""

import random

import httpx
import pytest

from serve_app.client import RetryPolicy, error_of, is_retried, retry_delay


def answer(status: int, body: dict | str, headers: dict | None = None) -> httpx.Response:
    if isinstance(body, dict):
        return httpx.Response(status, json=body, headers=headers)
    return httpx.Response(status, text=body, headers=headers)


def ours(code: str) -> dict:
    return {"error": {"code": code, "message": "m"}, "request_id": "r"}


@pytest.mark.parametrize("status,body,retried", [
    (503, ours("overloaded"), True),
    (503, ours("model_unavailable"), True),
    (504, ours("timeout"), True),
    (429, ours("too_many_requests"), True),  # this client past its share: its other requests free a slot
    (500, "Internal Server Error", True),  # Serve's proxy, for a lost ingress replica
    (502, "<html>Bad Gateway</html>", True),
    (500, ours("internal_error"), False),  # a fault of ours for this input: report its request_id
    (415, ours("unsupported_media_type"), False),
    (413, ours("image_too_large"), False),
    (422, ours("page_out_of_range"), False),
])
def test_which_failures_are_sent_again(status, body, retried):
    assert is_retried(answer(status, body)) is retried


def test_a_body_that_is_not_ours_still_gives_a_code_and_message():
    assert error_of(answer(500, "Internal Server Error")) == ("http_error", "Internal Server Error", None)
    assert error_of(answer(503, ours("overloaded"))) == ("overloaded", "m", "r")


def test_retry_after_is_obeyed_up_to_the_cap_and_backoff_doubles_with_jitter():
    policy = RetryPolicy(backoff_s=0.5, max_backoff_s=10)
    assert retry_delay(answer(503, ours("overloaded"), {"Retry-After": "3"}), 1, policy) == 3
    assert retry_delay(answer(503, ours("overloaded"), {"Retry-After": "600"}), 1, policy) == 10
    rng = random.Random(0)
    waits = [[retry_delay(None, attempt, policy, rng) for _ in range(200)] for attempt in (1, 2, 3, 8)]
    for (low, high), seen in zip([(0.25, 0.5), (0.5, 1.0), (1.0, 2.0), (5.0, 10.0)], waits):
        assert low <= min(seen) and max(seen) <= high and max(seen) - min(seen) > (high - low) / 2
