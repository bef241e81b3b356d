"""What losing a replica costs clients, measured through the real Serve app: one replica or two.

    RAY_AUTH_MODE=disabled python -m benchmarks.faults                       # ingress and detector, 1 and 2 each
    RAY_AUTH_MODE=disabled python -m benchmarks.faults --target Ingress --replicas 2 --requests 16

For each case a fresh local Ray instance serves the app (storage off), a burst of concurrent page requests (720p
frames) is sent, and one replica of the target deployment is killed while they are in it. The table says how many
were answered 200, how many failed and how (Serve's proxy answers a lost ingress's requests with a plain-text 500;
a lost model replica's calls are sent again, `deployments/retries.py`), how long the slowest took, and how long a
new request waited right after the kill. The tests prove that nothing is lost where it must not be; this prints
what it costs in time, for `docs/operations.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import tempfile
import time
from typing import Any

import httpx

from benchmarks.latency import page


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", nargs="+", default=["Ingress", "Detector"], choices=["Ingress", "Detector"])
    p.add_argument("--replicas", nargs="+", type=int, default=[1, 2])
    p.add_argument("--requests", type=int, default=8)
    p.add_argument("--kill-after", type=float, default=0.6, help="seconds into the burst")
    p.add_argument("--port", type=int, default=8798)
    p.add_argument("--client", action="store_true",
                   help="send the burst through serve_app.client, which sends failed requests again")
    return p


def frame() -> bytes:
    """The benchmark page pasted into a white 1280 x 720 frame: long enough in the detector to be caught there."""
    from PIL import Image

    text = Image.open(io.BytesIO(page()))
    img = Image.new("RGB", (1280, 720), (255, 255, 255))
    img.paste(text, (80, 200))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


async def burst_with_kill(url: str, data: bytes, target: str, n: int, kill_after: float,
                          retrying: bool = False) -> dict[str, float]:
    import ray

    from serve_app.client import OCRClient, OCRError

    async with httpx.AsyncClient(base_url=url, timeout=180) as c, OCRClient(url, timeout_s=180) as retrier:
        tries: list[int] = []

        async def one() -> tuple[int, bool, float]:
            t0 = time.perf_counter()
            try:
                if retrying:
                    tries.append((await retrier.ocr(data, "f.jpg")).attempts)
                    return 200, False, time.perf_counter() - t0
                r = await c.post("/api/v1/ocr", files={"image": ("f.jpg", data, "image/jpeg")})
                plain = not r.headers.get("content-type", "").startswith("application/json")
                return r.status_code, plain, time.perf_counter() - t0
            except OCRError as exc:
                return exc.status, exc.code == "http_error", time.perf_counter() - t0
            except httpx.HTTPError:
                return 0, True, time.perf_counter() - t0

        for _ in range(2):  # warm-up
            await one()
        sent = [asyncio.create_task(one()) for _ in range(n)]
        await asyncio.sleep(kill_after)
        victim = next(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if f"#{target}#" in a["name"])
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        t_kill = time.perf_counter()
        after = await one()  # a new request right after the kill
        after_s = time.perf_counter() - t_kill
        results = await asyncio.gather(*sent)
    return {"ok": sum(s == 200 for s, _, _ in results), "plain_500": sum(s == 500 and p for s, p, _ in results),
            "other_failed": sum(s != 200 and not (s == 500 and p) for s, p, _ in results),
            "slowest_s": max(t for _, _, t in results), "next_request_s": after_s, "next_status": after[0],
            "sent_again": sum(t - 1 for t in tries)}


def run_case(target: str, replicas: int, args: argparse.Namespace, data: bytes) -> dict[str, float]:
    import ray
    from ray import serve

    from deployments.app import graph
    from serve_app.config import AppConfig

    key = "ingress" if target == "Ingress" else "detector"
    overrides: dict[str, dict[str, Any]] = {"storage": {"mode": "off"}, key: {"num_replicas": replicas}}
    if target == "Detector" and replicas > 1:
        overrides["detector"]["threads"] = 1  # two replicas share the 2 cores
    # logical CPUs as in the tests: two detector replicas ask for a CPU each beside the recognizer's
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port}, logging_config={"enable_access_log": False})
        serve.run(graph(AppConfig.load(overrides=overrides)), name="ocr", route_prefix="/")
        return asyncio.run(burst_with_kill(f"http://127.0.0.1:{args.port}", data, target, args.requests,
                                           args.kill_after, args.client))
    finally:
        serve.shutdown()
        ray.shutdown()


def main(args: argparse.Namespace) -> list[tuple[str, int, dict[str, float]]]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    data = frame()
    rows = []
    for target in args.target:
        for replicas in args.replicas:
            rows.append((target, replicas, run_case(target, replicas, args, data)))
            print(rows[-1], flush=True)
    print(f"\n{args.requests} concurrent 720p page requests, one replica of the target killed "
          f"{args.kill_after:g} s into the burst (storage off"
          f"{'; sent through serve_app.client, which sends failures again' if args.client else ''}):\n")
    print("| killed | replicas | answered 200 | plain-text 500 | other failures | slowest s | a new request right "
          "after the kill | requests sent again |")
    print("|---|---|---|---|---|---|---|---|")
    for target, replicas, m in rows:
        print(f"| {target} | {replicas} | {m['ok']} | {m['plain_500']} | {m['other_failed']} | {m['slowest_s']:.1f} "
              f"| {m['next_status']} in {m['next_request_s']:.1f} s | {m['sent_again']} |")
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
