"""The ingress's gzip: which answers it compresses, that they decode to what was sent, that a stream stays a stream."""

import asyncio
import gzip
import json
import zlib

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from deployments import compression

ANSWER = json.dumps({"lines": [{"text": f"Line {n} of a receipt", "box": [10, 20 * n, 300, 20 * n + 18],
                                "confidence": 0.97} for n in range(60)]}).encode()


def respond(body: bytes, media_type: str, etag: str | None = None) -> Route:
    async def endpoint(_request):
        return Response(body, media_type=media_type, headers={"ETag": etag} if etag else None)
    return Route(f"/{media_type.replace('/', '-')}", endpoint)


APP = compression.Compression(Starlette(routes=[
    respond(ANSWER, "application/json", '"abc"'),
    respond(ANSWER, "image/tiff", '"sha"'),
    respond(ANSWER, "application/pdf"),
    respond(ANSWER, "text/tab-separated-values"),
]))


@pytest.fixture
def level():
    before = compression.configured()
    compression.configure(6)
    yield
    compression.configure(before)


def get(path: str, app=APP, **headers: str) -> tuple[httpx.Response, bytes]:
    """The answer (its body decoded as a client decodes it) and the bytes that came on the wire."""
    async def go() -> tuple[httpx.Response, bytes]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            async with c.stream("GET", path, headers=headers) as r:
                raw = b"".join([chunk async for chunk in r.aiter_raw()])
            return r, raw
    return asyncio.run(go())


def test_an_answer_is_gzipped_for_a_client_that_accepts_it_and_decodes_to_what_was_sent(level):
    r, raw = get("/application-json", **{"Accept-Encoding": "gzip, deflate"})
    assert r.headers["content-encoding"] == "gzip" and r.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(raw) == ANSWER and len(raw) < len(ANSWER) / 5
    assert int(r.headers["content-length"]) == len(raw)
    assert r.headers["etag"] == 'W/"abc"'  # another representation of the same answer: a weak tag
    tsv, raw = get("/text-tab-separated-values", **{"Accept-Encoding": "gzip"})
    assert tsv.headers["content-encoding"] == "gzip" and gzip.decompress(raw) == ANSWER


def test_what_is_compressed_already_or_not_asked_for_goes_as_it_is(level):
    plain, raw = get("/application-json", **{"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and raw == ANSWER and plain.headers["etag"] == '"abc"'
    for path in ("/image-tiff", "/application-pdf"):  # stored images and PDFs: compressed already
        r, raw = get(path, **{"Accept-Encoding": "gzip"})
        assert "content-encoding" not in r.headers and raw == ANSWER, path
    assert get("/image-tiff", **{"Accept-Encoding": "gzip"})[0].headers["etag"] == '"sha"'  # kept strong


def test_a_short_answer_is_not_worth_a_gzip_header(level):
    r, raw = get("/application-json", app=compression.Compression(Starlette(routes=[
        respond(b'{"status":"ok"}', "application/json")])), **{"Accept-Encoding": "gzip"})
    assert "content-encoding" not in r.headers and raw == b'{"status":"ok"}'


def test_level_0_compresses_nothing():
    compression.configure(0)
    r, raw = get("/application-json", **{"Accept-Encoding": "gzip"})
    assert "content-encoding" not in r.headers and raw == ANSWER and r.headers["etag"] == '"abc"'


def test_a_streamed_document_is_flushed_line_by_line(level):
    """Each NDJSON line a page: compressed as it comes, each message decodes to its whole line before the next is
    made, so a client still shows each page as it is read."""
    made: list[int] = []

    async def lines():
        for n in range(3):
            made.append(n)
            yield json.dumps({"page": n + 1, "text": "words " * 300}).encode() + b"\n"

    async def endpoint(_request):
        return StreamingResponse(lines(), media_type="application/x-ndjson")

    app = compression.Compression(Starlette(routes=[Route("/doc", endpoint)]))
    scope = {"type": "http", "method": "GET", "path": "/doc", "raw_path": b"/doc", "query_string": b"",
             "headers": [(b"accept-encoding", b"gzip")], "http_version": "1.1", "scheme": "http",
             "server": ("t", 80), "client": ("c", 1), "root_path": ""}
    sent: list[tuple[dict, list[int]]] = []

    async def receive():
        await asyncio.sleep(3600)  # the client never leaves
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append((message, list(made)))

    asyncio.run(app(scope, receive, send))
    start = sent[0][0]
    assert start["type"] == "http.response.start" and (b"content-encoding", b"gzip") in start["headers"]
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pages = []
    for message, made_by_then in sent[1:]:
        chunk = decoder.decompress(message.get("body", b""))
        if chunk:
            page = json.loads(chunk)  # a whole line, not a part of one held back in the compressor
            assert made_by_then[-1] == page["page"] - 1  # sent before the next line was made
            pages.append(page["page"])
    assert pages == [1, 2, 3] and decoder.eof


@pytest.mark.parametrize(("accept", "gzipped"), [
    ("gzip", True), ("deflate, gzip;q=0.5", True), ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
    ("gzip;q=0", False), ("identity, gzip;q=0.0", False), ("*;q=0.5, gzip;q=0", False), ("gzip;q=oops", False),
    ("deflate", False), ("", False),
])
def test_gzip_goes_only_to_a_client_that_gives_it_a_weight_above_0(level, accept, gzipped):
    """``gzip;q=0`` refuses gzip (RFC 9110 12.5.3); a test for the word alone would send it anyway."""
    assert compression.accepts_gzip(accept) == gzipped
    r, raw = get("/application-json", **{"Accept-Encoding": accept})
    assert (r.headers.get("content-encoding") == "gzip") == gzipped and (raw == ANSWER) != gzipped
