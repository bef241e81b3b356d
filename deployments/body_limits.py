"""Refuse a request body larger than its route ever takes, or one that comes too slowly to be a real upload.

Without this an upload of any size was received whole (Starlette spools a multipart body to disk, and a JSON body
is parsed in memory) and only then refused: 200 MB took 2.1 s of the ingress and as much temporary disk, a 100 MB
correction 1.6 s, all of it parsed in memory. A body that declares its ``Content-Length`` is judged on it before a
byte is read (`refusal`); one sent without it (chunked) is counted as it arrives and cut off at the limit
(`BodyGuard`).

A body also has to keep coming. Serve's proxy hands a request to an ingress replica as soon as its headers are in,
and the replica holds one of its ``max_ongoing_requests`` slots while the body streams in; 70 connections that sent
a byte every 2 s kept every other request of every client waiting for as long as they lasted. Now a body has
``ingress.body_grace_s`` plus a second per ``ingress.body_min_bytes_per_s`` bytes it has delivered to arrive whole
(the rule of Apache's mod_reqtimeout), and is answered 408 past that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from deployments.asgi import ASGIApp, Message, Receive, Scope, Send

#: Room for the multipart envelope around an upload of the largest size allowed: boundaries, part headers.
MULTIPART_SLACK = 64 * 1024
#: Every other route takes at most a correction: 10,000 characters, escaped as JSON.
OTHER_ROUTES = 256 * 1024
UPLOAD_ROUTE = "/api/v1/ocr"


@dataclass
class _Settings:
    max_upload_bytes: int = 10 * 1024 * 1024
    grace_s: float = 20.0
    min_bytes_per_s: float = 500.0


_settings = _Settings()


def configure(max_upload_bytes: int, grace_s: float = 20.0, min_bytes_per_s: float = 500.0) -> None:
    """Set where the ingress replica starts (held here for the middleware, as `cross_origin.configure` explains)."""
    global _settings
    _settings = _Settings(max_upload_bytes, grace_s, min_bytes_per_s)


def limit(path: str) -> int:
    """The most bytes of body a request to ``path`` (without the route prefix) may declare."""
    return _settings.max_upload_bytes + MULTIPART_SLACK if path == UPLOAD_ROUTE else OTHER_ROUTES


def _too_large(path: str, size: str) -> tuple[int, str, str]:
    if path == UPLOAD_ROUTE:
        return 413, "image_too_large", (f"upload is {size}; the limit is {_settings.max_upload_bytes} bytes "
                                        "(ingress.max_upload_bytes)")
    return 413, "request_too_large", f"request body is {size}; this route takes at most {limit(path)}"


def refusal(path: str, declared: str | None) -> tuple[int, str, str] | None:
    """``(status, code, message)`` when the declared ``Content-Length`` is past ``path``'s limit, else None."""
    if declared is None or not declared.strip().isdigit() or int(declared) <= limit(path):
        return None
    return _too_large(path, f"{int(declared)} bytes")


def deadline_s(received: int) -> float:
    """Seconds from the request's start by which its body must be whole, having delivered ``received`` bytes."""
    if _settings.min_bytes_per_s <= 0:
        return _settings.grace_s
    return _settings.grace_s + received / _settings.min_bytes_per_s


def too_slow(received: int, elapsed_s: float) -> tuple[int, str, str]:
    return 408, "body_too_slow", (
        f"the request body came too slowly: {received} bytes in {elapsed_s:.0f} s; it may take "
        f"{_settings.grace_s:g} s and one more per {_settings.min_bytes_per_s:g} bytes "
        "(ingress.body_grace_s, ingress.body_min_bytes_per_s)")


class _Refused(Exception):
    """Raised into the reader of a body at the byte that takes it past its route's limit, or when it stalls."""


def route_path(scope: Scope) -> str:
    """The request's path within the app, whatever route prefix it is served under."""
    return str(scope.get("path", "/")).removeprefix(str(scope.get("root_path", ""))) or "/"


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lower case, without its parameters ('' when there is none)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def header_values(scope: Scope, name: bytes) -> list[str]:
    """Every value of header ``name`` (lower case) in an ASGI scope, in order."""
    return [bytes(v).decode("latin-1") for k, v in scope.get("headers", ()) if bytes(k).lower() == name]


def _header(scope: Scope, name: bytes) -> str | None:
    values = header_values(scope, name)
    return values[0] if values else None


class BodyGuard:
    """ASGI middleware: refuses a body too large (413) or too slow (408), from its declared length or as it comes.

    A declared ``Content-Length`` past the limit is answered before a byte of the body is read. Otherwise the
    reader (Starlette's form or JSON parsing) gets `_Refused` at the byte past the limit, or when the body stalls,
    and stops; whatever the app then answers (FastAPI calls it a body it could not parse, 400) is replaced by the
    refusal that ``answer(path, status, code, message)`` builds.
    """

    def __init__(self, app: ASGIApp, answer: Callable[[str, int, str, str], ASGIApp]) -> None:
        self.app, self.answer = app, answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, loop = route_path(scope), asyncio.get_running_loop()
        declared = refusal(path, _header(scope, b"content-length"))
        if declared:  # refused before a byte of the body is read
            await self.answer(path, *declared)(scope, receive, send)
            return
        cap, start, received, whole = limit(path), loop.time(), 0, False
        refused: tuple[int, str, str] | None = None
        started = False

        async def counted() -> Message:
            nonlocal received, whole, refused
            if refused:  # a reader that asks again after the refusal learns the body ends here
                return {"type": "http.disconnect"}
            if whole:  # the body is in: what follows is a wait for the client to leave, as long as it takes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, start + deadline_s(received) - loop.time()))
            except TimeoutError:
                refused = too_slow(received, loop.time() - start)
                raise _Refused(refused[2]) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                whole = not message.get("more_body", False)
                if received > cap:
                    refused = _too_large(path, f"over {cap} bytes so far")
                    raise _Refused(refused[2])
            return message

        async def answering(message: Message) -> None:
            nonlocal started
            if refused and not started:
                return  # the app's answer to a body it could not finish reading
            started = True
            await send(message)

        try:
            await self.app(scope, counted, answering)
        except _Refused:
            if started:  # an answer already under way cannot be taken back
                raise
        if refused and not started:
            await self.answer(path, *refused)(scope, receive, send)
