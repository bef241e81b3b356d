"""The client's retry rules, on answers built by hand: which failures are sent again and how long it waits."""

import asyncio
import json
import random

import httpx
import pytest

from serve_app.client import (
    DOCUMENT_READ_TIMEOUT_S,
    Answer,
    OCRClient,
    OCRError,
    RetryPolicy,
    error_of,
    in_page_order,
    is_retried,
    max_pages_of,
    retry_delay,
)


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


def _page(n: int, held: int = 3) -> dict:
    return {"request_id": f"r{n}", "image": {"page": n, "pages": held}, "text": f"Page {n}"}


def _lines(*items: dict) -> list[bytes]:
    return [json.dumps(item).encode() + b"\n" for item in items]


class _CutOff(httpx.AsyncByteStream):
    """A streamed answer whose connection drops after its first lines: a proxy or ingress lost mid-stream."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines

    async def __aiter__(self):
        for line in self.lines:
            yield line
        raise httpx.ReadError("connection lost")


def _streaming(tries: list, *answers: httpx.Response) -> OCRClient:
    """A client whose service gives ``answers`` in turn; ``tries`` gets each request's query and key."""
    given = iter(answers)

    def service(request: httpx.Request) -> httpx.Response:
        tries.append((request.url.params.get("format"), request.headers["Idempotency-Key"]))
        return next(given)

    client = OCRClient("http://ocr", policy=RetryPolicy(backoff_s=0.01))
    client._http = httpx.AsyncClient(base_url="http://ocr", transport=httpx.MockTransport(service))
    return client


def _read(client: OCRClient) -> tuple[list, list]:
    heard: list = []

    async def read() -> list:
        async with client:
            return await client.ocr_pages(b"%PDF-", "three.pdf", pages="all", on_page=heard.append)

    return asyncio.run(read()), heard


NDJSON = {"content-type": "application/x-ndjson"}


def test_a_stream_cut_off_is_sent_again_and_each_page_is_heard_of_once():
    """The second try gives every page again (the same key, the same pages); ``on_page`` hears each once, in order."""
    start = {"start": {"request_id": "d", "pages": [1, 2, 3], "held": 3}}
    end = {"end": {"request_id": "d", "text": "", "timings": {}, "models": {}}}
    tries: list = []
    cut = _CutOff(_lines(start, {"page": _page(1)}, {"page": _page(2)}))
    whole = b"".join(_lines(start, *({"page": _page(n)} for n in (1, 2, 3)), end))
    client = _streaming(tries, httpx.Response(200, headers=NDJSON, stream=cut),
                        httpx.Response(200, headers=NDJSON, content=whole))
    answers, heard = _read(client)
    assert [a.body["text"] for a in answers] == ["Page 1", "Page 2", "Page 3"]
    assert [(a.body["text"], a.attempts) for a in heard] == [("Page 1", 1), ("Page 2", 1), ("Page 3", 2)]
    assert [fmt for fmt, _ in tries] == ["ndjson", "ndjson"] and tries[0][1] == tries[1][1]


@pytest.mark.parametrize("status,code,retried", [(504, "timeout", True), (413, "image_too_large", False)])
def test_a_stream_that_ends_in_an_error_is_sent_again_only_where_that_error_is_worth_it(status, code, retried):
    start = {"start": {"request_id": "d", "pages": [1, 2, 3], "held": 3}}
    failed = {"error": {"code": code, "message": "page 2: m"}, "request_id": "d", "status": status}
    ended = [httpx.Response(200, headers=NDJSON, content=b"".join(_lines(start, {"page": _page(1)}, failed)))
             for _ in range(RetryPolicy().attempts)]
    tries: list = []
    with pytest.raises(OCRError) as caught:
        _read(_streaming(tries, *ended))  # never ends: given up after the policy's tries, or at once
    assert (caught.value.status, caught.value.code, caught.value.message) == (status, code, "page 2: m")
    assert len(tries) == (RetryPolicy().attempts if retried else 1)


