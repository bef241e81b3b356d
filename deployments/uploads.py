"""How an upload may arrive at the OCR route: as the multipart field ``image``, or as the whole request body.

Many clients find a raw body the natural way to send one file (``curl --data-binary @photo.jpg -H 'Content-Type:
image/jpeg'``, ``requests.post(url, data=f)``, a phone's share sheet, a serverless function passing bytes on), and
several OCR APIs take it. Before, such a body was answered "body.image: Field required", and one sent as curl's
``--data`` sends it (a form, by default) "Too many fields. Maximum number of fields is 1000.": neither says what to
do. The format is always judged from the bytes (`serve_app.imaging`), never from the declared type, which only tells
a raw upload from a request that is something else.
"""

from __future__ import annotations

from collections.abc import Iterable

from deployments.body_limits import media_type

#: What a raw upload may be declared as (any image type, and these); a body without a Content-Type is one too.
RAW_TYPES = {"application/pdf", "application/octet-stream"}
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"

HOW_TO_SEND = ("send the image as the multipart field 'image' (curl -F image=@photo.jpg) or as the whole body with "
               "an image's Content-Type (curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg')")

#: A multipart field ``image`` that holds text: ``curl -F image=photo.jpg`` sends the name, not the file.
TEXT_FIELD = ("the field 'image' came as text, not as a file: send the file's bytes as that part (curl -F "
              "image=@photo.jpg, with the @) or as the whole body")


def is_raw(content_type: str | None, content_length: str | None = None, chunked: bool = False) -> bool:
    """Whether the body is the upload itself: declared as a file, or undeclared and there (not a bare POST)."""
    kind = media_type(content_type)
    if not kind:
        return chunked or (content_length or "0").strip() not in ("", "0")
    return kind.startswith("image/") or kind in RAW_TYPES


def missing_image(content_type: str | None, fields: Iterable[str]) -> tuple[int, str, str]:
    """``(status, code, message)`` for a request to the OCR route that carries no image where one is looked for."""
    kind = media_type(content_type)
    if kind == MULTIPART:
        names = sorted(set(fields))
        held = f"its fields are {', '.join(repr(n) for n in names)}" if names else "it has no fields"
        return 422, "missing_field", f"the multipart body has no field 'image' ({held}); {HOW_TO_SEND}"
    if kind == FORM:
        return 415, "unsupported_media_type", (f"the body was sent as a form ({FORM}, what curl --data sends "
                                               f"unless told otherwise); {HOW_TO_SEND}")
    if not kind:
        return 422, "missing_field", f"the request has no body; {HOW_TO_SEND}"
    return 415, "unsupported_media_type", f"a body of type {kind} is not an upload; {HOW_TO_SEND}"
