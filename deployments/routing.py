"""How the ingress's handles pick a detector or recognizer replica: the one this handle has sent least to.

A page's parts (a tall strip's detector passes, a long page's crops) leave the ingress at the same moment, so
that the replicas share them. Serve's default router (power of two choices) ranks two random replicas by queue
lengths it caches for 10 s, or probes when those are stale; the parts' routing tasks do so at the same moment,
meet the same lengths, and often pick the same replica: all three parts of a strip went to one of two replicas
once in 8 sendings, an A4 page's four parts 3 + 1 in 8 of 8 (`benchmarks.routing`).

`SpreadRouter` counts what this handle has in flight on each replica, from the moment it hands a replica to a
request until the request is done, and gives each request the least loaded replica. A request another handle
sent counts through Serve's cached queue length while that is fresh. A replica that is full, or does not answer
a queue-length probe in time, is passed over, as with Serve's own router.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from ray.serve.config import RequestRouterConfig
from ray.serve.request_router import FIFOMixin, PendingRequest, ReplicaID, RequestRouter, RunningReplica

log = logging.getLogger(__name__)


class SpreadRouter(FIFOMixin, RequestRouter):
    """Each replica found goes to the oldest request waiting (`FIFOMixin`, as in Serve's own router).

    Not to the routing task's own request, matched by id: a page's parts all carry the id of the HTTP request they
    are parts of, so all but one would wait forever (the first version did).
    """

    # settings are class attributes, not module constants: Serve ships this class by value, and where it is
    # unpickled in the process that defined it (a driver's handle), cloudpickle gives its methods globals of their own
    assigned_ttl_s = 5.0  # a replica handed to a request then cancelled is never sent to: forgotten after this
    silent_s = 2.0  # a replica whose queue length did not come in time (its event loop busy) is passed over this long

    def initialize_state(self, **kwargs: object) -> None:
        self._assigned: list[tuple[ReplicaID, float]] = []  # handed to a request, not yet sent
        self._sent: dict[str, list[ReplicaID]] = {}  # accepted and not done, by the request they are parts of
        self._silent: dict[ReplicaID, float] = {}  # replica -> until when it is passed over
        self._refresh: asyncio.Future | None = None  # the probe of unknown queue lengths, shared by routing tasks

    def load(self, replica_id: ReplicaID) -> int:
        """Requests on ``replica_id`` as this handle knows them.

        Those it sent that are not done, or the cached queue length if larger (other handles' requests), plus those
        handed to it and not yet sent.
        """
        sent = sum(ids.count(replica_id) for ids in self._sent.values())
        cached = self._replica_queue_len_cache.get(replica_id) or 0
        return max(sent, cached) + sum(1 for r, _ in self._assigned if r == replica_id)

    async def fresh(self, candidates: list[RunningReplica]) -> list[RunningReplica]:
        """Those of ``candidates`` whose queue length is known, once the others were probed.

        One probe at a time, shared by the routing tasks that ask at once; a replica that does not answer it in time
        is passed over for `silent_s`.
        """
        now = time.monotonic()
        self._silent = {r: until for r, until in self._silent.items() if until > now}
        unknown = [r for r in candidates if self._replica_queue_len_cache.get(r.replica_id) is None
                   and r.replica_id not in self._silent]
        if unknown:
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.ensure_future(self._probe_queue_lens(unknown, 0))
            for replica, queue_len in await asyncio.shield(self._refresh):
                if queue_len is None:
                    self._silent[replica.replica_id] = time.monotonic() + self.silent_s
        return [r for r in candidates if self._replica_queue_len_cache.get(r.replica_id) is not None]

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        """The least loaded replica with room, alone; after each hand-over Serve asks again.

        Ranked on known queue lengths only. Routing tasks that ask at once wait for the same probe, then each ranks
        and hands out in one step, without waiting (Serve's cache lookup does not), so each sees the others' requests.
        Where no replica is known to have room, Serve probes them all and backs off, as with its own router.
        """
        now = time.monotonic()
        self._assigned = [(r, at) for r, at in self._assigned if now - at <= self.assigned_ttl_s]
        if pending_request is not None:
            pending_request.routing_context.should_backoff = True  # as Serve's router: back off once all are full
        try:
            known = await self.fresh(candidate_replicas)
            roomy = [r for r in known if self.load(r.replica_id) < r.max_ongoing_requests]
        except asyncio.CancelledError:
            raise
        except Exception:  # Serve only logs a router's error, and the request would wait forever
            log.exception("ranking replicas failed; trying them as Serve's router does")
            roomy = []
        if not roomy:
            return [candidate_replicas]
        return [[min(roomy, key=lambda r: (self.load(r.replica_id), random.random()))]]

    def _fulfill_next_pending_request(self, replica: RunningReplica, request_metadata: object = None) -> None:
        """The oldest request waiting gets ``replica``; it counts there from now, not only once it is sent."""
        waiting = any(not pr.future.done() for pr in self._pending_requests_to_fulfill)
        super()._fulfill_next_pending_request(replica, request_metadata)  # type: ignore[arg-type]
        if waiting:
            self._assigned.append((replica.replica_id, time.monotonic()))

    def on_send_request(self, replica_id: ReplicaID) -> None:
        super().on_send_request(replica_id)  # the cached queue length, one longer
        for k, (r, _) in enumerate(self._assigned):
            if r == replica_id:
                del self._assigned[k]
                break

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: object) -> None:
        self._sent.setdefault(pending_request.metadata.internal_request_id, []).append(replica_id)

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        ids = self._sent.get(internal_request_id, [])
        if replica_id in ids:  # also called for a request a full replica refused, which was never counted
            ids.remove(replica_id)
            if not ids:
                del self._sent[internal_request_id]


def spread() -> RequestRouterConfig:
    """The router config of the deployments whose parts are sent at once (named by path: `serve build` writes it)."""
    return RequestRouterConfig.model_validate({"request_router_class": f"{__name__}:{SpreadRouter.__name__}"})
