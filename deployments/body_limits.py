"""Refuse a request whose declared body is larger than its route ever takes, before a byte of it is read.

Without this an upload of any size was received whole (Starlette spools a multipart body to disk, and a JSON body
is parsed in memory) and only then refused: 200 MB took 2.1 s of the ingress and as much temporary disk, a 100 MB
correction 1.6 s, all of it parsed in memory. A body sent without a ``Content-Length`` (chunked) is still read and
then refused by the route's own checks.
"""

from __future__ import annotations

#: Room for the multipart envelope around an upload of the largest size allowed: boundaries, part headers.
MULTIPART_SLACK = 64 * 1024
#: Every other route takes at most a correction: 10,000 characters, escaped as JSON.
OTHER_ROUTES = 256 * 1024
UPLOAD_ROUTE = "/api/v1/ocr"

_max_upload_bytes = 10 * 1024 * 1024


def configure(max_upload_bytes: int) -> None:
    """Set where the ingress replica starts (held here for the middleware, as `cross_origin.configure` explains)."""
    global _max_upload_bytes
    _max_upload_bytes = max_upload_bytes


def limit(path: str) -> int:
    """The most bytes of body a request to ``path`` (without the route prefix) may declare."""
    return _max_upload_bytes + MULTIPART_SLACK if path == UPLOAD_ROUTE else OTHER_ROUTES


def refusal(path: str, declared: str | None) -> tuple[str, str] | None:
    """``(code, message)`` when the declared ``Content-Length`` is past ``path``'s limit, else None."""
    if declared is None or not declared.strip().isdigit() or int(declared) <= limit(path):
        return None
    if path == UPLOAD_ROUTE:
        return "image_too_large", (f"upload is {int(declared)} bytes; the limit is {_max_upload_bytes} bytes "
                                   "(ingress.max_upload_bytes)")
    return "request_too_large", f"request body is {int(declared)} bytes; this route takes at most {limit(path)}"
