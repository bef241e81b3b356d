"""The answer to a request, in the format it asks for: one page's, or a document of the pages it read (``?pages=``).

A document is the pages' own answers in order, each as one ``?page=N`` request gives it, so that every format
writer takes the pages of one upload as it already took the client's (`serve_app.client --pages all`).
"""

from __future__ import annotations

import json
from typing import Any

from serve_app import alto, hocr, searchable_pdf, tsv
from serve_app.layout import plain_text

#: Between pages of plain text, as Tesseract's ``txt`` output ends each page.
PAGE_BREAK = "\f"
#: A document's page ids, in page order, on every format's answer (JSON has them in its body too).
PAGE_IDS_HEADER = "X-Page-Request-Ids"
STAGES = ("decode_ms", "detect_ms", "recognize_ms")
#: ``?pages=&format=ndjson``: the document streamed, one JSON object a line, each line under one key: ``start``
#: (which pages come), ``page`` (one page's answer, in page order, as soon as it and those before it are read),
#: ``end`` (the document's answer without its pages), or ``error`` (the error body, with the ``status`` it has).
NDJSON_MEDIA_TYPE = "application/x-ndjson"


def server_timing(timings: dict[str, float]) -> str:
    """An answer's ``timings`` as a ``Server-Timing`` header (W3C Server Timing).

    Browsers' developer tools show it beside the request, and it is there for answers that are not JSON:
    ``decode;dur=5.2, detect;dur=392.6, recognize;dur=216.7, total;dur=622.9``.
    """
    return ", ".join(f"{name.removesuffix('_ms')};dur={ms:.1f}" for name, ms in timings.items())


def pages_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The pages an answer holds: a document's, or the one page answered."""
    return answer["pages"] if "pages" in answer else [answer]


def document(request_id: str, pages: list[dict[str, Any]], models: dict[str, str],
             total_ms: float) -> dict[str, Any]:
    """The JSON answer to ``?pages=`` (`serve_app.schemas.DocumentResponse`); ``pages`` in page order."""
    timings = {stage: sum(p["timings"][stage] for p in pages) for stage in STAGES}
    return {"request_id": request_id, "pages": pages, "text": PAGE_BREAK.join(p["text"] for p in pages),
            "timings": {**timings, "total_ms": total_ms}, "models": models}


def to_store(pages: list[dict[str, Any]], created_at: str) -> list[dict[str, Any]]:
    """The pages' answers as stored and forwarded (``imageDataQueue``): without the ``preview`` a client asked for.

    A preview is a picture (270 kB for a 200 dpi page at 2048 px) made again whenever asked; each page a copy, so
    that the answer still going out keeps its own.
    """
    return [{**{k: v for k, v in page.items() if k != "preview"}, "created_at": created_at} for page in pages]


def ndjson_line(body: dict[str, Any]) -> bytes:
    """One line of a streamed document, encoded as the JSON answers are (UTF-8, no NaN)."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode() + b"\n"


def stream_start(request_id: str, numbers: list[int], held: int) -> dict[str, Any]:
    """The first line of a streamed document: the pages that will come, in order, of the ``held`` the upload holds."""
    return {"start": {"request_id": request_id, "pages": numbers, "held": held}}


def stream_end(answer: dict[str, Any]) -> dict[str, Any]:
    """The last line of a streamed document: its answer (`document`) less the pages, sent already."""
    return {"end": {key: value for key, value in answer.items() if key != "pages"}}


def page_text(answer: dict[str, Any]) -> str:
    """One page's lines, a blank line between blocks of text (``?format=text``)."""
    lines = answer["lines"]
    return plain_text([ln["text"] for ln in lines], [ln.get("block", 0) for ln in lines])


def pages_text(pages: list[dict[str, Any]]) -> str:
    """Several pages' text, each page ended by a form feed (``?pages=&format=text``, the client's ``--text``)."""
    return "".join(page_text(p) + PAGE_BREAK for p in pages)


def formatted(answer: dict[str, Any], output: str, image_name: str | None) -> tuple[bytes | str, str, dict[str, str]]:
    """The body, media type and headers of ``answer`` as ``?format=output`` asks (anything but JSON).

    A searchable PDF was made with the answer (it needs the upload): it is taken out of it here.
    """
    pages = pages_of(answer)
    ids = {PAGE_IDS_HEADER: ", ".join(p["request_id"] for p in pages)} if pages[0] is not answer else {}
    if output == "hocr":
        return hocr.document(pages, title=answer["request_id"], image_name=image_name), hocr.MEDIA_TYPE, ids
    if output == "pdf":
        return answer.pop("pdf"), searchable_pdf.MEDIA_TYPE, {
            "Content-Disposition": f'inline; filename="{answer["request_id"]}.pdf"', **ids}
    if output == "alto":
        return alto.document(pages, image_name), alto.MEDIA_TYPE, ids
    if output == "tsv":
        return tsv.document(pages), tsv.MEDIA_TYPE, ids
    if output == "text":
        text = page_text(answer) if pages[0] is answer else pages_text(pages)
        return text, "text/plain", ids
    raise ValueError(f"no format {output!r}")
