"""A fault in our code outside the OCR route (which answers its own), answered as our JSON 500 inside the middlewares.

Starlette answers an exception nothing caught in its outermost layer, outside every middleware: a plain-text 500
without a request id, and without the cross-origin headers, so a page of a listed origin could not read it.
"""

from __future__ import annotations

from collections.abc import Callable

from deployments.asgi import ASGIApp, Message, Receive, Scope, Send


class Unhandled:
    """ASGI middleware: ``answer(exc)`` for an exception raised before the answer started; after, it goes on up."""

    def __init__(self, app: ASGIApp, answer: Callable[[BaseException], ASGIApp]) -> None:
        self.app, self.answer = app, answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if started:  # half an answer is out: nothing to replace it with
                raise
            await self.answer(exc)(scope, receive, send)
