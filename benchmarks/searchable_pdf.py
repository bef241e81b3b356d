"""What ``?format=pdf`` costs and whether a viewer copies what was read: through a running service.

    serve run deployments.app:app &
    python -m benchmarks.searchable_pdf                          # 40 docs_dev receipts, 40 scenes_dev frames
    python -m benchmarks.searchable_pdf --sets docs_dev --images 10 --url http://127.0.0.1:8000

Each image (``../shared/eval``, measuring only) is sent as it is, as JSON and as PDF in turn (each first for half of
them, after two requests to warm the service). Printed per set:
request seconds for each (medians), the PDF's size against the upload's, and how many PDFs PDFium (Chrome's
viewer) copies the answer's words from exactly, as a bag and in the answer's order.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import httpx
import pypdfium2 as pdfium

from benchmarks import over_http
from training import datasets


def get_args_parser() -> argparse.ArgumentParser:
    return over_http(__doc__, 40)


def main(args: argparse.Namespace) -> None:
    client = httpx.Client(base_url=args.url, timeout=120)
    print("| set | images | JSON s | PDF s | PDF / upload bytes | same words | same order |")
    print("|---|---|---|---|---|---|---|")
    for name in args.sets:
        folder = datasets.shared_dir() / "eval" / name
        rows = datasets.read_manifest(folder)[: args.images]
        seconds: dict[str, list[float]] = {"json": [], "pdf": []}
        ratio, bag, order = [], 0, 0
        for fmt in ("json", "pdf"):  # warm: the first requests of a replica pay for its first batches
            client.post("/api/v1/ocr", params={"format": fmt}, files={"image": ("w", (folder / rows[0]["image"])
                                                                                   .read_bytes())})
        for i, row in enumerate(rows):
            data = (folder / row["image"]).read_bytes()
            answers = {}
            for fmt in ("json", "pdf") if i % 2 else ("pdf", "json"):  # each first half the time
                t0 = time.perf_counter()
                r = client.post("/api/v1/ocr", params={"format": fmt}, files={"image": (row["image"], data)})
                seconds[fmt].append(time.perf_counter() - t0)
                r.raise_for_status()
                answers[fmt] = r
            read = answers["json"].json()["text"].split()
            copied = pdfium.PdfDocument(answers["pdf"].content)[0].get_textpage().get_text_range().split()
            bag += collections.Counter(copied) == collections.Counter(read)
            order += copied == read
            ratio.append(len(answers["pdf"].content) / len(data))
        print(f"| {name} | {len(rows)} | {statistics.median(seconds['json']):.3f} | "
              f"{statistics.median(seconds['pdf']):.3f} | {statistics.median(ratio):.2f} (max {max(ratio):.2f}) | "
              f"{bag} | {order} |")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
