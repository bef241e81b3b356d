"""Refuse a request body larger than its route ever takes, before it is read, or as soon as it passes the limit.

Without this an upload of any size was received whole (Starlette spools a multipart body to disk, and a JSON body
is parsed in memory) and only then refused: 200 MB took 2.1 s of the ingress and as much temporary disk, a 100 MB
correction 1.6 s, all of it parsed in memory. A body that declares its ``Content-Length`` is judged on it before a
byte is read (`refusal`); one sent without it (chunked) is counted as it arrives and cut off at the limit
(`StreamedLimit`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

#: Room for the multipart envelope around an upload of the largest size allowed: boundaries, part headers.
MULTIPART_SLACK = 64 * 1024
#: Every other route takes at most a correction: 10,000 characters, escaped as JSON.
OTHER_ROUTES = 256 * 1024
UPLOAD_ROUTE = "/api/v1/ocr"

_max_upload_bytes = 10 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def configure(max_upload_bytes: int) -> None:
    """Set where the ingress replica starts (held here for the middleware, as `cross_origin.configure` explains)."""
    global _max_upload_bytes
    _max_upload_bytes = max_upload_bytes


def limit(path: str) -> int:
    """The most bytes of body a request to ``path`` (without the route prefix) may declare."""
    return _max_upload_bytes + MULTIPART_SLACK if path == UPLOAD_ROUTE else OTHER_ROUTES


def _too_large(path: str, size: str) -> tuple[str, str]:
    if path == UPLOAD_ROUTE:
        return "image_too_large", f"upload is {size}; the limit is {_max_upload_bytes} bytes (ingress.max_upload_bytes)"
    return "request_too_large", f"request body is {size}; this route takes at most {limit(path)}"


def refusal(path: str, declared: str | None) -> tuple[str, str] | None:
    """``(code, message)`` when the declared ``Content-Length`` is past ``path``'s limit, else None."""
    if declared is None or not declared.strip().isdigit() or int(declared) <= limit(path):
        return None
    return _too_large(path, f"{int(declared)} bytes")


class BodyTooLarge(Exception):
    """Raised into the reader of a streamed body at the byte that takes it past its route's limit."""


def route_path(scope: Scope) -> str:
    """The request's path within the app, whatever route prefix it is served under."""
    return str(scope.get("path", "/")).removeprefix(str(scope.get("root_path", ""))) or "/"


class StreamedLimit:
    """ASGI middleware: counts a body as it arrives and answers 413 once it passes its route's limit.

    The reader (Starlette's form or JSON parsing) gets `BodyTooLarge` and stops; whatever the app then answers
    (FastAPI calls it a body it could not parse, 400) is replaced by the 413 that ``answer(path, code, message)``
    builds, so that a chunked upload is cut off where a declared one would have been refused.
    """

    def __init__(self, app: ASGIApp, answer: Callable[[str, str, str], ASGIApp]) -> None:
        self.app, self.answer = app, answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        cap, received, tripped, started = limit(path), 0, False, False

        async def counted() -> Message:
            nonlocal received, tripped
            if tripped:  # a reader that asks again after the refusal learns the body ends here
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    tripped = True
                    raise BodyTooLarge(f"more than {cap} bytes")
            return message

        async def answering(message: Message) -> None:
            nonlocal started
            if tripped and not started:
                return  # the app's answer to a body it could not finish reading
            started = True
            await send(message)

        try:
            await self.app(scope, counted, answering)
        except BodyTooLarge:
            if started:  # an answer already under way cannot be taken back
                raise
        if tripped and not started:
            await self.answer(path, *_too_large(path, f"over {cap} bytes so far"))(scope, receive, send)
