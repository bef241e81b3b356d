"""Request latency through the real Serve app: storage off and on, tracing off and on.

    RAY_AUTH_MODE=disabled python -m benchmarks.latency --requests 40 \
        --database-url postgresql://postgres@127.0.0.1:5432/test --rabbitmq-url amqp://guest:guest@127.0.0.1:5672/
    RAY_AUTH_MODE=disabled python -m benchmarks.latency --layout word --requests 200 --concurrency 8

Starts a fresh local Ray instance per variant (tracing is read from the environment at ``ray.init``), deploys the
app and prints p50/p90/mean latency and throughput for sequential requests and a concurrent burst on the same
rendered page (``--layout word``: one rendered word crop, posted with ``layout=word``). Variants: storage off,
storage on (needs both URLs), storage on + tracing (spans exported to a local file, sampling 1.0: the worst case).
While the burst runs, a health check every 20 ms measures how long the ingress keeps others waiting
(``healthz_*``).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from serve_app.ocr.predictor import PRECISIONS


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=40)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    p.add_argument("--rabbitmq-url", default=os.environ.get("RABBITMQ_URL"))
    p.add_argument("--port", type=int, default=8799)
    p.add_argument("--layout", default="page", choices=["page", "word"], help="a page, or one word crop")
    p.add_argument("--image", default=None, help="post this image file instead of the rendered one (a 720p frame, "
                   "a receipt); read as --layout says")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="the detector's and recognizer's precision (default: the config's)")
    return p


def page(layout: str = "page") -> bytes:
    from training.synth import render_lines

    img, truth = render_lines(["Quarterly report 2026", "Revenue grew 14 percent", "Costs fell to 3.2 million",
                               "Next review on 12/01/2027"], size=28)
    if layout == "word":
        x0, y0, x1, y1 = truth[1].words[0][1]  # "Revenue"
        img = img.crop((int(x0) - 5, int(y0) - 4, int(x1) + 5, int(y1) + 4))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


async def measure(url: str, data: bytes, n: int, concurrency: int, layout: str = "page") -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        async def one() -> float:
            t0 = time.perf_counter()
            r = await c.post("/api/v1/ocr", params={"layout": layout}, files={"image": ("upload", data)})
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

        probes: list[float] = []
        done = asyncio.Event()

        async def probe() -> None:  # how long a health check waits while the burst runs: a blocked event loop shows
            while not done.is_set():
                p0 = time.perf_counter()
                (await c.get("/healthz")).raise_for_status()
                probes.append(time.perf_counter() - p0)
                await asyncio.sleep(0.02)

        prober = asyncio.create_task(probe())
        burst = await asyncio.gather(*(limited() for _ in range(n)))
        wall = time.perf_counter() - t0
        done.set()
        await prober
    q = statistics.quantiles(seq, n=10)
    return {"p50_ms": statistics.median(seq) * 1e3, "p90_ms": q[-1] * 1e3, "mean_ms": statistics.mean(seq) * 1e3,
            f"c{concurrency}_p50_ms": statistics.median(burst) * 1e3, f"c{concurrency}_rps": n / wall,
            "healthz_p50_ms": statistics.median(probes) * 1e3,
            "healthz_p90_ms": statistics.quantiles(probes, n=10)[-1] * 1e3, "healthz_max_ms": max(probes) * 1e3}


def run_variant(overrides: dict, env: dict[str, str], args: argparse.Namespace, data: bytes) -> dict[str, float]:
    import ray
    from ray import serve

    from deployments.app import graph
    from serve_app.config import AppConfig

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port}, logging_config={"enable_access_log": False})
        serve.run(graph(AppConfig.load(overrides=overrides)), name="ocr", route_prefix="/")
        return asyncio.run(measure(f"http://127.0.0.1:{args.port}", data, args.requests, args.concurrency,
                                   args.layout))
    finally:
        serve.shutdown()
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from serve_app.config import TelemetrySettings, precision_overrides

    data = Path(args.image).read_bytes() if args.image else page(args.layout)
    tmp = tempfile.mkdtemp(prefix="ocr-bench-")
    models = precision_overrides(args.precision)
    variants: dict[str, tuple[dict, dict[str, str]]] = {"storage off": ({"storage": {"mode": "off"}, **models}, {})}
    if args.database_url and args.rabbitmq_url:
        on = {"storage": {"database_url": args.database_url, "rabbitmq_url": args.rabbitmq_url,
                          "image_dir": f"{tmp}/images", "spool_dir": f"{tmp}/spool"}, **models}
        variants["storage on"] = (on, {})
        tracing = TelemetrySettings(exporter="file").environment("bench")
        variants["storage on + tracing"] = (on, {**tracing, "OCR_TRACE_FILE": f"{tmp}/spans.jsonl"})
    results = {name: run_variant(o, e, args, data) for name, (o, e) in variants.items()}
    keys = list(next(iter(results.values())))
    print("| variant | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r[k]:.1f}" for k in keys) + " |")
    if len(results) == 3:
        p50_off, p50_on, p50_traced = (results[k]["p50_ms"] for k in ("storage off", "storage on",
                                                                       "storage on + tracing"))
        print(f"p50 ratio storage on / off: {p50_on / p50_off:.3f}; "
              f"tracing on / off (storage on): {p50_traced / p50_on:.3f}")
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
