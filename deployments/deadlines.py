"""A request's deadline, which grows once its image turns out to be a tall strip that the detector reads in parts.

``request_timeout_s`` is sized for a page: a hung or crash-looping replica must not hold a client forever. A whole
web page's screenshot (1280 x 20000) is read in three parts (`detection.windows`) and holds some 800 lines; on a
2-core AVX2 CPU it takes over a minute, and cutting it off at 60 s would answer a page we can read with a 504.
So a page read in ``n`` parts has ``n`` times the deadline, from the time it started, up to a cap (the ingress
gives ``document_timeout_s``, which the cluster's proxy already waits for).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass
class Deadline:
    """The seconds a piece of work has, from ``start`` (the event loop's clock), and how far they may grow."""

    timeout: asyncio.Timeout
    start: float
    base: float
    cap: float
    seconds: float
    parts: int = 1

    def allow(self, parts: int) -> None:
        """Give the work ``parts`` times its base deadline (never less than it has, never more than the cap)."""
        seconds = min(self.base * parts, max(self.cap, self.base))
        if seconds > self.seconds:
            self.seconds, self.parts = seconds, parts
            self.timeout.reschedule(self.start + seconds)


_CURRENT: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("deadline", default=None)


@contextlib.asynccontextmanager
async def within(seconds: float, cap: float) -> AsyncIterator[Deadline]:
    """``asyncio.timeout(seconds)`` for the block, which `allow_parts` inside it may lengthen up to ``cap``.

    Raises `TimeoutError` when it passes; the yielded `Deadline` says how long it had by then.
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(seconds) as timeout:
        deadline = Deadline(timeout, loop.time(), seconds, cap, seconds)
        token = _CURRENT.set(deadline)
        try:
            yield deadline
        finally:
            _CURRENT.reset(token)


def allow_parts(parts: int) -> None:
    """The innermost deadline around the caller (if any) allows ``parts`` times its base: see the module."""
    if (deadline := _CURRENT.get()) is not None:
        deadline.allow(parts)
