"""Ingress deployment: the versioned HTTP API (backend-for-frontend) in front of the detector and recognizer.

No ``from __future__ import annotations`` here: FastAPI must see real types on the ingress class's methods.
"""

import asyncio
import collections
import contextvars
import dataclasses
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import torch
from fastapi import Body, Depends, FastAPI, File, Header, Query, Request, Response, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from opentelemetry import trace
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.datastructures import Headers

from deployments import (
    api_keys,
    api_spec,
    body_limits,
    client_share,
    compression,
    cross_origin,
    deadlines,
    errors,
    metrics,
    request_ids,
    retries,
    security_headers,
    site,
    strict_query,
    unhandled,
    uploads,
)
from deployments.api_spec import (
    ANSWER_HEADERS,
    ANSWER_LINKS,
    ERRORS,
    OTHER_FORMATS,
    RAW_UPLOAD_DOC,
    STREAMED_FORMAT,
    ImageId,
    Layout,
    Output,
    Rotate,
    StoredOutput,
)
from deployments.asgi import Scope
from deployments.errors import error
from deployments.handovers import Handovers
from deployments.page_reader import PageReader
from deployments.stored_images import StoredImages
from serve_app import __version__, documents, previews, regions, searchable_pdf, telemetry
from serve_app.config import AppConfig, resolve_weights
from serve_app.imaging import ACCEPTED, MEDIA_TYPES, ImageError, PageOutOfRange
from serve_app.pages import SPEC_MAX_LENGTH, SPELLING, TooManyPages, parse_pages
from serve_app.pdf_sandbox import PdfSandbox
from serve_app.schemas import (
    MAX_PREVIEW_SIDE,
    CorrectionIn,
    CorrectionOut,
    DocumentResponse,
    ErrorResponse,
    OCRResponse,
)

log = logging.getLogger("ray.serve")
request_log = logging.getLogger("ray.serve.ocr.requests")  # one JSON line per OCR request, in the replica log

api = FastAPI(
    title="show-off OCR",
    version=__version__,
    description="Upload a photo or scan; get text lines and words with boxes and confidences.",
    docs_url=None,
    redoc_url=None,
    dependencies=[Depends(strict_query.no_unknown_query)],  # a misspelt query parameter is named, not ignored
)
#: Read where the replica starts, from its environment (`api_keys`); empty: the API is open.
API_KEYS = api_keys.load()


def _keys() -> tuple[str, ...]:
    """The replica's keys (a function of this module, so Serve ships it by name and the replica's own is called)."""
    return API_KEYS


def _valid_key(scope: Scope) -> str | None:
    """The API key a request presents, where it is one of the service's: whom its requests count against."""
    if not API_KEYS:
        return None
    key = api_keys.presented(Headers(scope=scope))
    return key if api_keys.allowed(API_KEYS, key) else None


def _spec() -> dict[str, Any]:
    """FastAPI's spec, saying how the ``/api/`` routes take a key where this replica has keys (`api_spec.with_keys`).

    Built once, where it is first asked for: in the replica, whose environment holds the keys.
    """
    if api.openapi_schema is None:
        api.openapi_schema = api_spec.with_keys(FastAPI.openapi(api), required=bool(_keys()))
    return api.openapi_schema


api.openapi = _spec  # type: ignore[method-assign]  # FastAPI's documented way to add to its spec


# The middlewares, plain ASGI (`asgi` says why), each added outside the one before. From the inside out:
# - BodyGuard sees the app's answer to a body cut off and replaces it; its refusal goes out through all the rest;
# - Unhandled answers a fault as our JSON 500, which still gets the cross-origin headers;
# - KeyCheck refuses a request without a key before its upload is read or admitted;
# - ClientShare counts a request before the key check (a key that is not the service's counts against the address);
# - CrossOrigin answers a preflight (which carries no key) and marks every answer, refusals included;
# - SecurityHeaders go on every answer, refusals too;
# - Compression, outermost, compresses every answer as the others left it.
api.add_middleware(body_limits.BodyGuard, answer=errors.refuse_body)
api.add_middleware(unhandled.Unhandled, answer=errors.internal_error)
api.add_middleware(api_keys.KeyCheck, keys=_keys, answer=errors.refuse_key)
api.add_middleware(client_share.ClientShare, answer=errors.refuse_share, valid_key=_valid_key)
api.add_middleware(cross_origin.CrossOrigin)
api.add_middleware(security_headers.SecurityHeaders)
api.add_middleware(compression.Compression)
errors.install(api)


T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: On a graceful shutdown the ingress waits this long for answers still on their way to the sidecar: long enough for
#: a sidecar replaced in the same redeploy to start (18 s on a busy 2-core machine, with every replica restarting).
HANDOVER_DRAIN_S = 45.0
#: Serve kills a replica this long after asking it to stop: the drain, plus the requests still being answered.
SHUTDOWN_TIMEOUT_S = HANDOVER_DRAIN_S + 15


def _first_and_more(stored: list[dict[str, Any]]) -> tuple[Any, ...]:
    """`Sidecar.forward`'s last arguments: a page's answer alone, as every release called it, or with the others."""
    return (stored[0],) if len(stored) == 1 else (stored[0], stored[1:])


def _ids_of(bodies: list[dict[str, Any]]) -> str:
    """The request ids of answers, for a log line: one, or the first and how many pages follow it."""
    first = bodies[0]["request_id"]
    return first if len(bodies) == 1 else f"{first} (and the {len(bodies) - 1} other pages read with it)"


