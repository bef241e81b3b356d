"""The ingress's JSON errors: one body for every refusal, ours or Starlette's, each naming a request id.

The middlewares' refusals are module functions, not closures: Serve ships the middleware list to the replica, and a
module function goes by name, so the replica calls its own (with its own metrics).
"""

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from deployments import body_limits, metrics, request_ids, uploads
from serve_app.schemas import ErrorResponse

log = logging.getLogger("ray.serve")

INTERNAL_ERROR = "the service failed on this request; it has been logged under its request_id"
#: Codes for the refusals Starlette and FastAPI raise themselves. A 400 among them is a body that does not parse as
#: its Content-Type says (multipart without its boundary, broken part headers). ``http_error`` is what our client
#: calls an answer that is not ours (a proxy's), so only what is left over gets it.
HTTP_CODES = {400: "malformed_request", 404: "not_found", 405: "method_not_allowed"}
#: The methods a 405's ``Allow`` may name.
METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def error(status: int, code: str, message: str, request_id: str | None = None,
          headers: dict[str, str] | None = None, **detail: Any) -> JSONResponse:
    """A JSON error; ``detail``: fields of `ErrorDetail` beyond code and message (``max_pages``).

    Every error has a request id to report: the request's, or a fresh one where it was refused before it had one
    (its query, a route or method that does not exist, a missing key).
    """
    request_id = request_id or str(uuid.uuid4())
    body = ErrorResponse.model_validate({"error": {"code": code, "message": message, **detail},
                                         "request_id": request_id})
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status,
                        headers={request_ids.HEADER: request_id, **(headers or {})})


def internal_error(exc: BaseException) -> JSONResponse:
    """A fault in our code, answered as our JSON with the id its log line carries."""
    request_id = str(uuid.uuid4())
    log.error("request %s failed", request_id, exc_info=exc)
    return error(500, "internal_error", INTERNAL_ERROR, request_id)


def _count_refusal(status: int, code: str) -> None:
    metrics.ingress()["requests"].inc(tags={"status": str(status), "code": code, "layout": "none", "format": "none"})


def refuse_body(path: str, status: int, code: str, message: str) -> JSONResponse:
    """The 413 for a body past its route's limit, declared or counted as it came, or the 408 for one that stalled."""
    if path == body_limits.UPLOAD_ROUTE:
        _count_refusal(status, code)
    return error(status, code, message, str(uuid.uuid4()), {"Connection": "close"})


def refuse_key() -> JSONResponse:
    """The 401 for an ``/api/`` request without one of the service's keys, before its upload is read or admitted."""
    _count_refusal(401, "unauthorized")
    return error(401, "unauthorized", "this API needs a key: send 'Authorization: Bearer <key>' or "
                 "'X-API-Key: <key>'", str(uuid.uuid4()), {"WWW-Authenticate": "Bearer"})


def refuse_share(message: str, retry_after_s: int) -> JSONResponse:
    """The 429 for a client past its share of the replica's requests, answered before its body is read."""
    _count_refusal(429, "too_many_requests")
    return error(429, "too_many_requests", message, str(uuid.uuid4()), {"Retry-After": str(retry_after_s)})


async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    if any(tuple(e["loc"]) == ("body", "image") and e.get("type") == "value_error" for e in exc.errors()):
        return error(422, "invalid_request", uploads.TEXT_FIELD)  # not "Expected UploadFile, received: <class 'str'>"
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    missing = any(e.get("type") == "missing" for e in exc.errors())
    return error(422, "missing_field" if missing else "invalid_request", problems or "invalid request")


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    content_type = request.headers.get("content-type")
    if (exc.status_code == 400 and body_limits.route_path(request.scope) == body_limits.UPLOAD_ROUTE
            and body_limits.media_type(content_type) == uploads.FORM):  # an upload sent as curl --data sends it
        return error(*uploads.missing_image(content_type, ()))
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    return error(exc.status_code, HTTP_CODES.get(exc.status_code, "http_error"), str(exc.detail), headers=headers)


def allowed_methods(request: Request) -> str:
    """Every method the request's path takes, for a 405's ``Allow`` (RFC 9110: the resource's, not one route's).

    Starlette answers with the methods of the first route whose path matches, so a ``PUT`` to a stored image said
    ``Allow: GET``, though it is deleted by ``DELETE``.
    """
    methods = {m for m in METHODS if any(route.matches({**request.scope, "method": m})[0] == Match.FULL
                                         for route in request.app.routes)}  # routers nest: each is asked whole
    return ", ".join(sorted(methods))


async def _internal(_: Request, exc: Exception) -> JSONResponse:
    """The last resort, for a fault in a middleware itself."""
    return internal_error(exc)


def install(api: FastAPI) -> None:
    """Answer invalid requests, Starlette's own refusals and faults outside a route as our JSON errors."""
    api.exception_handler(RequestValidationError)(_invalid)
    api.exception_handler(StarletteHTTPException)(_http)
    api.exception_handler(Exception)(_internal)
