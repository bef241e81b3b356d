"""Answers gzipped for clients that accept it (``Accept-Encoding: gzip``): browsers, curl ``--compressed``, httpx.

Our answers are text made of boxes, words and confidences, which gzip makes 3 to 5 times smaller (a receipt's JSON:
17 kB to 4; `benchmarks.compression`), and a document's answer runs to megabytes. Served with ``serve run`` there
is no proxy in front to compress them. What is compressed already (images, PDFs, whose streams are Flate) or opaque
goes as it is. A streamed document (NDJSON) is flushed line by line, so each page still arrives as it is read. A
compressed answer is another representation, so its ``ETag`` is weakened, as nginx does (RFC 9110 8.8.1);
`conditional` compares tags weakly.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Not worth a gzip header and a second buffer below this; most errors and small answers stay plain.
MIN_BYTES = 1024
#: Compressed already (images, PDF streams) or bytes we only pass on.
EXCLUDED = (*DEFAULT_EXCLUDED_CONTENT_TYPES, "image/*", "application/pdf", "application/octet-stream")

_level = 0


def configure(level: int) -> None:
    """Set where the ingress replica starts (held here for the middleware, as `cross_origin` holds its origins)."""
    global _level
    _level = level


def configured() -> int:
    return _level


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` lets us gzip: ``gzip`` (or ``*``) with a weight above 0 (RFC 9110 12.5.3).

    Starlette's own test is ``"gzip" in header``, which would gzip for a client that wrote ``gzip;q=0`` to refuse it.
    """
    weights: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if coding.strip():
            weights[coding.strip()] = weight
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


def weak(tag: str) -> str:
    return tag if tag.startswith("W/") else f"W/{tag}"


class Compression:
    """Starlette's gzip middleware at the configured level (0: off); what it compresses gets a weak ``ETag``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        level = _level
        if scope["type"] != "http" or level == 0 or not accepts_gzip(Headers(scope=scope).get("accept-encoding", "")):
            await self.app(scope, receive, send)
            return

        async def send_weakened(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=message["headers"])
                if "content-encoding" in headers and "etag" in headers:
                    headers["ETag"] = weak(headers["etag"])
            await send(message)

        gzip = GZipMiddleware(self.app, minimum_size=MIN_BYTES, compresslevel=level, exclude_content_types=EXCLUDED)
        await gzip(scope, receive, send_weakened)
