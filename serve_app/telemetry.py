"""Tracing, from the HTTP proxy to the SQL statements, and structured request logs.

Ray Serve 2.60 traces the proxy and every deployment call itself when ``RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH``
names `span_processors` and the environment of ``ray start`` carries it; its spans are the OpenTelemetry current
context inside a replica, so the spans made here (model work, publish, consume, SQL) become their children.
Across RabbitMQ the context rides in the W3C ``traceparent`` message header.

Exporter choice (environment, read in every process): ``OCR_TRACE_EXPORTER`` = ``otlp``
(``OTEL_EXPORTER_OTLP_ENDPOINT``; Jaeger and Tempo accept it), ``console``, ``file`` (JSON lines to
``OCR_TRACE_FILE``; tests use it), or ``none``.
Service name and version come from ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from serve_app import __version__

_PROPAGATOR = TraceContextTextMapPropagator()
tracer = trace.get_tracer("show-off-ocr", __version__)


class JsonLinesExporter(SpanExporter):
    """Appends one JSON object per finished span to a file shared by all processes (tests, debugging)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: list[ReadableSpan]) -> SpanExportResult:  # type: ignore[override]
        lines = []
        for s in spans:
            ctx, parent = s.get_span_context(), s.parent
            if ctx is None:  # only a span never started has none; an exporter is given ended spans
                continue
            lines.append(json.dumps({
                "name": s.name, "trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}",
                "parent_id": f"{parent.span_id:016x}" if parent else None, "pid": os.getpid(),
                "attributes": dict(s.attributes or {}), "start": s.start_time, "end": s.end_time,
                "service": s.resource.attributes.get("service.name"),
            }, default=str))
        with self._lock, open(self.path, "a") as f:
            f.write("\n".join(lines) + "\n")
        return SpanExportResult.SUCCESS


def span_processors() -> list[SpanProcessor]:
    """For ``RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH=serve_app.telemetry:span_processors``."""
    kind = os.environ.get("OCR_TRACE_EXPORTER", "otlp")
    if kind == "none":
        return []
    if kind == "console":
        return [BatchSpanProcessor(ConsoleSpanExporter())]
    if kind == "file":
        return [SimpleSpanProcessor(JsonLinesExporter(os.environ.get("OCR_TRACE_FILE", "spans.jsonl")))]
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return [BatchSpanProcessor(OTLPSpanExporter())]  # endpoint from OTEL_EXPORTER_OTLP_ENDPOINT
    raise ValueError(f"unknown OCR_TRACE_EXPORTER '{kind}': choose otlp, console, file or none")


def inject(headers: MutableMapping[str, Any]) -> None:
    """Put the current trace context (``traceparent``) into message headers."""
    _PROPAGATOR.inject(headers)


def extract(headers: Mapping[str, Any]) -> otel_context.Context:
    return _PROPAGATOR.extract({k: str(v) for k, v in headers.items()})


@contextlib.contextmanager
def span_from(headers: Mapping[str, Any], name: str, kind: trace.SpanKind = trace.SpanKind.CONSUMER,
              **attributes: Any) -> Iterator[trace.Span]:
    """A span whose parent is the context carried in ``headers`` (a message's), made current while it runs."""
    token = otel_context.attach(extract(headers))
    try:
        with tracer.start_as_current_span(name, kind=kind, attributes=attributes) as s:
            yield s
    finally:
        otel_context.detach(token)


def trace_id(span: trace.Span | None = None) -> str | None:
    """The trace of ``span`` (by default the current one), as its log lines name it."""
    ctx = (span or trace.get_current_span()).get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None
