"""How a page's parts are shared by the recognizer replicas: our router (`deployments.routing`) against Serve's own.

    RAY_AUTH_MODE=disabled python -m benchmarks.routing                       # 2 replicas, about 4 minutes
    RAY_AUTH_MODE=disabled python -m benchmarks.routing --replicas 3 --sendings 4 --gap 0
    python -m benchmarks.routing --in-process                               # up to 6 stand-in replicas, 30 s

Starts a Ray instance of its own and deploys the app (storage off) with ``--replicas`` recognizer replicas and
``--crops-per-part`` crops a part, once with each router. An A4 page of 8 pt text (`dense_pages.render`) is sent
``--sendings`` times, ``--gap`` seconds apart: 11 s lets Serve's cached queue lengths (10 s) go stale between
sendings, as between a user's pages; 0 sends them back to back. Each replica's record of the batches it read says
how many of each sending's parts (and crops) it read. Printed per router: sendings whose parts all went to one
replica, the parts of the busiest replica (parts are balanced by compute, so the page waits for it), and the
answer's recognize time. On one 2-core machine the
replicas share the cores, so the time says little; where each replica has a machine of its own, the page's
recognition takes as long as its busiest replica.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from typing import Any

import httpx
from ray.serve._private.common import DeploymentHandleSource, DeploymentID, RequestMetadata
from ray.serve.handle import DeploymentHandle
from ray.serve.request_router import PendingRequest, ReplicaID

from benchmarks.dense_pages import render
from serve_app.config import AppConfig

APP = "ocr"


# In process: Serve's own routing loop (routing tasks, probes, the queue-length cache, hand-overs) with stand-in
# replicas, so that 6 replicas can be measured where 2 cores hold 2. The unit tests drive the router with these.

class Replica:
    """What the router asks of a replica: its id, its limit and its queue length, probed."""

    answer_s = 0.005

    def __init__(self, name: str) -> None:
        self.replica_id = ReplicaID(unique_id=name, deployment_id=DeploymentID(name="Recognizer", app_name="ocr"))
        self.max_ongoing_requests = 8
        self.ongoing = 0
        self.node_id, self.availability_zone = "node", None  # what Serve's own router asks too
        self.multiplexed_model_ids: set[str] = set()

    async def get_queue_len(self, *, deadline_s: float) -> int:
        await asyncio.sleep(self.answer_s)
        return self.ongoing


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def router(cls: type, replicas: list[Replica], clock: Clock) -> Any:  # a RequestRouter, given stand-ins
    r = cls(deployment_id=DeploymentID(name="Recognizer", app_name="ocr"),
            handle_source=DeploymentHandleSource.REPLICA, use_replica_queue_len_cache=True, get_curr_time_s=clock)
    # stand-ins answer in 5 ms; Serve's 0.1 s deadline would call one silent whenever a busy test machine stalls
    r.queue_len_response_deadline_s = 1.0
    r.initialize_state()
    r.update_replicas(replicas)
    return r


def request(internal_id: str | None = None) -> PendingRequest:
    """A call from the ingress; the parts of one page share its HTTP request's ``internal_id``, as in Serve."""
    return PendingRequest(args=[], kwargs={}, metadata=RequestMetadata(
        request_id="r", internal_request_id=internal_id or uuid.uuid4().hex))


async def send(r: Any, pr: PendingRequest) -> Replica:
    """What Serve's handle does with a request: route it, send it, and hear the replica accept it."""
    replica = await r._choose_replica_for_request(pr)
    replica.ongoing += 1
    r.on_send_request(replica.replica_id)
    r.on_new_queue_len_info(replica.replica_id, replica.ongoing)
    r.on_request_routed(pr, replica.replica_id, None)
    return replica


def done(r: Any, replica: Replica, pr: PendingRequest) -> None:
    replica.ongoing -= 1
    r.on_request_completed(replica.replica_id, pr.metadata.internal_request_id)
    r.decrement_queue_len_cache(replica.replica_id)


async def parts_at_once(cls: type, parts: int, replicas: int, stale: bool) -> Counter[str]:
    """One page's ``parts`` sent at once to ``replicas`` fresh replicas: how many each got."""
    clock, reps = Clock(), [Replica(f"r{k}") for k in range(replicas)]
    r = router(cls, reps, clock)
    await asyncio.sleep(0.05)  # the first probes of the new replicas fill the cache
    if stale:
        clock.now += 11  # Serve keeps queue lengths 10 s
    page = uuid.uuid4().hex
    got = await asyncio.gather(*(send(r, request(page)) for _ in range(parts)))
    return Counter(g.replica_id.unique_id for g in got)


