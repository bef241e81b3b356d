"""Request latency through the real Serve app, with storage off and on (issue: storage must cost < 10%).

    RAY_AUTH_MODE=disabled python -m benchmarks.latency --requests 40 \
        --database-url postgresql://postgres@127.0.0.1:5432/test --rabbitmq-url amqp://guest:guest@127.0.0.1:5672/

Starts a local Ray instance, deploys the app twice (storage off, then on) and prints p50/p90/mean latency and
throughput for sequential requests and for a concurrent burst, on the same rendered page.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import tempfile
import time

import httpx


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=40)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    p.add_argument("--rabbitmq-url", default=os.environ.get("RABBITMQ_URL"))
    p.add_argument("--port", type=int, default=8799)
    return p


def page() -> bytes:
    from training.synth import render_lines

    img, _ = render_lines(["Quarterly report 2026", "Revenue grew 14 percent", "Costs fell to 3.2 million",
                           "Next review on 12/01/2027"], size=28)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


async def measure(url: str, data: bytes, n: int, concurrency: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        async def one() -> float:
            t0 = time.perf_counter()
            r = await c.post("/api/v1/ocr", files={"image": ("p.jpg", data, "image/jpeg")})
            r.raise_for_status()
            return time.perf_counter() - t0

        for _ in range(3):  # warm-up
            await one()
        seq = [await one() for _ in range(n)]
        t0 = time.perf_counter()
        sem = asyncio.Semaphore(concurrency)

        async def limited() -> float:
            async with sem:
                return await one()

        burst = await asyncio.gather(*(limited() for _ in range(n)))
        wall = time.perf_counter() - t0
    q = statistics.quantiles(seq, n=10)
    return {"p50_ms": statistics.median(seq) * 1e3, "p90_ms": q[-1] * 1e3, "mean_ms": statistics.mean(seq) * 1e3,
            f"c{concurrency}_p50_ms": statistics.median(burst) * 1e3, f"c{concurrency}_rps": n / wall}


def main(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    from deployments.app import graph
    from serve_app.config import AppConfig

    data = page()
    ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    serve.start(http_options={"host": "127.0.0.1", "port": args.port}, logging_config={"enable_access_log": False})
    url = f"http://127.0.0.1:{args.port}"
    results = {}
    tmp = tempfile.mkdtemp(prefix="ocr-bench-")
    variants = {"storage off": {"storage": {}}}
    if args.database_url and args.rabbitmq_url:
        variants["storage on"] = {"storage": {"database_url": args.database_url, "rabbitmq_url": args.rabbitmq_url,
                                              "image_dir": f"{tmp}/images", "spool_dir": f"{tmp}/spool"}}
    saved = {k: os.environ.pop(k, None) for k in ("DATABASE_URL", "RABBITMQ_URL")}
    try:
        for name, overrides in variants.items():
            serve.run(graph(AppConfig.load(overrides=overrides)), name="ocr", route_prefix="/")
            results[name] = asyncio.run(measure(url, data, args.requests, args.concurrency))
            serve.delete("ocr")
    finally:
        os.environ.update({k: v for k, v in saved.items() if v})
        serve.shutdown()
        ray.shutdown()
    keys = list(next(iter(results.values())))
    print("| variant | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r[k]:.1f}" for k in keys) + " |")
    if len(results) == 2:
        off, on = results["storage off"]["p50_ms"], results["storage on"]["p50_ms"]
        print(f"storage on / off p50: {on / off:.3f}")
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