def test_a_service_that_does_not_stream_still_tells_of_each_page():
    """A service of an earlier release refuses ``format=ndjson`` (422 on the query); the client reads the document as
    JSON and tells of its pages once all are read. (No such service runs here: its answers are written by hand.)"""
    tries: list = []
    refused = answer(422, {"error": {"code": "invalid_request", "message": "query.format: Input should be 'json', "
                                     "'hocr', 'text', 'pdf', 'alto' or 'tsv'"}})
    whole = answer(200, {"request_id": "d", "pages": [_page(n) for n in (1, 2, 3)], "text": ""})
    answers, heard = _read(_streaming(tries, refused, whole))
    assert [a.body["text"] for a in heard] == [a.body["text"] for a in answers] == ["Page 1", "Page 2", "Page 3"]
    assert [fmt for fmt, _ in tries] == ["ndjson", None]


def test_pages_read_side_by_side_are_told_of_in_page_order():
    """A document past the service's page limit is read in parts side by side: its pages come out of order."""
    heard: list = []
    tell = in_page_order([2, 3, 5], heard.append)
    for n in (3, 5):
        tell(Answer({"image": {"page": n}}, 1))
    assert heard == []
    tell(Answer({"image": {"page": 2}}, 1))
    assert [a.body["image"]["page"] for a in heard] == [2, 3, 5]
    assert in_page_order([1], None) is None


def test_a_stream_that_ends_in_an_error_worth_another_try_waits_as_its_line_says(monkeypatch):
    """A stream's last line cannot carry a Retry-After header: it says ``retry_after_s``, and the client waits so."""
    waits: list[float] = []

    class Waits:  # the client's asyncio, its sleeps noted (not the process's: other loops sleep too)
        def __getattr__(self, name: str):
            return getattr(asyncio, name)

        async def sleep(self, delay: float) -> None:
            waits.append(delay)

    monkeypatch.setattr("serve_app.client.asyncio", Waits())
    start = {"start": {"request_id": "d", "pages": [1, 2], "held": 2}}
    end = {"end": {"request_id": "d", "text": "", "timings": {}, "models": {}}}
    late = {"error": {"code": "timeout", "message": "page 2: m"}, "request_id": "d", "status": 504, "retry_after_s": 3}
    tries: list = []
    answers, _ = _read(_streaming(
        tries, httpx.Response(200, headers=NDJSON, content=b"".join(_lines(start, {"page": _page(1, 2)}, late))),
        httpx.Response(200, headers=NDJSON, content=b"".join(_lines(start, *({"page": _page(n, 2)} for n in (1, 2)),
                                                                    end)))))
    assert [a.body["text"] for a in answers] == ["Page 1", "Page 2"] and len(tries) == 2 and waits == [3.0]


def test_one_image_waits_for_its_answer_as_long_as_the_service_may_take():
    """A tall strip read in parts may take up to the service's document_timeout_s (300 s): the client's own
    timeout (120 s by default) would have given up on an answer still on its way, and sent the strip again."""
    waits: list[float] = []

    def service(request: httpx.Request) -> httpx.Response:
        waits.append(request.extensions["timeout"]["read"])
        return answer(200, {"request_id": "r", "image": {"page": 1, "pages": 1}, "text": "a"})

    async def read() -> None:
        async with OCRClient("http://ocr", timeout_s=120) as client:
            await client._http.aclose()
            client._http = httpx.AsyncClient(base_url="http://ocr", timeout=120, transport=httpx.MockTransport(service))
            await client.ocr(b"\x89PNG", "strip.png")
            await client.ocr(b"\x89PNG", "word.png", layout="word")

    asyncio.run(read())
    assert waits == [DOCUMENT_READ_TIMEOUT_S] * 2 and DOCUMENT_READ_TIMEOUT_S > 300
