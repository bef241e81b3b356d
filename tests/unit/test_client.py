"""The client's retry rules, on answers built by hand: which failures are sent again and how long it waits."""

import asyncio
import random

import httpx
import pytest

from serve_app.client import OCRClient, RetryPolicy, error_of, is_retried, max_pages_of, retry_delay


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


def test_a_404_is_asked_again_only_where_it_says_when():
    on_its_way = answer(404, ours("not_found"), {"Retry-After": "1"})  # stored results still on their way
    assert is_retried(on_its_way) and not is_retried(answer(404, ours("not_found")))


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


def test_a_too_many_pages_answer_says_how_many_pages_a_request_reads():
    said = {"error": {"code": "too_many_pages", "message": "m", "max_pages": 50}, "request_id": "r"}
    assert max_pages_of(answer(413, said)) == 50
    for body in (ours("too_many_pages"), "Payload Too Large", {"error": "x"},
                 *({"error": {"code": "too_many_pages", "message": "m", "max_pages": v}} for v in ("50", 0, True))):
        assert max_pages_of(answer(413, body)) is None


def test_a_service_that_does_not_say_its_page_limit_gets_a_request_per_page():
    """A service of an earlier release answers ``too_many_pages`` without ``max_pages``; the client then reads the
    pages a request each, as it did. (No such service runs here: its answers are written by hand.)"""
    sent: list[str] = []

    def earlier_release(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        sent.append(params.get("pages") or f"page {params['page']}")
        if "pages" in params:
            return answer(413, ours("too_many_pages"))
        page = int(params["page"])
        return answer(200, {"request_id": f"r{page}", "image": {"page": page, "pages": 3}, "text": f"Page {page}"})

    async def read() -> list:
        async with OCRClient("http://ocr") as client:
            await client._http.aclose()
            client._http = httpx.AsyncClient(base_url="http://ocr", transport=httpx.MockTransport(earlier_release))
            return await client.ocr_pages(b"%PDF-", "three.pdf", pages="all")

    answers = asyncio.run(read())
    assert [a.body["text"] for a in answers] == ["Page 1", "Page 2", "Page 3"]
    assert sent[:2] == ["all", "page 1"] and sorted(sent[2:]) == ["page 2", "page 3"]
