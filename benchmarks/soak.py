"""Whether a running service holds its memory and its pace over a long, mixed load.

    RAY_AUTH_MODE=disabled serve run deployments.app:app &        # storage on or off
    python -m benchmarks.soak --minutes 20 --clients 3

``--clients`` clients send a mix of what users send, one request after another, for ``--minutes``: scenes_dev
frames, docs_dev receipts in every output format, words_dev crops with ``layout=word``, a two-page PDF streamed as
ndjson, frames with a preview, uploads that are no image (415), and, where storage is on, reads, ``HEAD``s and
deletes of the images just stored (``--kinds`` keeps some of these: cheap ones find a slow growth sooner). Every
``--every`` seconds it reads the resident memory of each Ray process on this machine (``/proc``: the service must
run here), then prints per process its memory after the warm-up, at the end, and its growth per 1,000 requests
over the second half of the run (least squares, and the median slope, which swings do not tilt), when caches have
filled and only a leak still grows; then the median latency per kind of request in each fifth of the run, and
every status seen. Nothing is asserted: docs/operations.md, "A long run".
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import random
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image

from training import datasets

MIB = 1024 * 1024
FORMATS = ("json", "hocr", "alto", "tsv", "text", "pdf")
#: Kinds of request and how often each is drawn: mostly frames, receipts and words, as a service mostly gets.
WEIGHTS = {"frame": 4, "receipt": 3, "word": 3, "document": 1, "preview": 1, "not an image": 1, "stored": 2}


@dataclass(frozen=True)
class Sent:
    at_s: float  # since the load began, when the answer came
    kind: str
    status: int
    latency_s: float


@dataclass
class Sample:
    at_s: float
    requests: int  # answered so far
    rss: dict[str, int]  # process label -> resident bytes


@dataclass
class Load:
    """What the clients send: files read once, ids of stored images to read back."""

    frames: list[bytes]
    receipts: list[bytes]
    words: list[bytes]
    document: bytes
    stored: bool
    kinds: tuple[str, ...] = tuple(WEIGHTS)
    ids: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def ray_processes() -> dict[str, int]:
    """Resident bytes of every Ray process here, by its title (``ray::ServeReplica:default:Detector``) and pid.

    Idle pooled workers are left out: Ray starts and stops them, which is not the service's memory.
    """
    page = os.sysconf("SC_PAGE_SIZE")
    out: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            resident = int((proc / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        title = args[0].decode(errors="replace")
        if title.startswith("ray::"):
            if title.startswith("ray::IDLE"):
                continue
            label = title.split(" ", 1)[0].split(".", 1)[0]  # a replica is titled by its method while in one
        elif title.endswith(("/raylet", "/gcs_server")):
            label = title.rsplit("/", 1)[1]
        elif any(a.endswith(b"/dashboard.py") for a in args):
            label = "dashboard"
        else:
            continue
        out[f"{label}#{proc.name}"] = resident
    return out


def slope_per_1000(points: Sequence[tuple[int, int]]) -> float:
    """Bytes per 1,000 requests, the least-squares slope of (requests answered, bytes); 0 with fewer than 2."""
    if len(points) < 2:
        return 0.0
    xs = [float(x) for x, _ in points]
    ys = [float(y) for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return 1000 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def median_slope_per_1000(points: Sequence[tuple[int, int]]) -> float:
    """Bytes per 1,000 requests, the median of the slopes between every two readings (Theil-Sen); 0 with none.

    Where memory swings with what is in flight (an ingress decoding large uploads), a few high readings late in the
    run tilt the least-squares slope; the median slope follows only what most readings agree on, so a steady
    growth still shows and a swing does not.
    """
    slopes = [(y1 - y0) / (x1 - x0) for i, (x0, y0) in enumerate(points) for x1, y1 in points[i + 1:] if x1 != x0]
    return 1000 * statistics.median(slopes) if slopes else 0.0


def memory_table(samples: Sequence[Sample], warm_up_s: float) -> list[tuple[str, float, float, float, float, float]]:
    """Per process: MiB after the warm-up, at the end, the most seen, and MiB per 1,000 requests in the second half.

    The growth is given by least squares and by the median slope (`median_slope_per_1000`). A process seen only in
    part of the run (a replica replaced) is measured over the samples it was in.
    """
    rows = []
    labels = sorted({label for s in samples for label in s.rss})
    for label in labels:
        seen = [s for s in samples if label in s.rss]
        warm = [s for s in seen if s.at_s >= warm_up_s] or seen
        half = warm[len(warm) // 2:]
        points = [(s.requests, s.rss[label]) for s in half]
        rows.append((label, warm[0].rss[label] / MIB, warm[-1].rss[label] / MIB,
                     max(s.rss[label] for s in seen) / MIB,
                     slope_per_1000(points) / MIB, median_slope_per_1000(points) / MIB))
    return rows


def latency_table(sent: Sequence[Sent], seconds: float, parts: int = 5) -> dict[str, list[float | None]]:
    """Median latency (s) of each kind's answered requests (2xx) in each of ``parts`` equal spans of the run."""
    out: dict[str, list[float | None]] = {}
    by_kind: dict[str, list[list[float]]] = defaultdict(lambda: [[] for _ in range(parts)])
    for s in sent:
        if 200 <= s.status < 300:
            by_kind[s.kind][min(parts - 1, int(s.at_s / seconds * parts))].append(s.latency_s)
    for kind, spans in sorted(by_kind.items()):
        out[kind] = [statistics.median(span) if span else None for span in spans]
    return out


