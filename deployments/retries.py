"""Calls from the ingress that survive the loss of the replica serving them.

Detection and recognition are pure functions of their input, and the sidecar spools a result that the archiver
stores once however often it arrives, so a call whose replica died (killed, out of memory, its node lost) can be
sent again: Serve routes it to another replica, or holds it until the controller has started a replacement.
Without this, every request in flight on a lost detector replica answered 500, and a result whose handover was
in a sidecar replica when it died would not have been stored.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ray.exceptions import RayActorError
from ray.serve.exceptions import ReplicaUnavailableError

T = TypeVar("T")

#: What a caller sees when the replica holding its call goes away: ``ActorDiedError`` and ``ActorUnavailableError``
#: are ``RayActorError``s. An exception raised by the model code itself arrives as a ``RayTaskError`` and is not
#: retried: the same input would fail again.
REPLICA_LOST = (RayActorError, ReplicaUnavailableError)

#: Replica losses per deployment within the current request, for its log line and span (`track`).
_lost: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar("replicas_lost", default=None)


class ReplicaLost(Exception):
    """A call lost its replica more times than allowed."""

    def __init__(self, deployment: str, attempts: int) -> None:
        super().__init__(f"the {deployment} replica serving this call was lost {attempts} times in a row")
        self.deployment = deployment


def track() -> dict[str, int]:
    """Start counting the current request's replica losses; the dict returned fills as they happen."""
    lost: dict[str, int] = {}
    _lost.set(lost)
    return lost


async def call_with_retries(call: Callable[[], Awaitable[T]], deployment: str, retries: int,
                            on_lost: Callable[[str, BaseException, bool], None] | None = None,
                            backoff_s: float = 0.1, outlive_cancellation: bool = False) -> T:
    """``await call()``, made again up to ``retries`` times while the replica answering it is lost.

    ``call`` must build a new request each time (a Serve response can be awaited once). ``on_lost(deployment,
    exception, giving_up)`` hears of every loss, for logs and metrics.

    ``outlive_cancellation``: for work that must not go with the request it was started under (an answer's handover
    to the sidecar). Serve at times cancels it just after the request's client has gone, whatever request context it
    runs under; such a cancellation, of the call or of the task awaiting it, counts as one more loss, and the call is
    made again.
    """
    for attempt in range(retries + 1):
        try:
            return await call()
        except asyncio.CancelledError as exc:
            if not outlive_cancellation or attempt == retries:
                raise
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                task.uncancel()  # this task was cancelled, not only the call: carry on all the same
            if on_lost is not None:
                on_lost(deployment, exc, False)
        except REPLICA_LOST as exc:
            lost = _lost.get()
            if lost is not None:
                lost[deployment] = lost.get(deployment, 0) + 1
            if on_lost is not None:
                on_lost(deployment, exc, attempt == retries)
            if attempt == retries:
                raise ReplicaLost(deployment, attempt + 1) from exc
            await asyncio.sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable")
