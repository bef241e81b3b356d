"""Which bodies are refused before they are read, or cut off while they come (`deployments/body_limits.py`); on the
real service, over a raw socket: tests/serve/test_api.py."""

import asyncio

import httpx
import pytest
from fastapi import FastAPI, File, UploadFile
from fastapi.responses import JSONResponse

from deployments import body_limits


@pytest.fixture(autouse=True)
def _restored():
    before = body_limits.limit(body_limits.UPLOAD_ROUTE) - body_limits.MULTIPART_SLACK
    yield
    body_limits.configure(before)


def test_an_upload_may_declare_the_largest_image_and_its_envelope_and_no_more():
    body_limits.configure(1_000_000)
    most = 1_000_000 + body_limits.MULTIPART_SLACK
    assert body_limits.refusal("/api/v1/ocr", str(most)) is None
    status, code, message = body_limits.refusal("/api/v1/ocr", str(most + 1))
    assert status == 413 and code == "image_too_large" and "1000000 bytes" in message
    assert body_limits.refusal("/api/v1/ocr", None) is None  # chunked: counted as it comes (`StreamedLimit`)
    assert body_limits.refusal("/api/v1/ocr", "ten") is None  # not ours to judge: the HTTP server answers that


def test_every_other_route_takes_a_correction_at_most():
    body_limits.configure(1_000_000)
    path = "/api/v1/images/0b3fb535-2f8d-43c0-a4b9-a340e96e50cf/corrections"
    assert body_limits.refusal(path, str(body_limits.OTHER_ROUTES)) is None
    status, code, _ = body_limits.refusal(path, str(body_limits.OTHER_ROUTES + 1))
    assert status == 413 and code == "request_too_large"
    assert body_limits.OTHER_ROUTES >= 6 * 10_000 + 1024  # 10,000 characters, each escaped as \\uXXXX in JSON


def _app(reads: list[int]) -> FastAPI:
    """An upload route and a JSON route behind `StreamedLimit`; ``reads`` gets the size of every upload read whole."""
    app = FastAPI()

    @app.post("/api/v1/ocr")
    async def upload(image: UploadFile = File(...)) -> dict[str, int]:
        reads.append(len(await image.read()))
        return {"bytes": reads[-1]}

    @app.post("/api/v1/images/{image_id}/corrections")
    async def correct(value: dict) -> dict[str, int]:
        return {"chars": len(str(value))}

    app.add_middleware(body_limits.BodyGuard, answer=lambda path, status, code, message: JSONResponse(
        {"error": {"code": code, "message": message}, "path": path}, status_code=status))
    return app


def _multipart(size: int, sent: list[int], chunk: int = 64 * 1024):
    """A multipart upload of ``size`` bytes sent in chunks, without a length; ``sent`` counts what left."""
    async def body():
        for part in (b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
                     b"Content-Type: image/png\r\n\r\n",
                     *(b"\x89" * min(chunk, size - i) for i in range(0, size, chunk)), b"\r\n--x--\r\n"):
            sent.append(len(part))
            yield part
    return body()


def _post(app: FastAPI, path: str, content, kind: str) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.post(path, content=content, headers={"Content-Type": kind})
    return asyncio.run(go())


def test_a_chunked_upload_is_cut_off_once_it_passes_the_limit_and_not_read_on():
    body_limits.configure(1_000_000)
    reads, sent = [], []
    r = _post(_app(reads), "/api/v1/ocr", _multipart(8_000_000, sent), "multipart/form-data; boundary=x")
    assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large", r.text
    assert "1000000 bytes (ingress.max_upload_bytes)" in r.json()["error"]["message"]
    assert reads == []  # the route never saw it
    limit = 1_000_000 + body_limits.MULTIPART_SLACK
    assert limit < sum(sent) <= limit + 64 * 1024 + 200  # read one chunk past the limit, not the 8 MB


def test_a_chunked_upload_within_the_limit_reads_whole():
    body_limits.configure(1_000_000)
    reads, sent = [], []
    r = _post(_app(reads), "/api/v1/ocr", _multipart(999_000, sent), "multipart/form-data; boundary=x")
    assert r.status_code == 200 and r.json() == {"bytes": 999_000} and reads == [999_000]


def test_a_chunked_json_body_past_its_route_limit_is_cut_off():
    sent = []

    async def body():
        yield b'{"value": "'
        for _ in range(100):
            sent.append(1)
            yield b"a" * 10_000
        yield b'"}'
    path = "/api/v1/images/0b3fb535-2f8d-43c0-a4b9-a340e96e50cf/corrections"
    r = _post(_app([]), path, body(), "application/json")
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert r.json()["path"] == path and len(sent) < 100


def _trickled(parts: list[bytes], pause_s: float, sent: list[int]):
    async def body():
        for part in parts:
            sent.append(len(part))
            yield part
            await asyncio.sleep(pause_s)
    return body()


def test_a_body_that_comes_too_slowly_is_refused_408_and_one_at_the_pace_is_read():
    body_limits.configure(1_000_000, grace_s=0.5, min_bytes_per_s=2000)
    head = (b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")
    reads, sent = [], []
    slow = [head, *[b"\x89" * 10] * 40, b"\r\n--x--\r\n"]  # 10 bytes every 0.1 s: far under 2000/s
    r = _post(_app(reads), "/api/v1/ocr", _trickled(slow, 0.1, sent), "multipart/form-data; boundary=x")
    assert r.status_code == 408 and r.json()["error"]["code"] == "body_too_slow", r.text
    assert "ingress.body_grace_s" in r.json()["error"]["message"] and reads == []
    assert len(sent) < len(slow)  # not read to its end
    # past the grace but delivering: 5,000 bytes every 0.1 s keeps ahead of 2,000 a second
    steady = [head, *[b"\x89" * 5000] * 12, b"\r\n--x--\r\n"]
    r = _post(_app(reads), "/api/v1/ocr", _trickled(steady, 0.1, []), "multipart/form-data; boundary=x")
    assert r.status_code == 200 and reads == [60_000], r.text


def test_the_deadline_grows_with_what_the_body_has_delivered():
    body_limits.configure(1_000_000, grace_s=20, min_bytes_per_s=500)
    assert body_limits.deadline_s(0) == 20 and body_limits.deadline_s(1_000_000) == 2020
    body_limits.configure(1_000_000, grace_s=20, min_bytes_per_s=0)  # no pace asked: the grace alone
    assert body_limits.deadline_s(1_000_000) == 20
