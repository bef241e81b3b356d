"""What the ingress's middleware stack costs a request, in this process, without Serve.

    python -m benchmarks.middlewares
    python -m benchmarks.middlewares --requests 5000

Routes of our own, bare and behind the ingress's middlewares and handlers in their order (`deployments.ingress`),
called as Serve's proxy calls an ingress replica: one ASGI call per request, the body in one message. Printed per
answer: microseconds per request (median of 5 rounds), how many messages the answer went in, and its
``Content-Length`` and ``Content-Encoding``. The difference between the two rows is what the middlewares cost;
an answer without its length went chunked.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from deployments import compression, ingress

#: (label, path, Accept-Encoding)
CASES = (("short JSON (15 B)", "/api/v1/short", "identity"),
         ("receipt-sized JSON (14 kB)", "/api/v1/receipt", "identity"),
         ("receipt-sized JSON, gzip", "/api/v1/receipt", "gzip"))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=2000, help="per round; 5 rounds per case")
    p.add_argument("--gzip-level", type=int, default=6)
    return p


def app(stacked: bool) -> FastAPI:
    api = FastAPI()
    if stacked:
        api.user_middleware = list(ingress.api.user_middleware)
        api.exception_handlers = dict(ingress.api.exception_handlers)
    short = {"status": "ok"}
    receipt = {"lines": [{"box": [8, 20 * n, 400, 20 * n + 18], "text": f"ITEM {n} QTY 2 RM 12.{n:02d}",
                          "confidence": 0.97} for n in range(200)]}

    @api.get("/api/v1/short")
    async def answer_short() -> JSONResponse:
        return JSONResponse(short)

    @api.get("/api/v1/receipt")
    async def answer_receipt() -> JSONResponse:
        return JSONResponse(receipt)

    return api


async def call(target: Callable[..., Any], path: str, accept: str) -> list[dict[str, Any]]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"ocr"), (b"accept-encoding", accept.encode())],
             "client": ("127.0.0.1", 50000), "server": ("ocr", 80)}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await target(scope, receive, send)
    return sent


async def measure(args: argparse.Namespace) -> None:
    compression.configure(args.gzip_level)
    print("| answer | bare app, us/request | behind the ingress's middlewares | messages | Content-Length | "
          "Content-Encoding |")
    print("|---|---|---|---|---|---|")
    bare, stacked = app(False), app(True)
    for label, path, accept in CASES:
        cells = []
        for target in (bare, stacked):
            for _ in range(200):  # warm-up: the middleware stack is built on the first call
                await call(target, path, accept)
            rounds = []
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(args.requests):
                    sent = await call(target, path, accept)
                rounds.append((time.perf_counter() - t0) / args.requests * 1e6)
            cells.append(f"{statistics.median(rounds):.0f}")
        headers = dict(sent[0]["headers"])
        length, encoding = headers.get(b"content-length", b"none (chunked)"), headers.get(b"content-encoding", b"-")
        print(f"| {label} | {cells[0]} | {cells[1]} | {len(sent)} | {length.decode()} | {encoding.decode()} |")


if __name__ == "__main__":
    asyncio.run(measure(get_args_parser().parse_args()))
