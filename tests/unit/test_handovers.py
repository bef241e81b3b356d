"""Handovers to the sidecar (`deployments.handovers`): bounded by upload bytes, drained at shutdown; no Ray."""

import asyncio

from deployments.handovers import Handovers


def test_past_the_budget_an_answer_is_refused_until_earlier_handovers_finish():
    async def run() -> list:
        handovers, gate, done = Handovers(budget_bytes=1000), asyncio.Event(), []

        def hand_over(name: str):
            async def go() -> None:
                await gate.wait()  # the sidecar hangs until the gate opens
                done.append(name)
            return go

        seen = [handovers.start(bytes(600), hand_over("a")), handovers.start(bytes(600), hand_over("b")),
                handovers.start(bytes(400), hand_over("c")), handovers.pending_bytes]
        gate.set()
        await asyncio.sleep(0)
        await asyncio.gather(*handovers.tasks)
        seen += [handovers.pending_bytes, len(handovers.tasks), handovers.start(bytes(1000), hand_over("d"))]
        await asyncio.gather(*handovers.tasks)
        return seen + [done]

    assert asyncio.run(run()) == [True, False, True, 1000, 0, 0, True, ["a", "c", "d"]]


def test_a_failed_handover_releases_its_bytes():
    async def run() -> tuple[int, int]:
        handovers = Handovers(budget_bytes=100)

        async def fails() -> None:
            raise RuntimeError("the sidecar failed")

        assert handovers.start(bytes(100), fails)
        await asyncio.gather(*handovers.tasks, return_exceptions=True)
        return handovers.pending_bytes, len(handovers.tasks)

    assert asyncio.run(run()) == (0, 0)


def test_drain_waits_for_handovers_in_progress_and_counts_the_late_ones():
    async def run() -> tuple[int, list, int, list]:
        handovers, done = Handovers(budget_bytes=10**6), []

        def after(delay: float, name: str):
            async def go() -> None:
                await asyncio.sleep(delay)
                done.append(name)
            return go

        handovers.start(bytes(10), after(0.05, "quick"))
        handovers.start(bytes(10), after(0.1, "slower"))
        late = await handovers.drain(timeout_s=5)
        first = list(done)
        handovers.start(bytes(10), after(10, "stuck"))
        late_again = await handovers.drain(timeout_s=0.05)
        return late, first, late_again, list(done)

    assert asyncio.run(run()) == (0, ["quick", "slower"], 1, ["quick", "slower"])


def test_a_handover_runs_under_a_request_id_of_its_own_that_the_request_cancellation_does_not_reach():
    """Serve cancels the calls made under a request (by its internal id) when the request is cancelled."""
    import contextvars

    from ray.serve import context as serve_context

    from deployments.ingress import _outliving_the_request

    request = serve_context._RequestContext(request_id="r-1", _internal_request_id="parent",
                                            cancel_on_parent_request_cancel=True, route="/api/v1/ocr")

    def under_request() -> contextvars.Context:
        serve_context._serve_request_context.set(request)
        return _outliving_the_request()

    detached = contextvars.copy_context().run(under_request).get(serve_context._serve_request_context)
    assert detached._internal_request_id not in ("", "parent") and not detached.cancel_on_parent_request_cancel
    assert (detached.request_id, detached.route) == ("r-1", "/api/v1/ocr")  # logs still name the request
    assert request.cancel_on_parent_request_cancel  # the request's own context is untouched
