"""`SpreadRouter` in Serve's own routing loop: the parts of one page, sent at once, go to every replica.

The replicas are stand-ins (`benchmarks.routing`) that answer queue-length probes after a delay (a real probe is
an actor call); the routing itself (routing tasks, probes, the queue-length cache, hand-overs) is Serve's, as in
the ingress's handles.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from typing import Any

import pytest
from ray.serve._private.request_router import PowerOfTwoChoicesRequestRouter

from benchmarks.routing import Clock, Replica, done, parts_at_once, request, router, send
from deployments.routing import SpreadRouter


async def two_replicas(stale: bool) -> tuple[Any, Replica, Replica, Clock]:
    """Our router over fresh replicas ``a`` and ``b`` once its first probes are in; ``stale``: 11 s later."""
    clock, a, b = Clock(), Replica("a"), Replica("b")
    r = router(SpreadRouter, [a, b], clock)
    await asyncio.sleep(0.05)
    if stale:
        clock.now += 11  # Serve keeps queue lengths 10 s
    return r, a, b, clock


@pytest.mark.parametrize("stale", [False, True])
def test_a_pages_parts_sent_at_once_go_to_every_replica_evenly(stale: bool) -> None:
    random.seed(0)
    for parts, replicas in [(3, 2), (2, 2), (6, 2), (6, 3), (4, 6)]:
        for _ in range(10):
            got = asyncio.run(parts_at_once(SpreadRouter, parts, replicas, stale))
            assert len(got) == min(parts, replicas), got
            assert max(got.values()) - min(got.values()) <= 1, got


def test_serves_own_router_on_a_stale_cache_may_send_all_parts_to_one_replica() -> None:
    """What `SpreadRouter` replaces, seen in the same loop: the fault is real, and the test above could fail."""
    random.seed(0)
    runs = [asyncio.run(parts_at_once(PowerOfTwoChoicesRequestRouter, 3, 2, stale=True)) for _ in range(20)]
    assert any(len(got) == 1 for got in runs), runs


@pytest.mark.parametrize("fault", ["full", "silent"])
def test_a_replica_that_is_full_or_does_not_answer_is_passed_over(fault: str) -> None:
    """One that answers no probe (its event loop blocked) must not hold requests while another is free."""
    async def go() -> Counter[str]:
        r, a, _, _ = await two_replicas(stale=True)
        if fault == "full":
            a.ongoing = a.max_ongoing_requests
        else:
            a.answer_s = 30.0
        page = uuid.uuid4().hex
        got = await asyncio.wait_for(asyncio.gather(*(send(r, request(page)) for _ in range(3))), 5)
        return Counter(g.replica_id.unique_id for g in got)

    assert asyncio.run(go()) == {"b": 3}


def test_a_replica_busy_with_this_handles_requests_is_ranked_last_until_they_are_done() -> None:
    async def go() -> None:
        r, a, b, _ = await two_replicas(stale=True)
        held = [(await send(r, pr), pr) for pr in [request(), request()]]
        assert {rep.replica_id.unique_id for rep, _ in held} == {"a", "b"}
        first = held[0][0]
        done(r, *held[1])  # the other replica is free again: it is ranked first
        ranked = await r.choose_replicas(r._replicas_list, request())
        assert [len(rank) for rank in ranked] == [1] and ranked[0][0] is not first
        done(r, *held[0])
        assert r.load(a.replica_id) == r.load(b.replica_id) == 0

    asyncio.run(go())


def test_another_handles_load_counts_while_its_queue_length_is_fresh() -> None:
    async def go() -> None:
        r, a, b, clock = await two_replicas(stale=False)
        r.on_new_queue_len_info(a.replica_id, 3)  # three requests from another ingress replica
        ranked = await r.choose_replicas(r._replicas_list, request())
        assert ranked[0][0] is b
        clock.now += 11  # stale: no longer known, so no longer counted
        assert r.load(a.replica_id) == 0

    asyncio.run(go())


def test_parts_of_one_request_are_counted_each_until_each_is_done() -> None:
    async def go() -> None:
        r, a, b, clock = await two_replicas(stale=True)
        page = uuid.uuid4().hex
        parts = [request(page) for _ in range(4)]
        sent = [await send(r, pr) for pr in parts]  # one after another: each goes to the less loaded replica
        assert Counter(s.replica_id.unique_id for s in sent) == {"a": 2, "b": 2}
        clock.now += 11  # the queue lengths it cached are stale: what it sent still counts
        assert r.load(a.replica_id) == r.load(b.replica_id) == 2
        done(r, sent[0], parts[0])  # one part of the page is done: one less on its replica
        assert r.load(sent[0].replica_id) == 1 and r.load(sent[1].replica_id) == 2
        r.on_request_completed(sent[0].replica_id, "refused")  # a refused request was never counted
        assert r.load(sent[0].replica_id) == 1
        ranked = await r.choose_replicas(r._replicas_list, request())  # a choice is not a hand-over: not counted
        assert ranked == [[sent[0]]] and r.load(sent[0].replica_id) == 1

    asyncio.run(go())


def test_a_replica_handed_to_a_request_that_is_never_sent_is_forgotten() -> None:
    async def go() -> None:
        r, *_ = await two_replicas(stale=False)
        got = await r._choose_replica_for_request(request())  # handed over; its caller then left before sending
        assert r.load(got.replica_id) == 1
        r.assigned_ttl_s = -1.0
        await r.choose_replicas(r._replicas_list, None)
        assert r.load(got.replica_id) == 0

    asyncio.run(go())
