"""What gzipping answers saves and costs: through a running service.

    serve run deployments.app:app &
    python -m benchmarks.compression                       # 20 docs_dev receipts, 20 scenes_dev frames
    python -m benchmarks.compression --images 10 --url http://127.0.0.1:8000

Each image (``../shared/eval``, measuring only) is read as JSON, hOCR, ALTO and TSV, plain; then the first ten
receipts as the pages of one PDF (``?pages=all``, JSON). Printed per set and format: the answer's median size plain
and the wire bytes at each gzip level against it, with the milliseconds zlib takes for it in this process (the
ingress does the same, in its event loop below 128 KiB); then the seconds per request with and without
``Accept-Encoding: gzip`` from the service as configured (``ingress.gzip_level``), each first half the time.
"""

from __future__ import annotations

import argparse
import statistics
import time
import zlib

import httpx

from benchmarks import over_http
from benchmarks.documents import documents
from training import datasets

FORMATS = ("json", "hocr", "alto", "tsv")
LEVELS = (1, 3, 6, 9)


def get_args_parser() -> argparse.ArgumentParser:
    return over_http(__doc__, 20)


def gzipped(body: bytes, level: int) -> tuple[int, float]:
    """Bytes and milliseconds (best of 3) of ``body`` gzipped at ``level``, as the ingress's middleware does it."""
    best, size = float("inf"), 0
    for _ in range(3):
        t0 = time.perf_counter()
        packer = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        size = len(packer.compress(body) + packer.flush())
        best = min(best, time.perf_counter() - t0)
    return size, best * 1000


def row(label: str, bodies: list[bytes]) -> str:
    cells = []
    for level in LEVELS:
        packed = [gzipped(b, level) for b in bodies]
        ratio = statistics.median(len(b) / size for b, (size, _) in zip(bodies, packed, strict=True))
        cells.append(f"{ratio:.1f}x, {statistics.median(ms for _, ms in packed):.2f} ms")
    return f"| {label} | {statistics.median(len(b) for b in bodies) / 1024:.1f} | " + " | ".join(cells) + " |"


def main(args: argparse.Namespace) -> None:
    plain = httpx.Client(base_url=args.url, timeout=300, headers={"Accept-Encoding": "identity"})
    packed = httpx.Client(base_url=args.url, timeout=300, headers={"Accept-Encoding": "gzip"})
    print("| set, format | median kB plain | " + " | ".join(f"gzip {lv}: smaller by, ms" for lv in LEVELS) + " |")
    print("|---|---|" + "---|" * len(LEVELS))
    timed: dict[str, list[float]] = {"plain": [], "gzip": []}
    for name in args.sets:
        folder = datasets.shared_dir() / "eval" / name
        rows = datasets.read_manifest(folder)[: args.images]
        bodies: dict[str, list[bytes]] = {fmt: [] for fmt in FORMATS}
        for i, item in enumerate(rows):
            data = (folder / item["image"]).read_bytes()
            for fmt in FORMATS:
                r = plain.post("/api/v1/ocr", params={"format": fmt}, files={"image": (item["image"], data)})
                r.raise_for_status()
                bodies[fmt].append(r.content)
            for way in ("plain", "gzip") if i % 2 else ("gzip", "plain"):
                client = plain if way == "plain" else packed
                t0 = time.perf_counter()
                client.post("/api/v1/ocr", files={"image": (item["image"], data)}).raise_for_status()
                timed[way].append(time.perf_counter() - t0)
        for fmt in FORMATS:
            print(row(f"{name}, {fmt}", bodies[fmt]))
    pdf = documents(10)["receipts.pdf"]
    r = plain.post("/api/v1/ocr", params={"pages": "all"}, files={"image": ("receipts.pdf", pdf)})
    r.raise_for_status()
    print(row("10 receipts as one PDF, json", [r.content]))
    medians = {way: statistics.median(seconds) for way, seconds in timed.items()}
    print(f"\nseconds per JSON request, median of {len(timed['plain'])}: plain {medians['plain']:.3f}, "
          f"gzip {medians['gzip']:.3f}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
