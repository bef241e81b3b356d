"""A client for the OCR API that retries what is worth retrying, and a command line that reads files with it.

A lost replica or a full queue should cost the caller time, not an answer. The command line reads files, or every
page of a PDF, through it:

    python -m serve_app.client page.jpg scan.pdf --pages all             # text of each page, in order
    python -m serve_app.client crops/*.png --layout word --json --concurrency 4 > out.jsonl
    python -m serve_app.client scan.pdf --pages all --hocr out/         # out/scan.pdf.hocr, every page
    python -m serve_app.client scan.pdf --pages all --pdf out/          # out/scan.pdf.pdf, searchable
    python -m serve_app.client scan.pdf --pages all --alto out/         # out/scan.pdf.xml, ALTO 4.4
    python -m serve_app.client scan.pdf --pages all --tsv out/          # out/scan.pdf.tsv, Tesseract's TSV
    python -m serve_app.client scans/ --pages all --text out/ --skip-done   # a folder; again after a stop: the rest
    pdftoppm -png -r 200 -f 3 -l 3 scan.pdf | python -m serve_app.client -     # standard input

Each file's outputs are written as soon as it is read, whole or not at all; a folder's files keep their subfolders
under each output folder (`serve_app.batch`).

What is retried: 503 (overloaded, a model replica lost too often, storage down; after its ``Retry-After``), 429
(this client past its share of an ingress replica's requests; after its ``Retry-After``), 504 (no answer within
the service's deadline), 502, a 500 that is not our JSON (Serve's HTTP proxy answers so when the ingress replica
holding the request is lost) and a dropped connection. What is not: every other 4xx (the input is wrong and stays
wrong) and our JSON 500 ``internal_error`` (a fault for this input; its ``request_id`` is what
to report). Reading a page is pure, so sending it again is safe; every try of one call carries the same
``Idempotency-Key``, so that with storage on an upload whose answer was lost on the way back is stored once, under
one ``request_id``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import mimetypes
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from serve_app import batch
from serve_app.documents import page_text
from serve_app.pages import in_parts, page_spec, parse_pages

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
T = TypeVar("T")
#: Called with each page of a document as soon as it is read (`OCRClient.ocr_pages`).
OnPage = Callable[["Answer"], None]
#: How long an upload may take to be answered: the service's ``ingress.document_timeout_s`` (300 s by default) and
#: a margin. A ``?pages=`` answer comes only once every page is read, and a tall strip (a whole web page's
#: screenshot) read in parts has ``ingress.request_timeout_s`` for each part, up to that: a 1280 x 20000 one took
#: 93-97 s on a 2-core AVX2 EPYC, and would pass the client's own 120 s on a slower machine.
DOCUMENT_READ_TIMEOUT_S = 330.0
#: Pages read at once where a document is read a request per page (past the ``ingress.max_pages`` of a service
#: that does not say what it is).
PAGES_AT_ONCE = 4
#: Requests at once where a document past the service's ``ingress.max_pages`` is read in parts of that many pages
#: (the service reads ``ingress.pages_at_once`` pages of each at a time).
PARTS_AT_ONCE = 2


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # tries in all, the first included
    backoff_s: float = 0.5  # the first wait where the answer gives no Retry-After; doubles each time
    max_backoff_s: float = 10.0
    deadline_s: float = 300.0  # no new try starts after this long


@dataclass(frozen=True)
class Answer:
    body: dict[str, Any]
    attempts: int  # 1 when the first try was answered


class OCRError(Exception):
    """The service said no (or never answered): what it said, and after how many tries.

    ``max_pages``: with ``too_many_pages``, how many pages one request reads (a service of an earlier release does
    not say: None).
    """

    def __init__(self, status: int, code: str, message: str, request_id: str | None, attempts: int,
                 max_pages: int | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (request_id {request_id})" if request_id else ""))
        self.status, self.code, self.message, self.request_id, self.attempts = (
            status, code, message, request_id, attempts)
        self.max_pages = max_pages


def retry_delay(response: httpx.Response | None, attempt: int, policy: RetryPolicy,
                rng: random.Random | None = None) -> float:
    """Seconds to wait before try ``attempt + 1``.

    The service's ``Retry-After`` where it gave one (capped), else exponential backoff with jitter, so that
    clients turned away together do not all come back together.
    """
    header = response.headers.get("Retry-After") if response is not None else None
    if header is not None:
        try:
            return min(max(float(header), 0.0), policy.max_backoff_s)
        except ValueError:  # an HTTP date: not sent by us; fall back to backoff
            pass
    ceiling = min(policy.backoff_s * 2 ** (attempt - 1), policy.max_backoff_s)
    return (rng or random).uniform(ceiling / 2, ceiling)


def error_of(response: httpx.Response) -> tuple[str, str, str | None]:
    """(code, message, request_id) of an error answer; a body that is not ours (a proxy's) gets code ``http_error``."""
    try:
        body = response.json()
        return body["error"]["code"], body["error"]["message"], body.get("request_id")
    except (ValueError, KeyError, TypeError):
        return "http_error", response.text.strip()[:200] or response.reason_phrase, None


def max_pages_of(response: httpx.Response) -> int | None:
    """A ``too_many_pages`` answer's ``max_pages``, where it gives a usable one."""
    try:
        value = response.json()["error"].get("max_pages")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def is_retried(response: httpx.Response) -> bool:
    """Whether to send a call again: the failures above, and a 404 that says when to ask again.

    The service answers that for stored results still on their way to the database (``Retry-After``); a plain 404
    is final.
    """
    status = response.status_code
    return is_retried_status(status, error_of(response)[0] if status == 500 else "",
                             says_when="Retry-After" in response.headers)


def is_retried_status(status: int, code: str, says_when: bool = False) -> bool:
    """`is_retried` for what a failure says, wherever it says it (a streamed document's last line, too)."""
    if status == 404:
        return says_when
    return status in RETRIED_STATUSES and (status != 500 or code != "internal_error")


def in_page_order(numbers: list[int], on_page: OnPage | None) -> OnPage | None:
    """``on_page`` for pages read side by side, so out of order: each handed on once those before it are."""
    if on_page is None:
        return None
    told = on_page
    waiting: dict[int, Answer] = {}
    ahead = iter(numbers)
    due = next(ahead, None)

    def heard(answer: Answer) -> None:
        nonlocal due
        waiting[answer.body["image"]["page"]] = answer
        while due is not None and due in waiting:
            told(waiting.pop(due))
            due = next(ahead, None)

    return heard


class _Again(Exception):
    """A try that failed in a way worth another (`OCRClient._with_retries`); ``response``: its answer, if any."""

    def __init__(self, failure: OCRError, response: httpx.Response | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(str(failure))
        self.failure, self.response, self.retry_after_s = failure, response, retry_after_s


class OCRClient:
    """One connection pool to one service; safe to share between concurrent tasks."""

    def __init__(self, url: str = "http://127.0.0.1:8000", *, timeout_s: float = 120.0,
                 policy: RetryPolicy = RetryPolicy(), api_key: str | None = None) -> None:
        """``api_key``: for a service that asks for one (``OCR_API_KEYS`` there); default ``$OCR_API_KEY``."""
        self.policy = policy
        api_key = api_key or os.environ.get("OCR_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._http = httpx.AsyncClient(base_url=url, timeout=timeout_s, headers=headers)

    async def __aenter__(self) -> OCRClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def ocr(self, data: bytes, filename: str = "image", *, layout: str = "page", page: int = 1,
                  rotate: str | int = "0", min_confidence: float | None = None,
                  idempotency_key: str | None = None, preview: int = 0,
                  region: tuple[float, float, float, float] | None = None) -> Answer:
        """``POST /api/v1/ocr``, sent again while the failure is one of those above and the policy allows.

        ``idempotency_key``: one of your own where a call may be made again later (a job retried after a restart);
        by default a new one per call, the same for all its tries. ``min_confidence``: keep every word read at
        least that sure (0: every reading) instead of the service's own filter. ``preview``: N > 0, the answer
        holds the page as read, its long side at most N pixels (``body["preview"]["url"]``, a JPEG ``data:`` URL).
        ``region``: x0, y0, x1, y1, only that part of the page is read (in its pixels, as boxes are).
        """
        params: dict[str, Any] = {"layout": layout, "page": page, "rotate": str(rotate)}
        if preview:
            params["preview"] = preview
        if region is not None:
            params["region"] = ",".join(f"{v:g}" for v in region)
        return await self._send(params, data, filename, min_confidence, idempotency_key, DOCUMENT_READ_TIMEOUT_S)

    async def ocr_pages(self, data: bytes, filename: str = "document.pdf", *, pages: str = "all",
                        rotate: str | int = "0", min_confidence: float | None = None,
                        idempotency_key: str | None = None, on_page: OnPage | None = None) -> list[Answer]:
        """Every page of a PDF or multi-page TIFF (``pages="all"``), or those named (``"1,3-4"``), in order.

        Several pages are one ``?pages=`` request: the upload is sent once (a request per page sent it whole each
        time), and the service reads the pages at its own pace. Past the service's ``ingress.max_pages`` (413
        ``too_many_pages``, which says how many) they are read in parts of that many pages (`_in_parts`), the upload
        sent once per part; from a service that does not say, a request per page, ``PAGES_AT_ONCE`` at a time.
        ``on_page``: called with each page, in page order, as soon as it and those before it are read, once however
        often a request is sent again (the request streams its pages, ``format=ndjson``); the pages are returned
        all the same.
        """
        wanted = parse_pages(pages)
        if len(wanted) == 1:
            answer = await self.ocr(data, filename, page=wanted[0], rotate=rotate, min_confidence=min_confidence,
                                    idempotency_key=idempotency_key)
            if on_page is not None:
                on_page(answer)
            return [answer]
        try:
            return await self._document({"pages": pages, "rotate": str(rotate)}, data, filename, min_confidence,
                                        idempotency_key, on_page)
        except OCRError as exc:
            if exc.code != "too_many_pages":
                raise
            if exc.max_pages is not None:
                return await self._in_parts(data, filename, wanted, exc.max_pages, rotate, min_confidence,
                                            idempotency_key, on_page)
            return await self._page_by_page(data, filename, wanted, rotate, min_confidence, on_page)

    async def _document(self, params: dict[str, Any], data: bytes, filename: str, min_confidence: float | None,
                        idempotency_key: str | None, on_page: OnPage | None) -> list[Answer]:
        """One ``?pages=`` request's pages: its JSON answer, or, for ``on_page``, its pages streamed."""
        if on_page is not None:
            try:
                return await self._streamed(params, data, filename, min_confidence, idempotency_key, on_page)
            except OCRError as exc:  # a service of an earlier release does not stream: all pages at once, then
                if exc.status != 422 or not exc.message.startswith("query.format"):
                    raise
            answers = await self._document(params, data, filename, min_confidence, idempotency_key, None)
            for answer in answers:
                on_page(answer)
            return answers
        document = await self._send(params, data, filename, min_confidence, idempotency_key,
                                    read_timeout_s=DOCUMENT_READ_TIMEOUT_S)
        return [Answer(body, document.attempts) for body in document.body["pages"]]

    async def _in_parts(self, data: bytes, filename: str, wanted: list[int], most: int, rotate: str | int,
                        min_confidence: float | None, idempotency_key: str | None,
                        on_page: OnPage | None = None) -> list[Answer]:
        """The pages ``wanted`` ([]: all) as ``?pages=`` requests of ``most`` pages at most, ``PARTS_AT_ONCE`` at once.

        Where every page is wanted the first part goes alone, since it says how many there are. Each part has a key
        of its own, derived from ``idempotency_key`` where one is given (so a job run again is stored once).
        """
        async def part(spec: str) -> list[Answer]:
            key = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{idempotency_key}#pages={spec}")) if idempotency_key else None
            return await self._document({"pages": spec, "rotate": str(rotate)}, data, filename, min_confidence, key,
                                        on_page)

        first: list[Answer] = []
        numbers = wanted
        if not wanted:
            first = await part(page_spec(list(range(1, most + 1))))
            numbers = list(range(most + 1, first[0].body["image"]["pages"] + 1))
        on_page = in_page_order(numbers, on_page)  # the parts are read side by side
        gate = asyncio.Semaphore(PARTS_AT_ONCE)

        async def gated(spec: str) -> list[Answer]:
            async with gate:
                return await part(spec)

        rest = await asyncio.gather(*(gated(spec) for spec in in_parts(numbers, most)))
        return first + [answer for answers in rest for answer in answers]

    async def _page_by_page(self, data: bytes, filename: str, wanted: list[int], rotate: str | int,
                            min_confidence: float | None, on_page: OnPage | None = None) -> list[Answer]:
        """The pages ``wanted`` ([]: all) a request each: the first says how many there are."""
        first = await self.ocr(data, filename, page=wanted[0] if wanted else 1, rotate=rotate,
                               min_confidence=min_confidence)
        if on_page is not None:
            on_page(first)
        held = first.body["image"]["pages"]
        rest = [p for p in (wanted or range(1, held + 1)) if p != first.body["image"]["page"]]
        on_page = in_page_order(rest, on_page)  # read side by side
        gate = asyncio.Semaphore(PAGES_AT_ONCE)

        async def one(page: int) -> Answer:
            async with gate:
                answer = await self.ocr(data, filename, page=page, rotate=rotate, min_confidence=min_confidence)
            if on_page is not None:
                on_page(answer)
            return answer

        answers = await asyncio.gather(*(one(p) for p in rest))
        return sorted([first, *answers], key=lambda a: a.body["image"]["page"])

    async def stored(self, image_id: str, fmt: str = "json") -> Any:
        """``GET /api/v1/images/{id}/data``: what is stored of an answer, as corrected since, in ``fmt``.

        JSON as a dict, a searchable PDF (``pdf``) as bytes, the other formats (``text``, ``hocr``, ``alto``,
        ``tsv``) as text. A document's ``request_id`` gives its pages as one document. Results still on their way
        to the database (404 with ``Retry-After``) are asked for again, as the policy allows.
        """
        response, _ = await self._call("GET", f"/api/v1/images/{image_id}/data", params={"format": fmt})
        return response.json() if fmt == "json" else response.content if fmt == "pdf" else response.text

    async def image(self, image_id: str) -> bytes:
        """``GET /api/v1/images/{id}``: the stored upload, as it came."""
        return (await self._call("GET", f"/api/v1/images/{image_id}"))[0].content

    async def correct(self, image_id: str, value: str, line_index: int | None = None,
                      correction_id: str | None = None, page: int | None = None) -> str:
        """``POST /api/v1/images/{id}/corrections``: a line's text (``line_index``, from 0), or the whole image's.

        ``page``: with a document's ``request_id`` (``ocr_pages``), which of its pages, from 1. Returns the
        correction's id: ``correction_id`` where given, else one made for this call, so that every try of it is
        stored once.
        """
        body: dict[str, Any] = {"value": value, "correction_id": correction_id or str(uuid.uuid4())}
        if line_index is not None:
            body["line_index"] = line_index
        if page is not None:
            body["page"] = page
        response, _ = await self._call("POST", f"/api/v1/images/{image_id}/corrections", json=body, ok=202)
        return str(response.json()["correction_id"])

    async def delete(self, image_id: str) -> None:
        """``DELETE /api/v1/images/{id}``: the stored image, its results and corrections (a document's: its pages)."""
        await self._call("DELETE", f"/api/v1/images/{image_id}", ok=204)

    def _upload(self, params: dict[str, Any], data: bytes, filename: str, min_confidence: float | None,
                idempotency_key: str | None, read_timeout_s: float | None) -> dict[str, Any]:
        """The request an upload is sent as, every try of it under one ``Idempotency-Key``."""
        if min_confidence is not None:
            params["min_confidence"] = min_confidence
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        timeout = self._http.timeout
        if read_timeout_s is not None:
            timeout = httpx.Timeout(timeout.connect, read=max(read_timeout_s, timeout.read or 0),
                                    write=timeout.write, pool=timeout.pool)
        return {"params": params, "headers": headers, "timeout": timeout, "files": {"image": (filename, data, mime)}}

    async def _send(self, params: dict[str, Any], data: bytes, filename: str, min_confidence: float | None,
                    idempotency_key: str | None, read_timeout_s: float | None = None) -> Answer:
        """One call, its tries all under one ``Idempotency-Key``; ``read_timeout_s``: a longer wait for its answer."""
        request = self._upload(params, data, filename, min_confidence, idempotency_key, read_timeout_s)
        response, attempts = await self._call("POST", "/api/v1/ocr", **request)
        return Answer(response.json(), attempts)

    async def _streamed(self, params: dict[str, Any], data: bytes, filename: str, min_confidence: float | None,
                        idempotency_key: str | None, on_page: OnPage) -> list[Answer]:
        """A ``?pages=`` request streamed (``format=ndjson``): ``on_page`` hears of each page as its line comes.

        A stream cut off or ended by an error worth another try is sent again under the same key; the pages it
        gave already are not given again.
        """
        request = self._upload({**params, "format": "ndjson"}, data, filename, min_confidence, idempotency_key,
                               DOCUMENT_READ_TIMEOUT_S)
        read: dict[int, Answer] = {}

        async def once(attempt: int) -> list[Answer]:
            try:
                async with self._http.stream("POST", "/api/v1/ocr", **request) as response:
                    if response.status_code != 200:
                        await response.aread()
                        failure = OCRError(response.status_code, *error_of(response), attempt,
                                           max_pages_of(response))
                        raise _Again(failure, response) if is_retried(response) else failure
                    async for line in response.aiter_lines():
                        item = json.loads(line) if line.strip() else {}
                        if "page" in item and item["page"]["image"]["page"] not in read:
                            read[item["page"]["image"]["page"]] = answer = Answer(item["page"], attempt)
                            on_page(answer)
                        elif "end" in item:
                            return [read[n] for n in sorted(read)]
                        elif "error" in item:
                            error = item["error"]
                            failure = OCRError(item["status"], error["code"], error["message"],
                                               item.get("request_id"), attempt, error.get("max_pages"))
                            if not is_retried_status(item["status"], error["code"]):
                                raise failure
                            raise _Again(failure, retry_after_s=item.get("retry_after_s"))
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                raise _Again(OCRError(0, "connection_error", f"{type(exc).__name__}: {exc}", None, attempt)) from exc
            raise _Again(OCRError(0, "connection_error", "the stream ended before its last line", None, attempt))

        return await self._with_retries(once)

    async def _call(self, method: str, path: str, ok: int = 200, **request: Any) -> tuple[httpx.Response, int]:
        """One call, sent again while the failure is one worth sending again (`is_retried`) and the policy allows.

        Returns the answer (status ``ok``) and how many tries it took.
        """
        async def once(attempt: int) -> tuple[httpx.Response, int]:
            try:
                response = await self._http.request(method, path, **request)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                raise _Again(OCRError(0, "connection_error", f"{type(exc).__name__}: {exc}", None, attempt)) from exc
            if response.status_code == ok:
                return response, attempt
            failure = OCRError(response.status_code, *error_of(response), attempt, max_pages_of(response))
            raise _Again(failure, response) if is_retried(response) else failure

        return await self._with_retries(once)

    async def _with_retries(self, once: Callable[[int], Awaitable[T]]) -> T:
        """``once(attempt)`` until it returns or fails for good: the policy's tries or deadline spent, or an `OCRError`.

        ``once`` raises `_Again` for a failure worth another try.
        """
        start = time.monotonic()
        for attempt in range(1, self.policy.attempts + 1):
            try:
                return await once(attempt)
            except _Again as again:
                delay = retry_delay(again.response, attempt, self.policy)
                if again.retry_after_s is not None:  # said in a stream's last line, where no header could say it
                    delay = min(max(float(again.retry_after_s), 0.0), self.policy.max_backoff_s)
                if attempt == self.policy.attempts or time.monotonic() - start + delay > self.policy.deadline_s:
                    raise again.failure from None
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path,
                   help="files to read; a folder: every image and PDF under it, in sorted order; '-': standard "
                        "input (its outputs are named 'stdin')")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--layout", default="page", choices=["page", "word"])
    p.add_argument("--pages", default=None, help="'all', or which pages of a PDF or TIFF, e.g. '1,3-4' (default: the "
                   "first, with a note on stderr for a file that holds more)")
    p.add_argument("--rotate", default="0", choices=["0", "90", "180", "270", "auto"])
    p.add_argument("--min-confidence", type=float, default=None,
                   help="keep every word read at least this sure, 0 to 1 (0: every reading); default: the service's")
    p.add_argument("--concurrency", type=int, default=2, help="files in flight at once")
    p.add_argument("--attempts", type=int, default=RetryPolicy.attempts)
    p.add_argument("--api-key", default=None, help="where the service asks for one (default: $OCR_API_KEY)")
    p.add_argument("--json", action="store_true", help="one JSON object per page read (JSON lines)")
    p.add_argument("--text", type=Path, default=None, metavar="DIR",
                   help="also write each file's text, DIR/<file name>.txt (each page ended by a form feed)")
    p.add_argument("--hocr", type=Path, default=None, metavar="DIR",
                   help="also write each file's pages read as one hOCR document, DIR/<file name>.hocr")
    p.add_argument("--pdf", type=Path, default=None, metavar="DIR",
                   help="also write each file's pages read as one searchable PDF (the pages with their words "
                        "laid over them, invisible), DIR/<file name>.pdf")
    p.add_argument("--alto", type=Path, default=None, metavar="DIR",
                   help="also write each file's pages read as one ALTO 4.4 document, DIR/<file name>.xml")
    p.add_argument("--tsv", type=Path, default=None, metavar="DIR",
                   help="also write each file's pages read as one TSV table as Tesseract writes it, "
                        "DIR/<file name>.tsv")
    p.add_argument("--skip-done", action="store_true",
                   help="do not send a file whose every output (--text, --hocr, ...) is there already: run a "
                        "batch again after an interruption and only what is missing is read")
    return p


@dataclass
class Tally:
    """What a run of the command line did, for its closing line (printed when interrupted too)."""

    files: int = 0
    read: int = 0
    pages: int = 0
    failed: int = 0
    skipped: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)

    def summary(self, interrupted: bool = False) -> str:
        left = self.files - self.read - self.failed - self.skipped
        seconds = time.monotonic() - self.started
        text = (f"{self.read} of {self.files} files read ({self.pages} pages) in {seconds:.1f} s, {self.failed} "
                f"failed, {self.skipped} skipped as done")
        if interrupted:
            text += f"; interrupted with {left} not read: run again with --skip-done to read only those"
        return text


def _print(records: list[dict[str, Any]], as_json: bool) -> None:
    for record in records:
        if as_json:
            print(json.dumps(record, ensure_ascii=False), flush=True)
        elif "error" in record:
            print(f"== {record['file']}: {record['error']['code']}: {record['error']['message']}", file=sys.stderr)
        else:
            print(f"== {record['file']} page {record['image']['page']}/{record['image']['pages']}")
            print(page_text(record), end="", flush=True)  # a blank line between blocks of text, as ?format=text


def _failure(path: Path, status: int, code: str, message: str, request_id: str | None = None,
             attempts: int = 0) -> list[dict[str, Any]]:
    return [{"file": str(path), "error": {"status": status, "code": code, "message": message},
             "request_id": request_id, "attempts": attempts}]


async def run(args: argparse.Namespace, tally: Tally | None = None) -> int:
    """Reads the files, prints them in the order given; the exit status is 1 if any could not be read.

    Each file's outputs are written as soon as it is read (`serve_app.batch`), so an interrupted run keeps every
    file finished before it; ``args.concurrency`` files are in flight at once, and only the answers finished ahead
    of a file still being read are held, to be printed in order.
    """
    tally = tally or Tally()
    folders = {fmt: folder for fmt in batch.SUFFIXES if (folder := getattr(args, fmt, None)) is not None}
    files = batch.plan(args.files, folders)
    todo = []
    for path, outputs in files:
        if args.skip_done and batch.done(outputs):
            tally.skipped += 1
        else:
            todo.append((path, outputs))
    tally.files = len(files)
    printer: batch.InOrder[list[dict[str, Any]]] = batch.InOrder(lambda records: _print(records, args.json))

    async with OCRClient(args.url, policy=RetryPolicy(attempts=args.attempts), api_key=args.api_key) as client:
        async def one(number: int, path: Path, outputs: dict[str, Path]) -> list[dict[str, Any]]:
            """A file's records: its pages, or its failure.

            Each page is printed as soon as it is read where no file before it is still being read (a long PDF's
            text as it comes); a failure, after the pages printed before it.
            """
            def record(answer: Answer) -> None:
                printer.add(number, [{"file": str(path), "attempts": answer.attempts, **answer.body}])

            try:
                data = sys.stdin.buffer.read() if path == batch.STDIN else path.read_bytes()
                name = batch.STDIN_NAME.name if path == batch.STDIN else path.name
                if args.layout == "word":
                    answers = [await client.ocr(data, name, layout="word", rotate=args.rotate)]
                    record(answers[0])
                else:
                    answers = await client.ocr_pages(data, name, pages=args.pages or "1", rotate=args.rotate,
                                                     min_confidence=args.min_confidence, on_page=record)
            except OCRError as exc:
                return _failure(path, exc.status, exc.code, exc.message, exc.request_id, exc.attempts)
            except OSError as exc:
                return _failure(path, 0, "unreadable_file", str(exc))
            pages = [a.body for a in answers]
            try:  # in a thread: a searchable PDF takes a while to make, and the other files go on meanwhile
                await asyncio.to_thread(batch.write_outputs, outputs, pages, data, name)
            except OSError as exc:
                return _failure(path, 0, "unwritable_output", str(exc))
            return [{"file": str(path), "attempts": a.attempts, **a.body} for a in answers]

        work = iter(enumerate(todo))

        async def worker() -> None:
            for number, (path, outputs) in work:  # shared: each file is taken by one worker
                records = await one(number, path, outputs)
                failed = any("error" in r for r in records)
                tally.failed += failed
                tally.read += not failed
                tally.pages += 0 if failed else len(records)
                held = 0 if failed or args.layout == "word" else records[0]["image"]["pages"]
                if args.pages is None and held > 1:  # the first page alone, by default: say so, or it goes unnoticed
                    print(f"== {path}: holds {held} pages, of which page 1 was read (--pages all reads every one)",
                          file=sys.stderr, flush=True)
                if failed:  # its pages read before the failure are printed already
                    printer.add(number, records)
                printer.close(number)

        await asyncio.gather(*(worker() for _ in range(max(1, args.concurrency))))
    return 1 if tally.failed else 0


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.skip_done and not any(getattr(args, fmt) for fmt in batch.SUFFIXES):
        get_args_parser().error("--skip-done needs an output folder (--text, --hocr, --alto, --tsv or --pdf): "
                                "that a file's outputs are there is what says it is done")
    tally = Tally()
    try:
        status = asyncio.run(run(args, tally))
    except KeyboardInterrupt:
        print(tally.summary(interrupted=True), file=sys.stderr)
        return 130
    if tally.files > 1 or tally.skipped:
        print(tally.summary(), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
