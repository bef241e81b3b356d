"""What the OCR API's OpenAPI spec says beyond FastAPI's own: its query types, other formats, headers, stream lines.

No ``from __future__ import annotations``: the ingress's routes take these types, and FastAPI must see real ones.
"""

from typing import Annotated, Any, Literal

from fastapi import Path

from deployments import request_ids, uploads
from serve_app import alto, documents, searchable_pdf
from serve_app.schemas import DocumentEnd, DocumentStart, ErrorResponse

#: What an uploaded image holds: a photo or page to search for text, or one cropped word.
Layout = Literal["page", "word"]
#: How the answer is written: our JSON, hOCR for tools that read Tesseract's, the text alone, a searchable PDF,
#: ALTO for library and archive systems, or Tesseract's TSV table for data pipelines.
StoredOutput = Literal["json", "hocr", "text", "pdf", "alto", "tsv"]
#: The same for an upload's answer, and for a document's: its pages streamed as they are read (``ndjson``).
Output = Literal["json", "hocr", "text", "pdf", "alto", "tsv", "ndjson"]
#: Degrees clockwise to turn the upload before reading it, or "auto": the service finds the turn that reads.
Rotate = Literal["0", "90", "180", "270", "auto"]

#: A stored image's id, its answer's ``request_id``. Declared a UUID, which it must be (else 400 ``invalid_id``); not
#: typed as one, so that the 400 names the id sent, as it always did, rather than a validation 422.
ImageId = Annotated[str, Path(description="the `request_id` an answer named (a UUID)", json_schema_extra={
    "format": "uuid"})]

#: The errors an OCR request may be answered with.
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (400, 401, 408, 413, 415, 422, 429, 503, 504)
}
#: The OCR route takes the file as its whole body too (`uploads`); FastAPI documents only the multipart form.
RAW_UPLOAD_DOC = {"requestBody": {"required": True, "content": {
    kind: {"schema": {"type": "string", "format": "binary"}}
    for kind in ("image/*", *sorted(uploads.RAW_TYPES))}}}


def stream_line_schema() -> dict[str, Any]:
    """What each line of a streamed document (``?pages=&format=ndjson``) is, for the OpenAPI spec."""
    def model(cls: type[DocumentStart | DocumentEnd]) -> dict[str, Any]:  # its own refs: components of the spec
        schema = cls.model_json_schema(ref_template="#/components/schemas/{model}")
        schema.pop("$defs", None)
        return schema

    def under(key: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "required": [key], "properties": {key: schema}}

    return {"description": "?pages=...&format=ndjson: a JSON object a line, each under one key: `start`, then "
                           "`page` for each page in order, then `end`; where the document fails after its first page, "
                           "the error body with its `status` is the last line instead",
            "oneOf": [under("start", model(DocumentStart)), under("page", {"$ref": "#/components/schemas/OCRResponse"}),
                      under("end", model(DocumentEnd)),
                      {"allOf": [{"$ref": "#/components/schemas/ErrorResponse"},
                                 {"type": "object", "required": ["status"],
                                  "properties": {"status": {"type": "integer"}, "retry_after_s": {
                                      "type": "integer", "description": "where the error is worth another try: "
                                      "after this many seconds (an answer's Retry-After)"}}}]}]}


#: The answers other than JSON, for the OpenAPI spec.
OTHER_FORMATS = {"text/html": {"schema": {"type": "string", "description": "?format=hocr"}},
                 "text/plain": {"schema": {"type": "string", "description": "?format=text"}},
                 searchable_pdf.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary",
                                                        "description": "?format=pdf"}},
                 alto.MEDIA_TYPE: {"schema": {"type": "string", "description": "?format=alto"}},
                 "text/tab-separated-values": {"schema": {"type": "string", "description": "?format=tsv"}}}
#: And, for an upload, a document's pages streamed.
STREAMED_FORMAT = {documents.NDJSON_MEDIA_TYPE: {"schema": stream_line_schema()}}
#: What an OCR answer's headers say, whatever its format.
ANSWER_HEADERS = {request_ids.HEADER: {"description": "the answer's request_id: what reads its stored image back, "
                                                      "corrects it or deletes it", "schema": {"type": "string"}},
                  "Server-Timing": {"description": "the answer's timings (decode, detect, recognize, total; ms), as "
                                                   "browsers' developer tools show them; not on a stream",
                                    "schema": {"type": "string"}}}
#: Where an answer leads, as OpenAPI links: its ``request_id`` (the header, which answers of every format carry) reads
#: the stored image back, corrects it or deletes it. Client generators and API tools follow them; so do schemathesis's
#: stateful tests, which chain an upload to those calls.
ANSWER_LINKS = {
    name: {"operationId": operation, "parameters": {"image_id": f"$response.header.{request_ids.HEADER}"},
           "description": description}
    for name, operation, description in (
        ("GetImage", "image_api_v1_images__image_id__get", "the upload as stored"),
        ("GetImageData", "image_data_api_v1_images__image_id__data_get", "the answer as stored, corrections applied"),
        ("CorrectImage", "correct_api_v1_images__image_id__corrections_post", "a correction of a line, or of all"),
        ("DeleteImage", "forget_api_v1_images__image_id__delete", "the upload and its answer deleted now"))}


#: The two ways an ``/api/`` request presents a key (`api_keys.presented`).
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "one of the keys the service was started with (OCR_API_KEYS)"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "the same key, in a header of its own"},
}


def with_keys(spec: dict[str, Any], required: bool) -> dict[str, Any]:
    """The spec, saying that its ``/api/`` operations take a key, where the service was started with keys.

    Without it a generated client sent none, and the docs page had no way to send one: with keys on, "Try it out"
    could only get 401s. Without keys the spec says nothing of them, which is the truth.
    """
    if not required:
        return spec
    spec.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in spec["paths"].items():
        if path.startswith("/api/"):
            for operation in operations.values():
                operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
                operation["responses"].setdefault("401", {"description": "Unauthorized: no key, or not one of the "
                                                          "service's", "content": {"application/json": {"schema": {
                                                              "$ref": "#/components/schemas/ErrorResponse"}}}})
    return spec
