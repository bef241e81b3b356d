"""Answers on their way from the ingress to the sidecar: off the request path, bounded, drained at shutdown.

Plain asyncio, no Ray: the ingress gives it the call that hands one answer over (`Ingress._hand_over`), so the
budget and the drain are tested without a cluster (`tests/unit/test_handovers.py`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("ray.serve")


class Handovers:
    """Background handovers and the upload bytes they hold until the sidecar has them.

    While the sidecar restarts or hangs those bytes add up; past ``budget_bytes`` an answer is not handed over
    (`start` says so), so the replica never grows until it is killed for memory with every request in it.
    """

    def __init__(self, budget_bytes: float) -> None:
        self.budget_bytes = budget_bytes
        self.tasks: set[asyncio.Task[None]] = set()
        self.pending_bytes = 0

    def start(self, upload: bytes, hand_over: Callable[[], Coroutine[Any, Any, None]],
              context: contextvars.Context | None = None) -> bool:
        """Run ``hand_over()`` in the background, holding ``upload`` until it ends; False past the budget.

        A document is one handover: its pages share the upload. ``context``: the context variables it runs with
        (default: a copy of the caller's).
        """
        if self.pending_bytes + len(upload) > self.budget_bytes:
            return False
        self.pending_bytes += len(upload)
        task = asyncio.get_running_loop().create_task(hand_over(), context=context)
        self.tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self.tasks.discard(finished)
            self.pending_bytes -= len(upload)

        task.add_done_callback(done)
        return True

    async def drain(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for the handovers in progress; returns how many did not finish."""
        pending = set(self.tasks)
        if not pending:
            return 0
        log.info("handing %d answers to the sidecar before shutting down", len(pending))
        _, late = await asyncio.wait(pending, timeout=timeout_s)
        if late:
            log.error("%d answers were not handed to the sidecar within %g s of shutting down: they are lost",
                      len(late), timeout_s)
        return len(late)
