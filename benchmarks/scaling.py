"""How a running service scales under steady load: when Serve adds replicas, and what the clients get meanwhile.

    OCR_CONFIG=scaled.yaml RAY_AUTH_MODE=disabled serve run deployments.app:app &   # e.g. detector.autoscaling set
    RAY_AUTH_MODE=disabled python -m benchmarks.scaling --clients 4 --seconds 75

``--clients`` clients each post scenes_dev frames (``../shared/eval``, read through ``OCR_SHARED_DIR``) one after
another for ``--seconds``. Every half second the Serve application's replica states are read from the Ray cluster
the service runs on (``ray.init(address="auto")``); each change is printed as it happens, then answers per second
and the median latency per ``--window`` seconds, and the statuses seen. Nothing is asserted: see docs/deploy.md.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass

import httpx

from training.datasets import shared_dir


@dataclass(frozen=True)
class Answer:
    at_s: float  # since the load began, when the answer came
    latency_s: float
    status: int


def windows(answers: list[Answer], width_s: float, until_s: float) -> list[tuple[float, int, float | None]]:
    """Per window of ``width_s`` from 0 to ``until_s``: its start, the answers that came in it, their median latency."""
    out = []
    start = 0.0
    while start < until_s:
        inside = [a.latency_s for a in answers if start <= a.at_s < start + width_s]
        out.append((start, len(inside), statistics.median(inside) if inside else None))
        start += width_s
    return out


def replica_states(app: str) -> dict[str, dict[str, int]]:
    from ray import serve

    deployments = serve.status().applications[app].deployments
    return {name: {str(k): v for k, v in d.replica_states.items()} for name, d in deployments.items()}


def main(args: argparse.Namespace) -> None:
    import ray

    ray.init(address="auto", logging_level=logging.ERROR, log_to_driver=False)
    files = sorted((shared_dir() / "eval" / "scenes_dev" / "images").iterdir())[: args.frames]
    frames = [(f.name, f.read_bytes()) for f in files]
    answers: list[Answer] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def client(k: int) -> None:
        with httpx.Client(base_url=args.url, timeout=120) as c:
            i = k
            while not stop.is_set():
                name, data = frames[i % len(frames)]
                sent = time.monotonic()
                r = c.post("/api/v1/ocr", files={"image": (name, data)})
                answers.append(Answer(time.monotonic() - t0, time.monotonic() - sent, r.status_code))
                i += 1

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(args.clients)]
    for t in threads:
        t.start()
    last: dict[str, dict[str, int]] = {}
    while time.monotonic() - t0 < args.seconds:
        states = {d: s for d, s in replica_states(args.app).items() if d in args.deployments}
        if states != last:
            print(f"{time.monotonic() - t0:6.1f} s  " + "  ".join(f"{d} {s}" for d, s in sorted(states.items())),
                  flush=True)
            last = states
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    for start, n, median in windows(answers, args.window, args.seconds):
        pace = f"{n / args.window:.2f}/s, median {median:.2f} s" if median is not None else "none"
        print(f"{start:5.0f}-{start + args.window:.0f} s: {n} answers, {pace}")
    print("statuses", dict(Counter(a.status for a in answers)))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--app", default="default", help="the Serve application's name (serve run's: default)")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=75.0)
    p.add_argument("--window", type=float, default=15.0)
    p.add_argument("--frames", type=int, default=20, help="how many scenes_dev frames the clients take turns with")
    p.add_argument("--deployments", nargs="+", default=["Detector", "Recognizer"])
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())

