"""Cross-origin calls from browsers: off unless ``ingress.cors_origins`` names the pages that may call the API.

The service's own page is same-origin and needs none of this. A front end served from elsewhere does: its browser
first asks (a preflight ``OPTIONS``, which carries no API key, so it is answered before the key check) and then
reads an answer only if it names the page's origin. Keys travel in headers, not cookies, so credentials are never
allowed, and ``*`` may stand for any origin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response

from deployments.asgi import ASGIApp, Receive, Scope, Send, editing_headers

METHODS = "GET, POST, DELETE, OPTIONS"
#: What a caller may send: the key headers, the upload's type, a retry's idempotency key, and a trace context to join.
ALLOWED_HEADERS = "Authorization, X-API-Key, Content-Type, Idempotency-Key, traceparent, tracestate"
#: What the calling page's script may read besides the simple headers: when to try again, why a key is asked, and
#: under which ids an answer (``X-OCR-Request-Id``) and the pages of a document read in one request (``?pages=``) were
#: stored.
EXPOSED_HEADERS = "Retry-After, WWW-Authenticate, X-OCR-Request-Id, X-Page-Request-Ids"
MAX_AGE_S = 600  # browsers cache a preflight this long (Chromium caps it at 7200)


_origins: tuple[str, ...] = ()


def configure(origins: Sequence[str]) -> None:
    """Set where the ingress replica starts.

    Held here, in an imported module: Serve ships the ingress class to its replica by value, with its own copy of
    the globals of the module that defines it, which the middleware would never see.
    """
    global _origins
    _origins = tuple(origins)


def configured() -> tuple[str, ...]:
    return _origins


def allowed(origins: Sequence[str], origin: str) -> bool:
    return "*" in origins or origin in origins


def answer_headers(origins: Sequence[str], origin: str) -> dict[str, str]:
    """Headers that let the page at ``origin`` read an answer (``allowed`` first)."""
    allow = "*" if "*" in origins else origin
    # Timing-Allow-Origin: the page's script may read the answer's Server-Timing (Resource Timing API)
    headers = {"Access-Control-Allow-Origin": allow, "Access-Control-Expose-Headers": EXPOSED_HEADERS,
               "Timing-Allow-Origin": allow}
    if "*" not in origins:
        headers["Vary"] = "Origin"  # a cache must not hand this answer to a page of another origin
    return headers


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    return method == "OPTIONS" and "access-control-request-method" in headers


def preflight_headers(origins: Sequence[str], origin: str) -> dict[str, str]:
    return {**answer_headers(origins, origin), "Access-Control-Allow-Methods": METHODS,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS, "Access-Control-Max-Age": str(MAX_AGE_S)}


class CrossOrigin:
    """ASGI middleware: answers a listed page's preflight, and lets it read every answer, refusals included.

    Outside the key check (a preflight carries no key) and the client's share, whose refusals it must mark too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origins = _origins
        headers = Headers(scope=scope) if scope["type"] == "http" and origins else None
        origin = headers.get("origin") if headers is not None else None
        if headers is None or origin is None or not allowed(origins, origin):
            await self.app(scope, receive, send)
            return
        if is_preflight(scope["method"], headers):
            await Response(status_code=204, headers=preflight_headers(origins, origin))(scope, receive, send)
            return
        marks = answer_headers(origins, origin)

        def mark(answer: MutableHeaders) -> None:
            for name, value in marks.items():
                if name == "Vary":
                    answer.add_vary_header(value)
                else:
                    answer[name] = value

        await self.app(scope, receive, editing_headers(send, mark))
