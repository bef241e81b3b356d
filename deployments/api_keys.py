"""Optional API keys for the ``/api/`` routes: off unless ``OCR_API_KEYS`` is set where the ingress runs.

The keys are secrets, so they come from the replica's environment (a Kubernetes Secret on a cluster), never from
the config file that ``serve build`` and the RayService carry. The web page, the API docs and the health probes
stay open: the page asks for a key when the API answers 401, and probes carry none.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Mapping

from starlette.datastructures import Headers

from deployments.asgi import ASGIApp, Receive, Scope, Send
from deployments.body_limits import route_path

log = logging.getLogger("ray.serve")

ENV = "OCR_API_KEYS"
#: Shorter keys are accepted but logged: they can be guessed.
MIN_LENGTH = 16


def load(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The keys in ``OCR_API_KEYS`` (separated by commas or whitespace; several, so that one can be rotated)."""
    keys = tuple(k for k in environ.get(ENV, "").replace(",", " ").split() if k)
    if any(len(k) < MIN_LENGTH for k in keys):
        log.warning("%s holds a key shorter than %d characters: it can be guessed", ENV, MIN_LENGTH)
    return keys


def presented(headers: Mapping[str, str]) -> str | None:
    """The key a request carries: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


def allowed(keys: tuple[str, ...], key: str | None) -> bool:
    """Whether ``key`` is one of ``keys``, compared in constant time; everything is allowed when there are none."""
    if not keys:
        return True
    if key is None:
        return False
    given = key.encode()
    return any([hmac.compare_digest(given, k.encode()) for k in keys])  # a list: every key is compared


def guarded(path: str, root_path: str = "") -> bool:
    """Whether a request path needs a key: the API, not the page, its assets, the docs or the probes."""
    return path.removeprefix(root_path).startswith("/api/")


class KeyCheck:
    """ASGI middleware: ``answer()`` (the 401) for an ``/api/`` request without one of ``keys()``, before its body.

    ``keys`` is asked on each request, in the replica: the app, its middleware list included, is built where
    ``serve run`` runs and shipped to the replica by value, so keys read there would be the driver's, not those of
    the replica's environment. No keys: every request passes.
    """

    def __init__(self, app: ASGIApp, keys: Callable[[], tuple[str, ...]], answer: Callable[[], ASGIApp]) -> None:
        self.app, self.keys, self.answer = app, keys, answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        keys = self.keys()
        if keys and scope["type"] == "http" and guarded(route_path(scope)) and \
                not allowed(keys, presented(Headers(scope=scope))):
            await self.answer()(scope, receive, send)
            return
        await self.app(scope, receive, send)