def uploads(name: str, first: int) -> list[bytes]:
    """The files of an eval set's first images, as uploaded."""
    return [Path(it["path"]).read_bytes() for it in datasets.read_manifest(f"eval/{name}")[:first]]


def two_page_pdf(paths: Sequence[str]) -> bytes:
    pages = [Image.open(p).convert("RGB") for p in paths]
    buf = io.BytesIO()
    pages[0].save(buf, "PDF", resolution=150.0, save_all=True, append_images=pages[1:])
    return buf.getvalue()


def load(stored: bool, kinds: Sequence[str] = tuple(WEIGHTS)) -> Load:
    document = two_page_pdf([it["path"] for it in datasets.read_manifest("eval/docs_dev")[20:22]])
    return Load(uploads("scenes_dev", 40), uploads("docs_dev", 20), uploads("words_dev", 200), document, stored,
                tuple(kinds))


def draw_kind(rng: random.Random, kinds: Sequence[str], stored: bool, ids: bool) -> str:
    """A kind of request of ``kinds``, drawn by its weight.

    ``stored`` only where storage is on and an image is stored (``ids``), since a read needs an answer first;
    else another of ``kinds``, or a frame where that is all.
    """
    able = [k for k in kinds if k != "stored" or (stored and ids)] or ["frame"]
    return rng.choices(able, weights=[WEIGHTS[k] for k in able])[0]


def remember(work: Load, r: httpx.Response) -> None:
    rid = r.headers.get("x-ocr-request-id")
    if work.stored and r.status_code == 200 and rid:
        with work.lock:
            work.ids.append(rid)
            del work.ids[:-50]


def stored_call(c: httpx.Client, work: Load, rng: random.Random) -> tuple[str, httpx.Response] | None:
    with work.lock:
        if not work.ids:
            return None
        rid = rng.choice(work.ids)
    what = rng.choice(["image", "head", "data", "hocr", "delete"])
    if what == "image":
        return "stored image", c.get(f"/api/v1/images/{rid}")
    if what == "head":
        return "stored head", c.head(f"/api/v1/images/{rid}")
    if what == "data":
        return "stored data", c.get(f"/api/v1/images/{rid}/data")
    if what == "hocr":
        return "stored data", c.get(f"/api/v1/images/{rid}/data", params={"format": "hocr"})
    with work.lock:
        if rid in work.ids:
            work.ids.remove(rid)
    return "delete", c.delete(f"/api/v1/images/{rid}")


