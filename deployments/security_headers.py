"""Headers that tell browsers what our answers may do, so that an uploaded or recognized text never runs as code.

Every answer says its type is final (``nosniff``) and sends no referrer. The web page may load only its own files,
draw images it made itself (``blob:``, ``data:``) and call only its own origin; no page may frame it. An hOCR answer
is HTML made of recognized text: it may load and run nothing. JSON and ALTO (XML, which a browser renders and
could run script in) answers likewise. Swagger UI (``/docs``) needs
inline script and styles, so it gets those, from its own origin only. Stored images and the page's assets get
``nosniff`` alone: a stored PDF must still open in the browser's viewer.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders

from deployments import body_limits
from deployments.asgi import ASGIApp, Receive, Scope, Send, editing_headers

COMMON = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
INERT_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox"


def for_answer(path: str, content_type: str | None) -> dict[str, str]:
    """The headers for an answer to ``path`` (without the route prefix) of ``content_type``."""
    kind = body_limits.media_type(content_type)
    if path == "/":
        return {**COMMON, "Content-Security-Policy": PAGE_CSP}
    if path == "/docs":
        return {**COMMON, "Content-Security-Policy": DOCS_CSP}
    if kind in ("text/html", "application/json", "application/xml"):
        return {**COMMON, "Content-Security-Policy": INERT_CSP}
    return dict(COMMON)


class SecurityHeaders:
    """ASGI middleware, outside the others: every answer gets its headers, refusals too; a route's own are kept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = body_limits.route_path(scope)

        def add(answer: MutableHeaders) -> None:
            for name, value in for_answer(path, answer.get("content-type")).items():
                answer.setdefault(name, value)

        await self.app(scope, receive, editing_headers(send, add))