def _outliving_the_request() -> contextvars.Context:
    """The current context (the request's trace included) for work that must outlive the request.

    Serve cancels every call made under an ingress request when that request is cancelled, and its proxy cancels
    one whose client is gone, at times just after the answer went out. A handover to the sidecar made under the
    request was then cancelled with it, and its answer never stored (one in 30 in about half the runs of the
    sidecar-kill test). Under a request id of its own that Serve does not cancel with the request's, it runs on.
    That was not all of it: a handover was still cancelled 34 ms after its client left (CI, 2026-12-05), so the
    handover also sends its call again when cancelled (`retries.call_with_retries(outlive_cancellation=True)`).
    """
    from ray.serve import context as serve_context

    context = contextvars.copy_context()
    current = context.get(serve_context._serve_request_context)
    if dataclasses.is_dataclass(current) and not isinstance(current, type):
        detached = dataclasses.replace(current, _internal_request_id=uuid.uuid4().hex,
                                       cancel_on_parent_request_cancel=False)
        context.run(serve_context._serve_request_context.set, detached)
    return context


def _allowed(deadline: deadlines.Deadline, setting: str) -> str:
    """How long a request had, and the setting that says so, for its 504."""
    if deadline.parts == 1:
        return f"{deadline.seconds:g} s (ingress.{setting})"
    return (f"{deadline.seconds:g} s (ingress.{setting} for each of the {deadline.parts} parts of a tall strip, "
            "at most ingress.document_timeout_s)")


def _replica_lost(deployment: str, exc: BaseException, giving_up: bool) -> None:
    metrics.ingress()["replicas_lost"].inc(tags={"target": deployment})
    log.warning("a %s replica was lost during a call (%s); %s", deployment, type(exc).__name__,
                "giving up" if giving_up else "sending the call again")


def get_and_head(path: str, **route: Any) -> Callable[[F], F]:
    """A route for GET and one for HEAD on ``path``, each with an OpenAPI operationId of its own.

    One route for both gave both methods one id, named after whichever method a set yielded first, so the spec
    changed from run to run and held the id twice (a client generator takes one operation for the other).
    """
    def both(endpoint: F) -> F:
        return api.head(path, **route)(api.get(path, **route)(endpoint))
    return both


def _fingerprint(path: Path) -> str:
    try:
        return f"{path.stem}@{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    except OSError:
        return f"{path.stem}@missing"