def one_request(c: httpx.Client, work: Load, rng: random.Random) -> tuple[str, httpx.Response]:
    """One request of a kind drawn by weight (`draw_kind`)."""
    with work.lock:
        kind = draw_kind(rng, work.kinds, work.stored, bool(work.ids))
    ocr = "/api/v1/ocr"
    if kind == "stored":
        done = stored_call(c, work, rng)
        if done is not None:
            return done
        kind = draw_kind(rng, work.kinds, False, False)  # the last stored image was deleted meanwhile
    if kind == "frame":
        r = c.post(ocr, files={"image": ("f.jpg", rng.choice(work.frames), "image/jpeg")})
    elif kind == "preview":
        r = c.post(ocr, params={"preview": 512}, files={"image": ("f.jpg", rng.choice(work.frames), "image/jpeg")})
    elif kind == "receipt":
        fmt = rng.choice(FORMATS)
        kind = f"receipt {fmt}"
        r = c.post(ocr, params={"format": fmt}, files={"image": ("r.jpg", rng.choice(work.receipts), "image/jpeg")})
    elif kind == "word":
        r = c.post(ocr, params={"layout": "word"}, files={"image": ("w.png", rng.choice(work.words), "image/png")})
    elif kind == "document":
        with c.stream("POST", ocr, params={"pages": "all", "format": "ndjson"}, content=work.document,
                      headers={"Content-Type": "application/pdf"}) as r:
            lines = [line for line in r.iter_lines() if line]
        if r.status_code == 200 and (not lines or '"end"' not in lines[-1][:8]):
            r.status_code = 599  # the stream ended without its end line: a failure, though the status was 200
    else:
        r = c.post(ocr, content=rng.randbytes(2048), headers={"Content-Type": "application/octet-stream"})
    remember(work, r)
    return kind, r


def client(url: str, work: Load, seed: int, until: float, t0: float, sent: list[Sent]) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=120) as c:
        while time.monotonic() < until:
            start = time.monotonic()
            try:
                kind, r = one_request(c, work, rng)
                status = r.status_code
            except httpx.HTTPError:
                kind, status = "transport error", 0
            end = time.monotonic()
            sent.append(Sent(end - t0, kind, status, end - start))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--minutes", type=float, default=20)
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--every", type=float, default=15, help="seconds between memory readings")
    p.add_argument("--warm-up", type=float, default=60, help="seconds before memory is counted from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write every memory reading here (seconds, requests, bytes)")
    p.add_argument("--kinds", nargs="+", choices=list(WEIGHTS), default=list(WEIGHTS),
                   help="the kinds of request sent, each by its weight: e.g. 'word' 'not an image' 'stored' for "
                        "many cheap requests, which find a slow growth per request sooner")
    return p


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    ready = httpx.get(f"{args.url}/readyz", timeout=30).json()
    work = load(ready.get("storage", "off") != "off", args.kinds)
    print(f"service {args.url}: precision {ready['precision']}, storage {'on' if work.stored else 'off'}")
    seconds = args.minutes * 60
    sent: list[Sent] = []
    samples: list[Sample] = []
    t0 = time.monotonic()
    until = t0 + seconds
    threads = [threading.Thread(target=client, args=(args.url, work, args.seed + i, until, t0, sent), daemon=True)
               for i in range(args.clients)]
    for t in threads:
        t.start()
    while time.monotonic() < until:
        samples.append(Sample(time.monotonic() - t0, len(sent), ray_processes()))
        time.sleep(min(args.every, max(0.0, until - time.monotonic())))
    for t in threads:
        t.join()
    samples.append(Sample(time.monotonic() - t0, len(sent), ray_processes()))

    print(f"\n{len(sent)} requests in {seconds / 60:.1f} min from {args.clients} clients "
          f"({len(sent) / seconds:.2f}/s); memory read {len(samples)} times")
    print(f"\n{'process':<48} {'MiB warm':>9} {'MiB end':>8} {'MiB max':>8} {'MiB/1000 req, 2nd half':>23} "
          f"{'median slope':>13}")
    for label, warm, end, most, slope, robust in memory_table(samples, args.warm_up):
        print(f"{label:<48} {warm:>9.1f} {end:>8.1f} {most:>8.1f} {slope:>+23.2f} {robust:>+13.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(s) for s in samples]))
    parts = 5
    print(f"\nmedian latency (s) in each fifth of the run\n{'kind':<18}" + "".join(f"{i + 1:>8}" for i in range(parts)))
    for kind, medians in latency_table(sent, seconds, parts).items():
        print(f"{kind:<18}" + "".join(f"{m:>8.3f}" if m is not None else f"{'-':>8}" for m in medians))
    statuses = Counter((s.kind, s.status) for s in sent)
    print("\nstatuses: " + ", ".join(f"{k} {st}: {n}" for (k, st), n in sorted(statuses.items())))


if __name__ == "__main__":
    main()
