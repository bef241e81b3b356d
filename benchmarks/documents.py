"""What reading a whole document costs, three ways: through a running service.

    serve run deployments.app:app &
    python -m benchmarks.documents                       # 10 docs_dev receipts as the pages of one PDF, and a TIFF
    python -m benchmarks.documents --pages 20 --rounds 3 --url http://127.0.0.1:8000

The receipts (``../shared/eval/docs_dev``, measuring only) become one PDF (each page the receipt's JPEG, at 200
dpi) and one multi-page TIFF. Each is read (after a warm-up request) as one ``?pages=all`` request, through the
shipped client (one ``?pages=`` request too, with its retries), a request per page 4 at once (page 1, then the rest;
the client's way past the ``ingress.max_pages`` of a service that does not say it, and its only way before), and
page by page, one request after another; then as one ``?pages=all&format=pdf``, and as one ``?pages=all&format=ndjson``
(streamed, each page as soon as it is read). Printed per file: the seconds each way took (median of the rounds), per
page, until the first page's text was in hand (streamed or a page at a time: before the last; else with it), and
whether every way read every page alike.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
from PIL import Image

from serve_app.client import OCRClient
from training import datasets


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--pages", type=int, default=10, help="the first N receipts of docs_dev, one per page")
    p.add_argument("--rounds", type=int, default=2, help="each way this many times; the median is printed")
    return p


def documents(pages: int) -> dict[str, bytes]:
    """The receipts as one PDF and as one TIFF (grey, LZW: as a scanner writes it)."""
    folder = datasets.shared_dir() / "eval" / "docs_dev"
    images = [Image.open(folder / row["image"]).convert("RGB") for row in datasets.read_manifest(folder)[:pages]]
    pdf, tiff = io.BytesIO(), io.BytesIO()
    images[0].save(pdf, "PDF", save_all=True, append_images=images[1:], resolution=200, quality=90)
    grey = [im.convert("L") for im in images]
    grey[0].save(tiff, "TIFF", save_all=True, append_images=grey[1:], compression="tiff_lzw", dpi=(200, 200))
    return {"receipts.pdf": pdf.getvalue(), "receipts.tif": tiff.getvalue()}


#: Each way reads the pages' texts, and the seconds until the first page's text was in hand (None: with the rest).
Read = tuple[list[str], float | None]


async def one_request(url: str, name: str, data: bytes) -> Read:
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        r = await http.post("/api/v1/ocr", params={"pages": "all"}, files={"image": (name, data)})
        r.raise_for_status()
        return [p["text"] for p in r.json()["pages"]], None


async def streamed(url: str, name: str, data: bytes) -> Read:
    texts: list[str] = []
    t0, first = time.perf_counter(), None
    async with httpx.AsyncClient(base_url=url, timeout=600) as http, http.stream(
            "POST", "/api/v1/ocr", params={"pages": "all", "format": "ndjson"}, files={"image": (name, data)}) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            item = json.loads(line)
            if "page" in item:
                texts.append(item["page"]["text"])
                first = first or time.perf_counter() - t0
            elif "error" in item:
                raise RuntimeError(f"the stream ended in an error: {item}")
    return texts, first


async def client_pages(url: str, name: str, data: bytes) -> Read:
    async with OCRClient(url) as ocr:
        return [a.body["text"] for a in await ocr.ocr_pages(data, name)], None


async def pages_at_once(url: str, name: str, data: bytes) -> Read:
    async with OCRClient(url) as ocr:
        return [a.body["text"] for a in await ocr._page_by_page(data, name, [], "0", None)], None


async def page_by_page(url: str, name: str, data: bytes) -> Read:
    texts: list[str] = []
    t0, first = time.perf_counter(), None
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        held = 1
        while len(texts) < held:
            r = await http.post("/api/v1/ocr", params={"page": len(texts) + 1}, files={"image": (name, data)})
            r.raise_for_status()
            held = r.json()["image"]["pages"]
            texts.append(r.json()["text"])
            first = first or time.perf_counter() - t0
    return texts, first


async def as_pdf(url: str, name: str, data: bytes) -> Read:
    import pypdfium2 as pdfium

    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        r = await http.post("/api/v1/ocr", params={"pages": "all", "format": "pdf"}, files={"image": (name, data)})
        r.raise_for_status()
    pdf = pdfium.PdfDocument(r.content)
    return [" ".join(pdf[n].get_textpage().get_text_range().split()) for n in range(len(pdf))], None


WAYS: dict[str, Callable[[str, str, bytes], Coroutine[Any, Any, Read]]] = {
    "one ?pages=all request": one_request, "one ?pages=all&format=ndjson (streamed)": streamed,
    "client": client_pages, "a request per page, 4 at once": pages_at_once, "page by page": page_by_page,
    "one ?pages=all&format=pdf": as_pdf}


def main(args: argparse.Namespace) -> None:
    print("| file | pages | way | s | s/page | first page s | same text |")
    print("|---|---|---|---|---|---|---|")
    for name, data in documents(args.pages).items():
        asyncio.run(one_request(args.url, name, data))  # warm: a replica's first batches cost more
        seconds: dict[str, list[float]] = {way: [] for way in WAYS}
        firsts: dict[str, list[float]] = {way: [] for way in WAYS}
        texts: dict[str, list[str]] = {}
        for _ in range(args.rounds):
            for way, read in WAYS.items():
                t0 = time.perf_counter()
                texts[way], first = asyncio.run(read(args.url, name, data))
                seconds[way].append(time.perf_counter() - t0)
                firsts[way].append(seconds[way][-1] if first is None else first)
        reference = texts["one ?pages=all request"]
        for way in WAYS:
            same = ([" ".join(t.split()) for t in reference] == texts[way] if way.endswith("pdf")
                    else texts[way] == reference)
            s = statistics.median(seconds[way])
            print(f"| {name} ({len(data) / 2**20:.1f} MiB) | {len(reference)} | {way} | {s:.2f} | "
                  f"{s / len(reference):.3f} | {statistics.median(firsts[way]):.2f} | {same} |")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
