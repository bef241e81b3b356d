"""Each client's share of an ingress replica: at most ``ingress.max_requests_per_client`` requests in progress.

A replica serves ``max_ongoing_requests`` requests at once, and each holds its slot from its headers to its answer,
its body's arrival included. One client could take all of them: a batch job sending more at once than the replica
takes, or slow uploads opened again as each is refused 408, kept every other client waiting (the 408 rule frees a
slot after ``body_grace_s``, 20 s, and the same client took it back). Past its share a client is answered 429 at
once, before its body is read, with ``Retry-After``; the others keep the rest of the slots.

A client is its API key where it presents a valid one (keys are per caller, and may come from many addresses),
else its address: the peer's, or, behind ``ingress.trusted_proxies`` proxies that each append the address they saw
to ``X-Forwarded-For``, the one the farthest trusted proxy saw. Entries left of it are the client's own to write,
so they are never trusted. The count is per replica: with N ingress replicas a client may hold N shares.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from deployments.asgi import ASGIApp, Receive, Scope, Send
from deployments.body_limits import header_values, route_path

#: Never refused: a kubelet's probes all come from one address, and a refused probe restarts the replica.
EXEMPT = frozenset({"/healthz", "/readyz"})


@dataclass(frozen=True)
class _Settings:
    max_per_client: int = 32  # 0: no limit
    trusted_proxies: int = 0
    retry_after_s: int = 1


_settings = _Settings()


def configure(max_per_client: int, trusted_proxies: int = 0, retry_after_s: int = 1) -> None:
    """Set where the ingress replica starts and on `reconfigure`.

    Held here for the middleware, which runs outside the replica's instance, as `cross_origin.configure` explains.
    """
    global _settings
    _settings = _Settings(max_per_client, trusted_proxies, retry_after_s)


def address(scope: Scope, trusted_proxies: int) -> str:
    """The client's address: the peer's, or the one the farthest of ``trusted_proxies`` proxies saw."""
    peer = scope.get("client")
    seen = str(peer[0]) if peer else "unknown"
    if trusted_proxies <= 0:
        return seen
    chain = ",".join(header_values(scope, b"x-forwarded-for"))
    hops = [hop.strip() for hop in chain.split(",") if hop.strip()]
    # each trusted proxy appended one entry, the nearest last; fewer entries than proxies: the first is the client's
    return hops[-min(trusted_proxies, len(hops))] if hops else seen


def client_of(scope: Scope, valid_key: Callable[[Scope], str | None], trusted_proxies: int) -> str:
    """Whom a request counts against: ``key:<digest>`` for a valid API key, else ``ip:<address>``."""
    key = valid_key(scope)
    if key is not None:  # hashed: the table of counts holds no secret
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return "ip:" + address(scope, trusted_proxies)


def no_key(_: Scope) -> str | None:
    return None


class ClientShare:
    """ASGI middleware: counts each client's requests in progress and answers 429 past its share.

    ``answer(message, retry_after_s)`` builds the refusal; ``valid_key(scope)`` gives the API key a request presents
    when it is one of the service's (None otherwise, or when the service has none).
    """

    def __init__(self, app: ASGIApp, answer: Callable[[str, int], ASGIApp],
                 valid_key: Callable[[Scope], str | None] = no_key) -> None:
        self.app, self.answer, self.valid_key = app, answer, valid_key
        self.held: collections.Counter[str] = collections.Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        s = _settings
        if scope["type"] != "http" or s.max_per_client <= 0 or route_path(scope) in EXEMPT:
            await self.app(scope, receive, send)
            return
        client = client_of(scope, self.valid_key, s.trusted_proxies)
        held = self.held[client]
        if held >= s.max_per_client:
            message = (f"this client already has {held} request{'s' if held != 1 else ''} in progress on this "
                       f"replica, its share (ingress.max_requests_per_client: {s.max_per_client}); send the next "
                       "when one is answered")
            await self.answer(message, s.retry_after_s)(scope, receive, send)
            return
        self.held[client] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.held[client] -= 1
            if self.held[client] <= 0:
                del self.held[client]
