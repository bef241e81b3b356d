"""HTTP API bodies (v1): what `POST /api/v1/ocr` answers and what every error looks like."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field, field_validator


class WordOut(BaseModel):
    box: list[float] = Field(description="x0, y0, x1, y1 in pixels of the uploaded image")
    text: str
    confidence: float = Field(ge=0, le=1)


class LineOut(WordOut):
    poly: list[list[float]] = Field(
        description="the line's quadrilateral, four [x, y] points clockwise from the top left of the text as it "
                    "reads (in a page read turned, not the image's top left); its top and bottom edges follow "
                    "tilted text, where the box holds it diagonally")
    words: list[WordOut]
    block: int = Field(0, ge=0, description="which block of text the line belongs to, from 0 in reading order: the "
                                            "lines of a paragraph, of a column's run, a heading (`serve_app.layout`; "
                                            "hOCR's ocr_par, ALTO's TextBlock, TSV's block_num)")


class ImageInfo(BaseModel):
    width: int = Field(description="of the page read, in the upload's pixels with its EXIF orientation applied (a "
                                   "PDF page: as rendered); a turn asked for with `?rotate=` does not change it")
    height: int
    format: str
    page: int = Field(1, ge=1, description="which page (frame) of the upload was read, from 1")
    pages: int = Field(1, ge=1, description="how many pages (frames) the upload holds: a PDF, a multi-page TIFF, "
                                            "an animated WebP or PNG; read another with `?page=N`")
    dpi: float | None = Field(None, description="PDF pages only: the resolution the page was rendered at; boxes are "
                                                "in these pixels (points = pixels x 72 / dpi)")
    rotation: int = Field(0, description="degrees the image was turned clockwise to be read (`?rotate=`); boxes and "
                                         "polygons are in the upload's own pixels all the same, polygons' corners in "
                                         "reading order")
    region: list[int] | None = Field(
        None, exclude_if=lambda v: v is None,
        description="`?region=` only: the part of the page read, x0, y0, x1, y1 in its pixels, clipped to it; boxes "
                    "are in the page's pixels")


class Timings(BaseModel):
    decode_ms: float
    detect_ms: float
    recognize_ms: float
    total_ms: float


#: ``image.region`` and ``preview`` are in an answer only where the request asked for them (no null): an answer to
#: a request without them is as it was before they were added.

#: The largest preview a request may ask for (`?preview=`): a page at 200 dpi is some 2,300 x 1,700 pixels.
MAX_PREVIEW_SIDE = 4096


class PagePreview(BaseModel):
    """The page as read, small: what a client that cannot decode the upload (a PDF, a TIFF, HEIC) draws boxes on."""

    url: str = Field(description="a `data:image/jpeg;base64,...` URL of the page's pixels as the service read them "
                                 "(a PDF page as rendered, EXIF turns applied, before any `?rotate=` turn)")
    width: int = Field(description="the preview's size: boxes scale to it by width / image.width")
    height: int


class OCRResponse(BaseModel):
    request_id: str
    image: ImageInfo
    lines: list[LineOut]
    text: str = Field(description="all lines in reading order, one per line")
    timings: Timings
    models: dict[str, str]
    preview: PagePreview | None = Field(
        None, exclude_if=lambda v: v is None,
        description="with `?preview=N`: the page as read, its long side at most N pixels (not stored: stored "
                    "answers have none)")


class DocumentResponse(BaseModel):
    """What ``?pages=`` answers: the pages read, in order, each the answer one ``?page=N`` request would give."""

    request_id: str = Field(description="the request's, in its log line and trace; each page is stored under the "
                                        "`request_id` in its own answer")
    pages: list[OCRResponse]
    text: str = Field(description="each page's lines in reading order, a form feed (\\f) between pages")
    timings: Timings = Field(description="decode, detect and recognize: the pages' sums; total: the request's")
    models: dict[str, str]


class DocumentStart(BaseModel):
    """The first line of a streamed document (``?pages=&format=ndjson``), sent once its first page is read."""

    request_id: str
    pages: list[int] = Field(description="the pages that follow, one line each, in this order")
    held: int = Field(description="how many pages the upload holds")


class DocumentEnd(BaseModel):
    """The last line of a streamed document that was read whole: `DocumentResponse` less its pages."""

    request_id: str
    text: str = Field(description="each page's lines in reading order, a form feed (\\f) between pages")
    timings: Timings = Field(description="decode, detect and recognize: the pages' sums; total: the request's")
    models: dict[str, str]


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable reason, e.g. 'unsupported_media_type'")
    message: str
    max_pages: int | None = Field(None, description="too_many_pages: the most pages one request reads "
                                  "(ingress.max_pages); ask for the rest in further requests")


class ErrorResponse(BaseModel):
    error: ErrorDetail
    request_id: str | None = None


#: Far more lines than a page holds, and within the database's INTEGER.
MAX_LINE_INDEX = 100_000
#: Far more pages than one request reads (``ingress.max_pages``, 50 by default).
MAX_PAGE = 100_000


class CorrectionIn(BaseModel):
    # a misspelt field is refused, not dropped: `{"value": ..., "lineIndex": 3}` was accepted (202) as a correction
    # of the whole image's text, which `?format=text` then gave back in place of every line
    model_config = ConfigDict(extra="forbid")

    value: str = Field(min_length=1, max_length=10_000, description="the corrected text (no NUL character)",
                       json_schema_extra={"pattern": "^[^\\u0000]*$"})  # said, and checked by `_storable`
    line_index: int | None = Field(None, ge=0, le=MAX_LINE_INDEX,
                                   description="which line of the answer; omit for the whole image")
    page: int | None = Field(None, ge=1, le=MAX_PAGE, description="with the `request_id` of a ?pages= request (a "
                             "document's): which of its pages, from 1, as the page's own `request_id` would say")
    correction_id: uuid.UUID | None = Field(
        None, description="an id of your choosing, to send a correction again safely (after a 503 or a dropped "
        "connection): the first one sent under an id is stored, once; omitted, the service picks one")

    @field_validator("value")
    @classmethod
    def _storable(cls, value: str) -> str:
        """A NUL is refused here, not accepted and then refused by the database (which stores no NUL in text).

        JSON lets a NUL through; an unpaired surrogate is already refused by the JSON parsing.
        """
        if "\x00" in value:
            raise ValueError("holds a NUL character (U+0000), which stored text cannot hold")
        return value


class CorrectionOut(BaseModel):
    correction_id: str
    image_id: str
    status: str
