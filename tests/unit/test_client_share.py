"""A client's share of an ingress replica (`deployments.client_share`), driven through its ASGI interface."""

import asyncio
import json

import pytest
from starlette.responses import JSONResponse

from deployments import client_share
from deployments.client_share import ClientShare, address, client_of


def scope(path: str = "/api/v1/ocr", peer: str = "10.0.0.5", headers: dict[str, str] | None = None) -> dict:
    return {"type": "http", "method": "POST", "path": path, "root_path": "", "client": (peer, 40000),
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}


def forwarded(chain: str) -> dict:
    return scope(headers={"X-Forwarded-For": chain})


@pytest.mark.parametrize("s,trusted,expected", [
    (scope(), 0, "10.0.0.5"),
    (forwarded("203.0.113.7"), 0, "10.0.0.5"),  # no proxy trusted: the header is the client's own to write
    (forwarded("203.0.113.7"), 1, "203.0.113.7"),
    (forwarded("1.2.3.4, 203.0.113.7"), 1, "203.0.113.7"),  # what the client wrote itself, left of it, is not used
    (forwarded("1.2.3.4, 203.0.113.7, 10.1.1.1"), 2, "203.0.113.7"),  # a load balancer, then nginx
    (forwarded("203.0.113.7"), 2, "203.0.113.7"),  # fewer entries than proxies: the first is the client's
    (scope(), 1, "10.0.0.5"),  # no header at all: the peer
])
def test_the_address_a_request_counts_against(s, trusted, expected):
    assert address(s, trusted) == expected


def test_a_valid_key_counts_against_the_key_whatever_the_address_and_is_not_kept_in_clear():
    secret = "k" * 24
    by_key = client_of(scope(peer="10.0.0.5"), lambda _: secret, 0)
    assert by_key == client_of(scope(peer="10.9.9.9"), lambda _: secret, 0)
    assert by_key.startswith("key:") and secret not in by_key
    assert client_of(scope(peer="10.0.0.5"), lambda _: None, 0) == "ip:10.0.0.5"


class Held:
    """An app that holds each request until released, and counts the requests it was given."""

    def __init__(self) -> None:
        self.release, self.entered = asyncio.Event(), 0

    async def __call__(self, s, receive, send) -> None:
        self.entered += 1
        await self.release.wait()
        if s["path"] == "/boom":
            raise RuntimeError("a fault in the app")
        await JSONResponse({"ok": True})(s, receive, send)


def refuse(message: str, retry_after_s: int) -> JSONResponse:
    return JSONResponse({"error": {"code": "too_many_requests", "message": message}}, 429,
                        {"Retry-After": str(retry_after_s)})


async def call(app, s: dict) -> tuple[int, dict, dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(s, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, json.loads(body)


@pytest.fixture
def share_of_two():
    client_share.configure(2, 0, 3)
    yield
    client_share.configure(32)


def test_past_its_share_a_client_is_refused_at_once_and_the_others_are_not(share_of_two):
    async def run() -> None:
        held = Held()
        app = ClientShare(held, refuse)
        first = [asyncio.create_task(call(app, scope())) for _ in range(2)]
        await asyncio.sleep(0.01)
        status, headers, body = await call(app, scope())  # a third from the same address, while two are held
        assert status == 429 and headers["retry-after"] == "3", (status, headers)
        assert "2 requests in progress" in body["error"]["message"] and "max_requests_per_client" in \
            body["error"]["message"]
        assert held.entered == 2  # the refused one never reached the app: its body was not read
        other = asyncio.create_task(call(app, scope(peer="10.0.0.6")))  # another client still gets in
        probe = asyncio.create_task(call(app, scope(path="/healthz")))  # and so do the probes
        await asyncio.sleep(0.01)
        assert held.entered == 4
        held.release.set()
        assert [(await t)[0] for t in (*first, other, probe)] == [200] * 4
        assert app.held == {}  # every count given back
        assert (await call(app, scope()))[0] == 200  # and the client has its share again

    asyncio.run(run())


def test_a_request_that_fails_gives_its_place_back(share_of_two):
    async def run() -> None:
        held = Held()
        held.release.set()
        app = ClientShare(held, refuse)
        for _ in range(3):
            with pytest.raises(RuntimeError):
                await call(app, scope(path="/boom"))
        assert app.held == {}
        assert (await call(app, scope()))[0] == 200

    asyncio.run(run())


def test_no_limit_when_the_share_is_zero():
    client_share.configure(0)
    try:
        async def run() -> int:
            held = Held()
            app = ClientShare(held, refuse)
            tasks = [asyncio.create_task(call(app, scope())) for _ in range(50)]
            await asyncio.sleep(0.01)
            entered = held.entered
            held.release.set()
            await asyncio.gather(*tasks)
            return entered

        assert asyncio.run(run()) == 50
    finally:
        client_share.configure(32)