@serve.deployment(name="Ingress", graceful_shutdown_timeout_s=SHUTDOWN_TIMEOUT_S)
@serve.ingress(api)
class Ingress:
    def __init__(self, detector: DeploymentHandle, recognizer: DeploymentHandle, config: dict[str, Any],
                 sidecar: DeploymentHandle | None = None, archiver: DeploymentHandle | None = None) -> None:
        self.cfg = AppConfig.model_validate(config)
        cross_origin.configure(self.cfg.ingress.cors_origins)  # for the middleware, which runs outside this instance
        compression.configure(self.cfg.ingress.gzip_level)
        body_limits.configure(self.cfg.ingress.max_upload_bytes, self.cfg.ingress.body_grace_s,
                              self.cfg.ingress.body_min_bytes_per_s)
        client_share.configure(self.cfg.ingress.max_requests_per_client, self.cfg.ingress.trusted_proxies,
                               self.cfg.ingress.retry_after_s)
        self.detector, self.recognizer = detector, recognizer
        self.sidecar, self.archiver = sidecar, archiver
        if sidecar is None:
            log.warning("storage is OFF: OCR results are not being stored (set DATABASE_URL and RABBITMQ_URL)")
        # ids answered lately, with how many lines each answer had: a correction names one of them
        self.recent: collections.OrderedDict[str, int] = collections.OrderedDict()
        self.inflight = 0
        self.document_pages = 0  # pages of ?pages= requests being read at once, beyond each one's first
        self.held_beyond = 0  # places of max_inflight that documents hold beyond one each
        # answers on their way to the sidecar, held until it has them, within a budget of upload bytes
        self.handovers = Handovers(self.cfg.ingress.max_pending_handover_mb * 2**20)
        self.max_inflight = self.cfg.ingress.max_inflight
        self.request_timeout_s = self.cfg.ingress.request_timeout_s
        # decoding and crop cutting hold a core for up to half a second (a 24 MP PNG): not on the event loop,
        # which meanwhile answers health probes and other requests' results
        self.cpu = ThreadPoolExecutor(self.cfg.ingress.decode_threads, thread_name_prefix="ingress-cpu")
        torch.set_num_threads(1)  # its one torch op (`detection.reduce`) runs in those threads, a core each
        # PDF pages are rendered in worker processes, which a page that costs too much cannot take down with it
        self.pdfs = PdfSandbox(self.cfg.ingress.pdf_timeout_s, self.cfg.ingress.pdf_memory_mb,
                               idle=self.cfg.ingress.decode_threads)
        self.models = {"detector": _fingerprint(resolve_weights(self.cfg.detector.weights)),
                       "recognizer": _fingerprint(resolve_weights(self.cfg.recognizer.weights))}
        self.reader = PageReader(self.cfg, detector, recognizer, self._call, self._in_thread, self.pdfs.render,
                                 self.models, self._alone)
        self.stored = StoredImages(self.cfg.ingress, archiver, sidecar, self.recent, self._call, self._in_thread,
                                   self.pdfs)

    async def _in_thread(self, span: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the ingress's CPU threads, traced as ``span`` under the request's own span."""
        def run() -> T:
            thread = threading.current_thread().name
            with telemetry.tracer.start_as_current_span(span, attributes={"thread.name": thread}):
                return fn(*args)

        return await asyncio.get_running_loop().run_in_executor(self.cpu, contextvars.copy_context().run, run)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Admission limits, deadline and a page's parts, changeable without a restart (``user_config``)."""
        self.max_inflight = int(user_config.get("max_inflight", self.cfg.ingress.max_inflight))
        self.reader.crops_per_part = int(user_config.get("crops_per_part", self.cfg.recognizer.crops_per_part))
        self.request_timeout_s = float(user_config.get("request_timeout_s", self.cfg.ingress.request_timeout_s))
        share = int(user_config.get("max_requests_per_client", self.cfg.ingress.max_requests_per_client))
        client_share.configure(share, self.cfg.ingress.trusted_proxies, self.cfg.ingress.retry_after_s)

    @api.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)  # HEAD: uptime checks of the site
    async def page(self, request: Request) -> Response:
        """The web page: every asset is served from here, nothing from a CDN."""
        return site.site_file(site.WEB / "index.html", "text/html", request)

    @api.get("/static/{name}", include_in_schema=False)
    async def static(self, name: str, request: Request) -> Response:
        if name not in site.WEB_FILES:
            return error(404, "not_found", f"no static file {name!r}")
        return site.site_file(site.WEB / name, site.WEB_FILES[name], request)

    @api.get("/static/swagger/{name}", include_in_schema=False)
    async def swagger_static(self, name: str, request: Request) -> Response:
        if name not in site.SWAGGER_FILES:
            return error(404, "not_found", f"no static file {name!r}")
        return site.site_file(site.swagger_dir() / name, site.SWAGGER_FILES[name], request)

    @api.get("/docs", include_in_schema=False)
    async def docs(self) -> HTMLResponse:
        return site.docs_page()

    @api.get("/docs/openapi.json", include_in_schema=False)
    async def docs_spec(self) -> JSONResponse:
        """The spec for the bundled Swagger UI 4, which renders OpenAPI 3.0 documents only (ours is 3.1)."""
        return JSONResponse({**api.openapi(), "openapi": "3.0.3"})

    @get_and_head("/healthz")  # HEAD: what many uptime monitors and load balancers send
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @get_and_head("/readyz", responses={503: {"model": ErrorResponse}})
    async def readyz(self) -> JSONResponse:
        retry = {"Retry-After": str(self.cfg.ingress.retry_after_s)}
        try:
            detector, recognizer = await asyncio.wait_for(
                asyncio.gather(self.detector.stats.remote(), self.recognizer.stats.remote()), timeout=5
            )
            storage = await asyncio.wait_for(self.sidecar.status.remote(), 5) if self.sidecar else None
        except Exception as exc:  # noqa: BLE001 - any failure of a dependency means not ready
            return error(503, "not_ready", f"a deployment is not answering: {type(exc).__name__}", headers=retry)
        if storage and storage["spool_full"]:
            return error(503, "spool_full", "the result spool is full: results would be lost", headers=retry)
        if storage is not None:  # reported, not required: while the database is down results wait in the queues
            storage["database"] = await self._database_state()
        precision = {"detector": detector["precision"], "recognizer": recognizer["precision"]}
        device = {"detector": detector.get("device", "cpu"), "recognizer": recognizer.get("device", "cpu")}
        return JSONResponse({"status": "ready", "models": self.models, "precision": precision, "device": device,
                             "storage": storage or "off"})

    async def _database_state(self) -> str:
        """"up" or "down" as the archiver last found PostgreSQL; "unknown" if the archiver does not answer."""
        if self.archiver is None:
            return "unknown"
        try:
            status = await asyncio.wait_for(self.archiver.status.remote(), 2)
        except Exception:  # noqa: BLE001 - restarting or gone: readiness does not depend on it
            return "unknown"
        return "up" if status["database_up"] else "down"

    @api.post("/api/v1/ocr", response_model=OCRResponse | DocumentResponse, openapi_extra=RAW_UPLOAD_DOC, responses={
        **ERRORS, 200: {"content": {**OTHER_FORMATS, **STREAMED_FORMAT}, "headers": ANSWER_HEADERS,
                     "links": ANSWER_LINKS}})
    async def ocr(  # noqa: ANN201
        self, request: Request, reply: Response,
        image: UploadFile | None = File(None, description=f"{ACCEPTED}; or send the file as the whole body, with an "
                                                         "image's Content-Type, application/pdf or "
                                                         "application/octet-stream"),
        layout: Layout = Query("page", description="'page': find the text, then read it; 'word': the image is one "
                                                   "cropped word (or short line), read it whole at several widths"),
        page: int = Query(1, ge=1, description="which page of a PDF or multi-page TIFF (frame of an animated WebP or "
                                               "PNG) to read, from 1; the answer's `image.pages` says how many there "
                                               "are"),
        pages: str | None = Query(None, max_length=SPEC_MAX_LENGTH, description=f"{SPELLING}: read those pages of "
                                  "a PDF or multi-page TIFF (frames of an animated WebP or PNG) in one request, "
                                  "answered as one document: JSON with each page's answer under `pages` (each stored "
                                  "under its own `request_id`), or one hOCR, ALTO, TSV, PDF or text document of those "
                                  "pages. At most ingress.max_pages (50), else 413 too_many_pages, whose `max_pages` "
                                  "says how many; not with `page` or layout=word"),
        rotate: Rotate = Query("0", description="degrees to turn the image clockwise before reading it (a page "
                                                "scanned sideways: 90 or 270), or 'auto': read as uploaded unless the "
                                                "words are doubtful, then judge the other three turns on their widest "
                                                "lines and read the one that reads most (2-4x the time); boxes stay "
                                                "in the upload's pixels"),
        output: Output = Query("json", alias="format", description="'json': the answer below; 'hocr': the same "
                               "lines and words as hOCR 1.2 (text/html), as Tesseract writes it; 'text': the lines "
                               "only (text/plain), a blank line between blocks of text; 'pdf': a searchable PDF, "
                               "the page as uploaded with the words read laid over it as invisible text "
                               "(application/pdf); 'alto': the lines and words as "
                               "ALTO 4.4 XML (application/xml), the format of library and archive systems; 'tsv': "
                               "Tesseract's TSV table, a row per page, block, paragraph, line and word (what "
                               "pytesseract.image_to_data reads); 'ndjson', with ?pages=: the document's pages "
                               "streamed, a JSON line each as soon as it is read (application/x-ndjson; a `start` "
                               "line, a `page` line per page, an `end` or `error` line). Errors are JSON whatever is "
                               "asked"),
        min_confidence: float | None = Query(
            None, ge=0, le=1, description="keep every word read with at least this mean character confidence, "
            "whether the dictionary knows it or not (0: every reading); by default the service's tuned filter "
            "(ingress.min_word_confidence, 0.75, and 0.92 for letters-only words the dictionary lacks). "
            "'layout=word' is never filtered"),
        preview: int = Query(0, ge=0, le=MAX_PREVIEW_SIDE, description="N > 0: the answer also holds the page as "
                             "the service read it, a JPEG whose long side is at most N pixels, under `preview` (a "
                             "`data:` URL, with its width and height; boxes scale to it by preview.width / "
                             "image.width): for a client that cannot draw the upload itself, such as a browser "
                             "given a PDF, a TIFF or HEIC. Each page of a `?pages=` document has its own. JSON "
                             "answers only (format=json or ndjson); not stored"),
        region: str | None = Query(None, max_length=200, description="x0,y0,x1,y1: read only this part of the page, "
                                   "in the pixels an answer's boxes are in (the upload's upright pixels; a PDF page's "
                                   "as rendered at `image.dpi`); boxes stay in the page's pixels, and the answer's "
                                   "`image.region` says the part read, clipped to the page (less than 8 x 8 pixels "
                                   "of it: 422 region_outside). One page: not with `?pages=`"),
        idempotency_key: str | None = Header(
            None, alias="Idempotency-Key", min_length=1, max_length=request_ids.MAX_KEY_LENGTH,
            description="a string of your choosing, the same for every try of one upload: every try gets the same "
                        "`request_id`, and the upload and its answer are stored once however often it is sent"),
    ):
        request_id = request_ids.request_id(idempotency_key, api_keys.presented(request.headers))
        streamed = output == "ndjson"  # the span then ends with the stream, not with this method
        with telemetry.tracer.start_as_current_span(
            "ocr.request", end_on_exit=not streamed,
            attributes={"http.route": "/api/v1/ocr", "request_id": request_id, "layout": layout, "page": page,
                        "rotate": rotate, **({"pages": pages} if pages else {})}
        ) as span:
            try:
                t0 = time.perf_counter()
                lost = retries.track()
                notes: dict[str, Any] = {}  # what the request's log line should say beyond its answer
                if min_confidence is not None:
                    notes["min_confidence"] = min_confidence
                if output != "json":
                    notes["format"] = output
                if preview:
                    notes["preview"] = preview
                if region is not None:
                    notes["region"] = region
                form = await request.form()  # parsed already, for `image`: no second read (and none of a raw body)
                sent = len(form.getlist("image"))
                content_type = request.headers.get("content-type")
                read: Callable[[int], Awaitable[bytes]] | None = None
                if image is not None:
                    read = image.read
                elif uploads.is_raw(content_type, request.headers.get("content-length"),
                                    "chunked" in request.headers.get("transfer-encoding", "").lower()):
                    notes["upload"] = "body"

                    async def read_body(_limit: int) -> bytes:  # bounded by the body limits middleware already
                        return await request.body()
                    read = read_body
                wanted, refused = self._wanted_pages(pages, "page" in request.query_params, layout, request_id)
                part, refused = self._region(region, wanted, request_id, refused)
                if sent > 1:  # one was read and the rest dropped without a word: a client hoping for all learns so
                    response: dict[str, Any] | Response = error(
                        422, "invalid_request", f"the field 'image' came {sent} times; send one image per request "
                        "(the pages of a PDF or TIFF are one upload: ?pages=all)", request_id)
                elif read is None:
                    response = error(*uploads.missing_image(content_type, form.keys()), request_id)
                elif refused is not None:
                    response = refused
                elif preview and output not in ("json", "ndjson"):
                    response = error(422, "invalid_request", f"preview is part of a JSON answer (format=json or "
                                     f"ndjson), not of format={output}", request_id)
                elif streamed and wanted is None:
                    response = error(422, "invalid_request", "format=ndjson streams the pages of a ?pages= request, "
                                     "each as soon as it is read; one page is answered whole (format=json)", request_id)
                else:
                    def answered(outcome: dict[str, Any] | Response | None) -> None:
                        self._log_answer(request_id, span, t0, outcome, notes, lost, layout, page, output)
                    if streamed:
                        assert wanted is not None
                        response = await self._stream(request_id, read, wanted, rotate, min_confidence, preview,
                                                      notes, answered, span)
                        if isinstance(response, StreamingResponse):
                            return response  # its log line and span end with it
                    else:
                        response = await self._admit(request_id, read, layout, page, wanted, rotate, min_confidence,
                                                     preview, output, notes, region=part)
                self._log_answer(request_id, span, t0, response, notes, lost, layout, page, output)
                if streamed:
                    span.end()
                if not isinstance(response, dict):  # an error: it names its request id itself
                    return response
                named = {request_ids.HEADER: request_id,
                         "Server-Timing": documents.server_timing(response["timings"])}
                if output != "json":
                    name = image.filename if image is not None else None  # the layout formats name the file read
                    content, media_type, headers = documents.formatted(response, output, name)
                    return Response(content, media_type=media_type, headers={**named, **headers})
                reply.headers.update(named)
                return response
            except BaseException:
                if streamed:  # no stream took the span over: it ends here
                    span.end()
                raise

    def _log_answer(self, request_id: str, span: trace.Span, t0: float, response: dict[str, Any] | Response | None,
                    notes: dict[str, Any], lost: dict[str, int], layout: Layout, page: int, output: Output) -> None:
        """The request's metric, log line and span status; ``response`` None: its client left a stream unfinished."""
        if response is None:
            status, code = 499, "client_closed"  # nginx's number for it: no status went out to say so
        elif isinstance(response, Response):
            status, code = response.status_code, json.loads(bytes(response.body))["error"]["code"]
        else:
            status, code = 200, "ok"
        span.set_attribute("http.status_code", status)
        metrics.ingress()["requests"].inc(tags={"status": str(status), "code": code, "layout": layout,
                                                "format": output})
        record: dict[str, Any] = {
            "event": "ocr", "request_id": request_id, "trace_id": telemetry.trace_id(span), "status": status,
            "code": code, "total_ms": round((time.perf_counter() - t0) * 1e3, 1)}
        record.update(notes)
        if lost:  # calls sent again because their replica was lost
            record["replicas_lost"] = lost
            span.set_attribute("replicas_lost", sum(lost.values()))
        if isinstance(response, dict):
            answered = documents.pages_of(response)
            several = "pages" in response  # ?pages=: a list of the pages read, and of their turns
            first = answered[0]["image"]
            record.update(timings={k: round(v, 1) for k, v in response["timings"].items()},
                          lines=sum(len(p["lines"]) for p in answered), width=first["width"],
                          height=first["height"], pages=first["pages"],
                          page=[p["image"]["page"] for p in answered] if several else page,
                          rotation=[p["image"]["rotation"] for p in answered] if several else first["rotation"])
            if self.cfg.ingress.log_text:
                record["text"] = response["text"]
        request_log.info(json.dumps(record))

    async def _stream(self, request_id: str, read: Callable[[int], Awaitable[bytes]], wanted: list[int],
                      rotate: Rotate, min_confidence: float | None, preview: int, notes: dict[str, Any],
                      answered: Callable[[dict[str, Any] | Response | None], None],
                      span: trace.Span) -> Response:
        """``?pages=&format=ndjson``: each page as soon as it and those before it are read, a JSON line each.

        A long document otherwise sends nothing until its last page is read: no progress to show, and a proxy's idle
        timeout may cut it off. Until its first page is read it is answered as JSON is, errors with their status
        (the page count and limits are known only then); after, an error is the stream's last line. What is stored
        is as for JSON: every page once all were read, none otherwise.
        """
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        work = asyncio.ensure_future(self._admit(request_id, read, "page", 1, wanted, rotate, min_confidence,
                                                 preview, "ndjson", notes, events))
        work.add_done_callback(lambda _: events.put_nowait(("done", None)))
        try:
            kind, start = await events.get()
        except BaseException:  # cancelled: its client left
            work.cancel()
            raise
        if kind == "done":  # refused or failed before its first page: answered as any other error
            refusal = work.result()
            assert isinstance(refusal, Response), "a document is answered after its first page only"
            return refusal
        numbers = start["start"]["pages"]
        # what the stream ended with (None: its client left first), and whether its end was accounted for
        end: dict[str, Any] = {"outcome": None, "finished": False}

        def finish(*_: object) -> None:
            """Once: at the stream's end, or at its request's where that comes first.

            A client gone before the first line was sent: the stream's own ``finally`` never runs then.
            """
            if end["finished"]:
                return
            end["finished"] = True
            work.cancel()  # where its client left: the pages still to come are not read, nor any stored
            answered(end["outcome"])
            span.end()

        handling = asyncio.current_task()  # runs the route, then sends its answer
        if handling is not None:
            handling.add_done_callback(finish)

        async def lines() -> AsyncIterator[bytes]:
            try:
                yield documents.ndjson_line(start)
                read_pages: dict[int, dict[str, Any]] = {}
                sent = 0
                while (event := await events.get())[0] != "done":
                    read_pages[event[1]["image"]["page"]] = event[1]
                    while sent < len(numbers) and numbers[sent] in read_pages:
                        yield documents.ndjson_line({"page": read_pages.pop(numbers[sent])})
                        sent += 1
                outcome = end["outcome"] = work.result()
                if isinstance(outcome, dict):
                    yield documents.ndjson_line(documents.stream_end(outcome))
                else:  # the status and Retry-After it would have had as an answer of its own
                    wait = outcome.headers.get("retry-after")
                    yield documents.ndjson_line({**json.loads(bytes(outcome.body)), "status": outcome.status_code,
                                                 **({"retry_after_s": int(wait)} if wait else {})})
            finally:
                finish()

        headers = {"X-Accel-Buffering": "no", "Cache-Control": "no-store",  # nginx: pass each line on as it comes
                   request_ids.HEADER: request_id,
                   documents.PAGE_IDS_HEADER: ", ".join(request_ids.page_id(request_id, n) for n in numbers)}
        return StreamingResponse(lines(), media_type=documents.NDJSON_MEDIA_TYPE, headers=headers)

    @staticmethod
    def _region(spec: str | None, wanted: list[int] | None, request_id: str,
                refused: JSONResponse | None) -> tuple[regions.Region | None, JSONResponse | None]:
        """``?region=`` as whole pixels, None without it; or the error to answer (``refused``: one already)."""
        if spec is None or refused is not None:
            return None, refused
        if wanted is not None:
            return None, error(422, "invalid_request", "region is a part of one page: not with ?pages= (read the "
                               "pages one by one with ?page=N&region=...)", request_id)
        try:
            return regions.parse_region(spec), None
        except ValueError as exc:
            return None, error(422, "invalid_request", str(exc), request_id)

    def _wanted_pages(self, pages: str | None, page_given: bool, layout: Layout,
                      request_id: str) -> tuple[list[int] | None, JSONResponse | None]:
        """``?pages=`` as page numbers ([]: all), None without it; or the error to answer."""
        if pages is None:
            return None, None
        if page_given:
            return None, error(422, "invalid_request", "send ?page=N (one page) or ?pages= (several), not both",
                               request_id)
        if layout == "word":
            return None, error(422, "invalid_request", "?pages= reads pages of a document; layout=word reads one "
                               "cropped word, one image per request", request_id)
        try:
            return parse_pages(pages, self.cfg.ingress.max_pages), None
        except TooManyPages as exc:
            return None, error(exc.status, exc.code, str(exc), request_id, max_pages=exc.limit)
        except ValueError as exc:
            return None, error(422, "invalid_request", str(exc), request_id)

    async def _admit(self, request_id: str, read: Callable[[int], Awaitable[bytes]], layout: Layout, page: int,
                     wanted: list[int] | None, rotate: Rotate, min_confidence: float | None, preview: int,
                     output: Output, notes: dict[str, Any],
                     events: asyncio.Queue[tuple[str, Any]] | None = None,
                     region: regions.Region | None = None) -> dict[str, Any] | JSONResponse:
        """One page (``wanted`` None) within ``request_timeout_s``, or the pages ``wanted`` ([]: all) within it each.

        A document (``wanted``) has ``document_timeout_s`` for all of its pages; ``events`` hears of each as it is
        read (`_document`).
        """
        limits = self.cfg.ingress
        busy = {"Retry-After": str(limits.retry_after_s)}
        # a document reads pages_at_once pages at a time: it holds as many places (all of them, where fewer)
        holds = 1 if wanted is None else min(limits.pages_at_once, len(wanted) or limits.pages_at_once,
                                             self.max_inflight)
        if self.inflight + self.held_beyond + holds > self.max_inflight:
            return error(503, "overloaded", "the service is at capacity; retry shortly", request_id, busy)
        self.inflight += 1
        self.held_beyond += holds - 1
        if wanted is None:
            work = self._ocr(request_id, read, layout, page, rotate, min_confidence, preview, output, notes, region)
            deadline, setting = self.request_timeout_s, "request_timeout_s"
        else:
            work = self._document(request_id, read, wanted, rotate, min_confidence, preview, output, notes,
                                  events)
            deadline, setting = limits.document_timeout_s, "document_timeout_s"
        try:
            async with deadlines.within(deadline, limits.document_timeout_s) as allowed:
                return await work
        except TimeoutError as exc:  # a page of a document says which, and its own deadline
            late = exc.args[0] if exc.args else f"no answer within {_allowed(allowed, setting)}"
            return error(504, "timeout", f"{late}; the models may be overloaded or restarting: retry later",
                         request_id, busy)
        except TooManyPages as exc:  # how many one request reads: a client asks for the rest in parts
            return error(exc.status, exc.code, str(exc), request_id, max_pages=exc.limit)
        except ImageError as exc:
            return error(exc.status, exc.code, str(exc), request_id)
        except BackPressureError:
            return error(503, "overloaded", "the models' queues are full; retry shortly", request_id, busy)
        except retries.ReplicaLost as exc:
            return error(503, "model_unavailable", f"{exc}; retry shortly", request_id, busy)
        except Exception:  # a fault in our code or a model's: answered with the id its log line carries
            log.exception("request %s failed", request_id)
            return error(500, "internal_error", errors.INTERNAL_ERROR, request_id)
        finally:
            self.inflight -= 1
            self.held_beyond -= holds - 1

    async def _ocr(self, request_id: str, read: Callable[[int], Awaitable[bytes]], layout: Layout, page: int,
                   rotate: Rotate, min_confidence: float | None, preview: int, output: Output,
                   notes: dict[str, Any], region: regions.Region | None) -> dict[str, Any]:
        t0 = time.perf_counter()
        data = await read(self.cfg.ingress.max_upload_bytes + 1)
        body, decoded = await self.reader.read(request_id, data, t0, layout, page, rotate, min_confidence, notes,
                                               region)
        if self.sidecar is not None:
            self._store(data, MEDIA_TYPES[decoded.format], [body], notes)
        if preview:
            body["preview"] = await self._in_thread("preview", previews.page_preview, decoded.pixels, preview)
        if output == "pdf":  # after the handover took its copy: the PDF is the answer's, not stored
            if decoded.format == "PDF":  # its own page, words laid over it: parsed again, so in the sandbox
                body["pdf"] = await self._in_thread("pdf", self.pdfs.overlay, data, [body])
            else:
                body["pdf"] = await self._in_thread("pdf", searchable_pdf.to_pdf, body, data, decoded.pixels)
        return body

    async def _document(self, request_id: str, read: Callable[[int], Awaitable[bytes]], wanted: list[int],
                        rotate: Rotate, min_confidence: float | None, preview: int, output: Output,
                        notes: dict[str, Any],
                        events: asyncio.Queue[tuple[str, Any]] | None = None) -> dict[str, Any]:
        """The pages ``wanted`` of one upload ([]: every page), read ``ingress.pages_at_once`` at a time.

        The first is read alone, since only it says how many pages there are. Nothing is stored unless every page
        was read (an error names the page), then each page under its own id (`request_ids.page_id`), with the file.
        ``events``, where given, gets ``("start", documents.stream_start(...))`` once the first page says which pages
        come, then ``("page", answer)`` for each page as it is read, the first included, in the order they are read.
        """
        limits = self.cfg.ingress
        t0 = time.perf_counter()
        data = await read(limits.max_upload_bytes + 1)
        pictures: dict[int, searchable_pdf.PageImage] = {}

        async def one(n: int) -> dict[str, Any]:
            t, page_id = time.perf_counter(), request_ids.page_id(request_id, n)
            try:
                with telemetry.tracer.start_as_current_span("ocr.page", attributes={"page": n, "request_id": page_id}):
                    async with deadlines.within(self.request_timeout_s, limits.document_timeout_s) as allowed:
                        body, decoded = await self.reader.read(page_id, data, t, "page", n, rotate, min_confidence,
                                                               notes)
            except PageOutOfRange:  # names the page already
                raise
            except ImageError as exc:
                raise type(exc)(f"page {n}: {exc}") from None
            except TimeoutError:
                raise TimeoutError(f"page {n}: no answer within {_allowed(allowed, 'request_timeout_s')}") from None
            if output == "pdf" and decoded.format != "PDF":  # the picture now: the page's pixels are not kept
                pictures[n] = await self._in_thread("pdf", searchable_pdf.page_image, data, decoded.format,
                                                 decoded.pixels, decoded.width, decoded.height)
            if preview:
                body["preview"] = await self._in_thread("preview", previews.page_preview, decoded.pixels, preview)
            return body

        first = await one(wanted[0] if wanted else 1)
        held = first["image"]["pages"]
        numbers = wanted or list(range(1, held + 1))
        if numbers[-1] > held:
            raise PageOutOfRange(f"page {numbers[-1]} was asked for; the image has {held} page"
                                 f"{'s' if held > 1 else ''}")
        if len(numbers) > limits.max_pages:
            raise TooManyPages(f"the upload holds {held} pages; one request reads at most {limits.max_pages} "
                               f"(ingress.max_pages): ask for them in parts, ?pages=1-{limits.max_pages} and so on",
                               limits.max_pages)
        if events is not None:
            events.put_nowait(("start", documents.stream_start(request_id, numbers, held)))
            events.put_nowait(("page", first))
        gate = asyncio.Semaphore(limits.pages_at_once)

        async def gated(n: int) -> dict[str, Any]:
            async with gate:
                self.document_pages += 1
                try:
                    body = await one(n)
                finally:
                    self.document_pages -= 1
            if events is not None:
                events.put_nowait(("page", body))
            return body

        rest = [asyncio.ensure_future(gated(n)) for n in numbers[1:]]
        try:
            bodies = [first, *await asyncio.gather(*rest)]
        except BaseException:  # one page failed: the others stop
            for task in rest:
                task.cancel()
            raise
        answer = documents.document(request_id, bodies, self.models, (time.perf_counter() - t0) * 1e3)
        if self.sidecar is not None:  # the upload once, for all its pages
            self._store(data, MEDIA_TYPES[first["image"]["format"]], bodies, notes)
        if output == "pdf":
            if first["image"]["format"] == "PDF":
                answer["pdf"] = await self._in_thread("pdf", self.pdfs.overlay, data, bodies)
            else:
                answer["pdf"] = await self._in_thread("pdf", searchable_pdf.document, [
                    (body, pictures[body["image"]["page"]], searchable_pdf.resolution(data, body)) for body in bodies],
                    request_id)
        return answer

    def _store(self, data: bytes, media_type: str, bodies: list[dict[str, Any]], notes: dict[str, Any]) -> None:
        """Hand the answers read from one upload (a page, or a document's pages) to the sidecar off the request path.

        The answer never waits for storage. Past ``ingress.max_pending_handover_mb`` of uploads still waiting for the
        sidecar, it is not stored: noted in the request's log line and counted.
        """
        created = datetime.now(UTC).isoformat()
        stored = documents.to_store(bodies, created)
        request_id = _ids_of(stored)
        if self.handovers.start(data, lambda: self._hand_over(request_id, data, media_type, stored),
                                _outliving_the_request()):
            for body in bodies:
                self._remember(body["request_id"], len(body["lines"]))
            return
        notes["stored"] = False
        metrics.ingress()["not_stored"].inc(tags={"reason": "handover_backlog"})
        log.error("the result of request %s is not stored: %d answers (%.1f MB) are still waiting for the sidecar "
                  "(ingress.max_pending_handover_mb)", request_id, len(self.handovers.tasks),
                  self.handovers.pending_bytes / 2**20)

    async def __del__(self) -> None:
        """On a graceful shutdown (a redeploy, a scale-down), hand over the answers already given before exiting.

        Serve awaits this after the last request has been answered; without it, an answer whose handover was still
        waiting (for a sidecar replica being restarted, say) was dropped with the replica's event loop.
        """
        await self.handovers.drain(HANDOVER_DRAIN_S)
        self.pdfs.close()

    async def _hand_over(self, request_id: str, data: bytes, media_type: str, stored: list[dict[str, Any]]) -> None:
        """Give finished answers to the sidecar, again if its replica was lost before it had spooled them.

        A handover made twice is spooled twice, and the archiver stores a request once whatever arrives.
        ``request_id`` names them in log lines.
        """
        sidecar = self.sidecar
        if sidecar is None:  # storage off: `_store` is never called then
            return
        try:
            spooled = await retries.call_with_retries(
                lambda: sidecar.forward.remote(stored[0]["request_id"], data, media_type, *_first_and_more(stored)),
                "Sidecar", self.cfg.ingress.replica_retries, _replica_lost, outlive_cancellation=True)
        except asyncio.CancelledError:  # not an Exception: say so, or the answer goes without a word
            log.error("the result of request %s is lost: its handover to the sidecar was cancelled", request_id)
            raise
        except retries.ReplicaLost as exc:
            log.error("the result of request %s is lost: %s", request_id, exc)
            return
        except Exception:  # in a background task: logged here, or nowhere
            log.exception("the result of request %s is lost: the sidecar failed to take it", request_id)
            return
        if not spooled:
            log.error("the result of request %s is lost: the sidecar's spool is full", request_id)

    async def _call(self, deployment: str, call: Callable[[], Any]) -> Any:
        """A model call, sent again if the replica serving it is lost (`retries`)."""
        return await retries.call_with_retries(call, deployment, self.cfg.ingress.replica_retries, _replica_lost)

    def _alone(self) -> bool:
        """One page on its way through: its parts may be read on both cores (the detector's is idle)."""
        return self.inflight == 1 and self.document_pages < 2

    def _remember(self, request_id: str, lines: int) -> None:
        self.recent[request_id] = lines
        while len(self.recent) > 10_000:
            self.recent.popitem(last=False)

    @get_and_head("/api/v1/images/{image_id}", response_class=Response, responses={
        200: {"content": {"image/*": {}, "application/pdf": {}}},
        304: {"description": "Not Modified: If-None-Match names the stored file's tag"}, 400: {"model": ErrorResponse},
        404: {"model": ErrorResponse}, 501: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
    async def image(self, request: Request, image_id: ImageId, if_none_match: str | None = Header(None)) -> Response:
        """The stored upload, with its SHA-256 as ETag.

        A cached copy is checked each time (a deleted image is not shown from a cache), and one still current costs
        a database read, not the file (304). ``HEAD`` answers the headers alone: whether it is stored, its type,
        length and tag, without reading the file.
        """
        return await self.stored.image(image_id, if_none_match, head=request.method == "HEAD")

    @get_and_head("/api/v1/images/{image_id}/data", responses={
        200: {"content": {"application/json": {}, **OTHER_FORMATS}}, 400: {"model": ErrorResponse},
        404: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 501: {"model": ErrorResponse},
        503: {"model": ErrorResponse}})
    async def image_data(self, image_id: ImageId, output: StoredOutput = Query(
            "json", alias="format", description="'hocr': the stored lines and words as hOCR, each corrected line one "
            "word of its text; 'text': the lines as corrected (text/plain), a "
            "blank line between blocks: "
            "each line as its latest correction says, or the latest whole-image correction where one was sent; "
            "'pdf': the stored image as a searchable PDF, each corrected line's text laid over the line; 'alto': "
            "the lines and words as ALTO 4.4 XML, each corrected line one String of its text marked CS=\"true\"; "
            "'tsv': the lines and words as Tesseract's TSV table, each corrected line one word of its text")
    ) -> Response:
        """What is stored of an answer: its lines and words, with the corrections sent since.

        The ``request_id`` of a ``?pages=`` request gives the pages it stored, as one document.
        """
        return await self.stored.data(image_id, output)

    @api.delete("/api/v1/images/{image_id}", status_code=204, response_class=Response,
                responses={400: {"model": ErrorResponse}, 501: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
    async def forget(self, image_id: ImageId) -> Response:
        """Delete a stored image with its results and corrections now, before retention would.

        Answered 204 whether or not it is stored yet: an answer still on its way to the database is dropped when it
        arrives, so a client may delete an image as soon as it has its answer. The id of a ``?pages=`` request
        deletes every page it stored (up to ``ingress.max_pages``), each under its own id.
        """
        return await self.stored.forget(image_id)

    @api.post("/api/v1/images/{image_id}/corrections", status_code=202, response_model=CorrectionOut,
              responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
                        422: {"model": ErrorResponse}, 501: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
    async def correct(self, image_id: ImageId, correction: CorrectionIn = Body(...)) -> JSONResponse:
        """A line's text, or the whole image's; ``page`` names a page of a document by the document's id."""
        return await self.stored.correct(image_id, correction)
