"""The ingress's middleware stack, in its order, around routes of our own: without Serve, over plain ASGI calls."""

import asyncio
import gzip
import json

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse

from deployments import api_keys, compression, cross_origin, errors, ingress, unhandled

ORIGIN = "https://app.example.com"
ANSWER = {"lines": [{"text": f"Line {n} of a receipt", "box": [10, 20 * n, 300, 20 * n + 18], "confidence": 0.97}
                    for n in range(60)]}


def stacked() -> FastAPI:
    """An app behind the ingress's own middlewares and handlers."""
    app = FastAPI()
    app.user_middleware = list(ingress.api.user_middleware)
    app.exception_handlers = dict(ingress.api.exception_handlers)

    @app.get("/api/v1/answer")
    async def answer() -> JSONResponse:
        return JSONResponse(ANSWER)

    @app.get("/api/v1/stream")
    async def stream() -> StreamingResponse:
        async def lines():
            for n in range(3):
                yield json.dumps({"page": n + 1, "text": "word " * 400}).encode() + b"\n"
        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return app


@pytest.fixture
def configured():
    before = compression.configured(), cross_origin.configured()
    compression.configure(6)
    cross_origin.configure((ORIGIN,))
    yield
    compression.configure(before[0])
    cross_origin.configure(before[1])


def fetch(app, path: str, **headers: str) -> tuple[httpx.Response, list[bytes]]:
    """The answer and its body as the chunks that came on the wire."""
    async def go() -> tuple[httpx.Response, list[bytes]]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            async with c.stream("GET", path, headers=headers) as r:
                return r, [chunk async for chunk in r.aiter_raw()]
    return asyncio.run(go())


def test_a_whole_answer_goes_gzipped_with_its_length_and_every_layers_headers(configured):
    """Through ``@app.middleware("http")`` layers the gzip layer saw every body as a stream: chunked, no length."""
    r, chunks = fetch(stacked(), "/api/v1/answer", **{"Accept-Encoding": "gzip", "Origin": ORIGIN})
    raw = b"".join(chunks)
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert int(r.headers["content-length"]) == len(raw) and len(chunks) == 1
    assert json.loads(gzip.decompress(raw)) == ANSWER
    assert r.headers["access-control-allow-origin"] == ORIGIN  # cross-origin, inside
    assert r.headers["x-content-type-options"] == "nosniff" and "sandbox" in r.headers["content-security-policy"]
    assert {v.strip() for v in r.headers["vary"].split(",")} == {"Origin", "Accept-Encoding"}


def test_a_stream_still_goes_line_by_line_through_every_layer(configured):
    """Each line its own message, sent as it is made: no layer holds an answer back (httpx's ASGI transport would
    join them, so the app is called as Serve calls it)."""
    scope = {"type": "http", "method": "GET", "path": "/api/v1/stream", "raw_path": b"/api/v1/stream",
             "query_string": b"", "headers": [(b"host", b"t"), (b"origin", ORIGIN.encode())], "http_version": "1.1",
             "scheme": "http", "server": ("t", 80), "client": ("c", 1), "root_path": ""}
    sent: list[dict] = []

    async def receive():
        await asyncio.sleep(3600)  # the client never leaves
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(stacked()(scope, receive, send))
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 200 and b"content-length" not in headers
    assert headers[b"access-control-allow-origin"] == ORIGIN.encode()
    assert [json.loads(m["body"])["page"] for m in sent[1:] if m.get("body")] == [1, 2, 3]


def test_a_preflight_is_answered_before_the_key_check_and_a_refusal_is_marked(configured):
    keyed = stacked()
    keyed.user_middleware = [m if m.cls is not api_keys.KeyCheck else
                             type(m)(api_keys.KeyCheck, keys=lambda: ("k" * 20,), answer=errors.refuse_key)
                             for m in keyed.user_middleware]
    r, chunks = fetch(keyed, "/api/v1/answer", Origin=ORIGIN)
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["x-ocr-request-id"] == json.loads(b"".join(chunks))["request_id"]  # a page's script may read it
    assert "X-OCR-Request-Id" in r.headers["access-control-expose-headers"]
    assert r.headers["www-authenticate"] == "Bearer" and r.headers["x-content-type-options"] == "nosniff"
    ok, chunks = fetch(keyed, "/api/v1/answer", **{"X-API-Key": "k" * 20, "Accept-Encoding": "identity"})
    assert ok.status_code == 200 and json.loads(b"".join(chunks)) == ANSWER

    async def ask() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=keyed), base_url="http://t") as c:
            return await c.options("/api/v1/answer", headers={"Origin": ORIGIN,
                                                              "Access-Control-Request-Method": "POST"})
    asked = asyncio.run(ask())  # a preflight carries no key
    assert asked.status_code == 204 and "X-API-Key" in asked.headers["access-control-allow-headers"]


def test_a_fault_after_the_answer_started_is_not_answered_a_second_time():
    """Half an answer is out: a second start message would break the connection's framing, so the fault goes up."""
    answered: list[BaseException] = []

    def answer(exc: BaseException):
        answered.append(exc)
        return JSONResponse({"error": "x"}, status_code=500)

    async def half(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        raise KeyError("a bug")

    async def early(scope, receive, send):
        raise KeyError("a bug")

    async def run(app) -> list[dict]:
        sent: list[dict] = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)
        await unhandled.Unhandled(app, answer=answer)({"type": "http", "method": "GET", "path": "/", "headers": []},
                                                      receive, send)
        return sent

    with pytest.raises(KeyError):
        asyncio.run(run(half))
    assert answered == []
    sent = asyncio.run(run(early))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"] and sent[0]["status"] == 500
    assert isinstance(answered[0], KeyError)