def in_process(trials: int) -> None:
    from ray.serve._private.request_router import PowerOfTwoChoicesRequestRouter

    from deployments.routing import SpreadRouter

    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    random.seed(1)
    print(f"In process, stand-in replicas, {trials} pages each: pages whose parts all went to one replica; the "
          "busiest replica's parts, mean")
    print("| parts | replicas | queue lengths | Serve's router | ours |")
    print("|---|---|---|---|---|")
    for parts, replicas in [(3, 2), (6, 2), (6, 3), (6, 6), (24, 6)]:
        for stale in (False, True):
            cells = []
            for cls in (PowerOfTwoChoicesRequestRouter, SpreadRouter):
                runs = [asyncio.run(parts_at_once(cls, parts, replicas, stale)) for _ in range(trials)]
                cells.append(f"{sum(len(g) == 1 for g in runs)}, {statistics.mean(max(g.values()) for g in runs):.2f}")
            print(f"| {parts} | {replicas} | {'stale' if stale else 'fresh'} | {cells[0]} | {cells[1]} |")




def replica_parts(handle: DeploymentHandle, replicas: int) -> dict[str, tuple[int, int]]:
    """Each recognizer replica's parts and crops read so far, asked until every replica has answered.

    Parts that reach a replica together are read in one batch: `stats` records each part (``alone``, one entry a
    call) and each batch's crops.
    """
    seen: dict[str, tuple[int, int]] = {}
    for _ in range(200):
        stats = handle.stats.remote().result()
        seen[stats["replica"]] = (len(stats["alone"]), sum(stats["batch_sizes"]))
        if len(seen) == replicas:
            break
    return seen


def run(router: str, args: argparse.Namespace, page: bytes, url: str) -> dict[str, float]:
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    from deployments import app, routing

    spread = routing.spread
    if router == "serve":
        routing.spread = RequestRouterConfig  # type: ignore[assignment]  # Serve's default router
    try:
        cfg = AppConfig.load(overrides={"recognizer": {
            "autoscaling": {"min_replicas": args.replicas, "max_replicas": args.replicas},
            "crops_per_part": args.crops_per_part}})
        serve.run(app.graph(cfg), name=APP, route_prefix="/")
    finally:
        routing.spread = spread
    handle = serve.get_deployment_handle("Recognizer", app_name=APP)
    with httpx.Client(base_url=url, timeout=300) as client:
        client.post("/api/v1/ocr", files={"image": ("page.png", page, "image/png")}).raise_for_status()  # warm
        busiest, alone, seconds = [], 0, []
        for k in range(args.sendings):
            time.sleep(args.gap if k else 0)
            before = replica_parts(handle, args.replicas)
            answer = client.post("/api/v1/ocr", files={"image": ("page.png", page, "image/png")})
            answer.raise_for_status()
            seconds.append(answer.json()["timings"]["recognize_ms"] / 1000)
            now = replica_parts(handle, args.replicas)
            got = sorted(((p - before.get(r, (0, 0))[0], c - before.get(r, (0, 0))[1]) for r, (p, c) in now.items()),
                         reverse=True)
            busiest.append(got[0][0])
            alone += sum(1 for p, _ in got if p) == 1
            print(f"  {router}: sending {k + 1}: parts (crops) per replica "
                  f"{', '.join(f'{p} ({c})' for p, c in got)}, recognize {seconds[-1]:.2f} s", flush=True)
    serve.delete(APP)
    return {"alone": alone, "busiest": statistics.mean(busiest), "recognize_s": statistics.median(seconds)}


def main(args: argparse.Namespace) -> None:
    import ray
    from ray import serve

    if args.in_process:
        in_process(args.trials)
        return

    page = render("a4-300-8", 0)[0]
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    serve.start(http_options={"host": "127.0.0.1", "port": args.port}, logging_config={"enable_access_log": False})
    rows = {router: run(router, args, page, f"http://127.0.0.1:{args.port}") for router in args.routers}
    serve.shutdown()
    ray.shutdown()
    print(f"\n{args.replicas} recognizer replicas, {args.crops_per_part} crops a part, {args.sendings} sendings "
          f"{args.gap:g} s apart")
    print("| router | sendings read by one replica alone | busiest replica's parts, mean | recognize s, median |")
    print("|---|---|---|---|")
    for router, row in rows.items():
        print(f"| {router} | {row['alone']:.0f} of {args.sendings} | {row['busiest']:.2f} | {row['recognize_s']:.2f} |")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--crops-per-part", type=int, default=8)
    p.add_argument("--sendings", type=int, default=8)
    p.add_argument("--gap", type=float, default=11.0, help="seconds between sendings")
    p.add_argument("--routers", nargs="+", default=["serve", "spread"], choices=["serve", "spread"])
    p.add_argument("--port", type=int, default=8123)
    p.add_argument("--in-process", action="store_true", help="Serve's routing loop with stand-in replicas instead")
    p.add_argument("--trials", type=int, default=40, help="pages per row, --in-process")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())
