"""The ASGI shapes our middlewares share, and a wrapper of ``send`` that edits an answer's headers as it starts.

The ingress's middlewares are plain ASGI, not Starlette's ``@app.middleware("http")``. That decorator
(``BaseHTTPMiddleware``) runs the app in a task of its own and streams every answer through a memory channel, so
each of the four we had cost about 0.1 ms a request, and the gzip layer outside them saw every body as a stream:
a compressed answer went chunked, without ``Content-Length``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import MutableHeaders

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def editing_headers(send: Send, edit: Callable[[MutableHeaders], None]) -> Send:
    """``send``, with ``edit`` applied to the headers of the answer's start message (in place) before it goes."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            edit(MutableHeaders(scope=message))
        await send(message)

    return sending
