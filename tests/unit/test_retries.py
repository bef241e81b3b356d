"""Model calls sent again when their replica is lost (`deployments.retries`), without Ray running."""

import asyncio

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError

from deployments import retries


def _flaky(failures: list[BaseException], answer: str = "lines"):
    calls = []

    async def call() -> str:
        calls.append(1)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return answer

    return call, calls


def test_a_call_whose_replica_died_is_sent_again_and_counted():
    call, calls = _flaky([ActorDiedError(), ActorUnavailableError("node gone", None)])
    heard = []

    async def run() -> tuple[str, dict[str, int]]:
        lost = retries.track()
        answer = await retries.call_with_retries(call, "Detector", retries=2, backoff_s=0.001,
                                                 on_lost=lambda d, e, last: heard.append((d, type(e).__name__, last)))
        return answer, lost

    answer, lost = asyncio.run(run())
    assert answer == "lines" and len(calls) == 3
    assert lost == {"Detector": 2}
    assert heard == [("Detector", "ActorDiedError", False), ("Detector", "ActorUnavailableError", False)]


def test_too_many_losses_end_in_replica_lost():
    call, calls = _flaky([ActorDiedError()] * 3)
    heard = []
    with pytest.raises(retries.ReplicaLost, match=r"Recognizer replica .* lost 2 times") as caught:
        asyncio.run(retries.call_with_retries(call, "Recognizer", retries=1, backoff_s=0.001,
                                              on_lost=lambda d, e, last: heard.append(last)))
    assert caught.value.deployment == "Recognizer" and len(calls) == 2 and heard == [False, True]


def test_a_failure_of_the_model_code_is_not_retried():
    call, calls = _flaky([ValueError("bad input")])
    with pytest.raises(ValueError, match="bad input"):
        asyncio.run(retries.call_with_retries(call, "Detector", retries=2, backoff_s=0.001))
    assert len(calls) == 1


def test_a_handover_outlives_the_cancellation_of_its_call_or_of_its_own_task():
    """Serve may cancel a handover just after its request's client has gone: it is made again, not lost."""
    async def run() -> tuple:
        calls, seen = [], []

        async def cancelled_once() -> str:  # the call itself is cancelled (the awaited response), once
            calls.append("call")
            if len(calls) == 1:
                raise asyncio.CancelledError
            return "spooled"

        first = await retries.call_with_retries(cancelled_once, "Sidecar", retries=2, backoff_s=0.001,
                                                on_lost=lambda d, e, g: seen.append((d, type(e).__name__, g)),
                                                outlive_cancellation=True)
        gate = asyncio.Event()

        async def waits() -> str:
            await gate.wait()
            return "spooled"

        task = asyncio.create_task(retries.call_with_retries(waits, "Sidecar", retries=2, outlive_cancellation=True))
        await asyncio.sleep(0.01)
        task.cancel()  # the task awaiting the call is cancelled, once
        await asyncio.sleep(0.01)
        gate.set()
        second = await task
        return first, len(calls), seen, second, task.cancelling()

    assert asyncio.run(run()) == ("spooled", 2, [("Sidecar", "CancelledError", False)], "spooled", 0)


def test_only_a_handover_outlives_cancellation_and_only_so_often():
    async def always_cancelled() -> None:
        raise asyncio.CancelledError

    for outlive, tries in ((False, 1), (True, 3)):
        calls: list[int] = []

        async def call(calls: list[int] = calls) -> None:
            calls.append(1)
            await always_cancelled()

        with pytest.raises(asyncio.CancelledError):
            asyncio.run(retries.call_with_retries(call, "Sidecar", retries=2, outlive_cancellation=outlive))
        assert len(calls) == tries
