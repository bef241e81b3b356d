"""Results reach PostgreSQL and the image store through the sidecar and archiver; the image endpoints read them."""

import hashlib
import io
import json
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import asyncpg
import httpx
import pypdfium2 as pdfium
import pytest
from PIL import Image
from ray import serve

from deployments.request_ids import page_id
from serve_app.schemas import DocumentEnd, DocumentStart, ErrorResponse, OCRResponse
from serve_app.storage.archive import content_path
from tests.unit.test_alto import A as ALTO
from tests.unit.test_alto import assert_valid_alto
from tests.unit.test_imaging import save
from tests.unit.test_tsv import table as tsv_table
from training.pdfs import text_pdf
from training.synth import render_lines

pytestmark = pytest.mark.serve


def png_bytes(lines: list[str]) -> bytes:
    buf = io.BytesIO()
    render_lines(lines, size=26)[0].save(buf, "PNG")
    return buf.getvalue()


def poll(fn, timeout: float = 60.0, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not stored within {timeout}s")
        time.sleep(interval)


def stored_data(client, rid: str) -> dict:
    """The stored results of one answer, once they are there: the image's row may be written first, by its file."""
    def ready():
        r = client.get(f"/api/v1/images/{rid}/data")
        return r.status_code == 200 and r.json()["image"]["format"] is not None and r.json()

    return poll(ready)


def db_counts(pg_url: str, bodies: list[dict]) -> tuple[int, int]:
    """Stored images (with data and file) and box rows for these answers only: other tests may still be archiving."""
    import asyncio

    ids = [uuid.UUID(b["request_id"]) for b in bodies]

    async def go():
        conn = await asyncpg.connect(pg_url)
        try:
            images = await conn.fetchval(
                "SELECT count(*) FROM image WHERE id = ANY($1) AND data_stored AND path IS NOT NULL", ids)
            boxes = await conn.fetchval("SELECT count(*) FROM image_box WHERE image_id = ANY($1)", ids)
            return images, boxes
        finally:
            await conn.close()

    return asyncio.new_event_loop().run_until_complete(go())


def stored_file(pg_url: str, storage_dirs, rid: str) -> Path:
    """The file an image's row names (named by its content: documents' pages, and one upload sent twice, share one)."""
    import asyncio

    async def go() -> str:
        conn = await asyncpg.connect(pg_url)
        try:
            return await conn.fetchval("SELECT path FROM image WHERE id = $1", uuid.UUID(rid))
        finally:
            await conn.close()

    path = poll(lambda: asyncio.new_event_loop().run_until_complete(go()))
    return storage_dirs[0] / path


def wait_stored(pg_url: str, bodies: list[dict], expected: tuple[int, int], timeout: float = 60.0) -> None:
    """Until exactly ``expected`` (images, box rows) are stored for these answers; says what was, if never."""
    seen: list[tuple[int, int]] = []
    try:
        poll(lambda: seen.append(db_counts(pg_url, bodies)) or seen[-1] == expected, timeout=timeout)
    except AssertionError:
        import asyncio

        async def rows() -> list:
            conn = await asyncpg.connect(pg_url)
            try:
                return await conn.fetch("SELECT id, data_stored, path IS NOT NULL AS has_file FROM image "
                                        "WHERE id = ANY($1)", [uuid.UUID(b["request_id"]) for b in bodies])
            finally:
                await conn.close()

        found = {str(r["id"]): (r["data_stored"], r["has_file"]) for r in asyncio.new_event_loop().run_until_complete(
            rows())}
        missing = [b["request_id"] for b in bodies if found.get(b["request_id"]) != (True, True)]
        raise AssertionError(f"stored (images, boxes) {seen[-1]}, expected {expected}, within {timeout} s; not "
                             f"stored whole: {[(rid, found.get(rid)) for rid in missing]}") from None


def test_every_result_is_stored_once_with_its_image_and_boxes(client, pg_url, storage_dirs):
    uploads = [png_bytes([f"stored line {i}", "second line"]) for i in range(3)] + [png_bytes(["word"])]
    bodies = []
    for i, data in enumerate(uploads):  # the last one as a single word: stored the same way
        r = client.post("/api/v1/ocr", params={"layout": "word" if i == 3 else "page"},
                        files={"image": ("s.png", data, "image/png")})
        assert r.status_code == 200
        bodies.append(r.json())
    assert _boxes(bodies[3:]) == 2  # one line covering the image, and its word
    expected = (4, _boxes(bodies))
    wait_stored(pg_url, bodies, expected)
    time.sleep(0.5)
    assert db_counts(pg_url, bodies) == expected  # and nothing more arrives
    for body, data in zip(bodies, uploads):
        assert stored_file(pg_url, storage_dirs, body["request_id"]).read_bytes() == data


def test_image_data_and_corrections_endpoints(client):
    data = png_bytes(["correct me please"])
    body = client.post("/api/v1/ocr", files={"image": ("c.png", data, "image/png")}).json()
    rid = body["request_id"]
    stored = stored_data(client, rid)
    assert [ln["text"] for ln in stored["lines"]] == [ln["text"] for ln in body["lines"]]
    assert client.get(f"/api/v1/images/{rid}/data", params={"format": "text"}).text == body["text"] + "\n"
    assert stored["image"]["width"] == body["image"]["width"]
    # the stored words as hOCR: what ?format=hocr answered (the database keeps boxes and confidences as reals)
    as_hocr = client.get(f"/api/v1/images/{rid}/data", params={"format": "hocr"})
    assert as_hocr.status_code == 200 and as_hocr.headers["content-type"].startswith("text/html")
    words = ET.fromstring(as_hocr.content).iterfind(".//{http://www.w3.org/1999/xhtml}span[@class='ocrx_word']")
    got = [(w.text, [int(v) for v in w.get("title").split(";")[0].split()[1:]]) for w in words]
    expected = [(w["text"], w["box"]) for ln in body["lines"] for w in ln["words"]]
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert all(abs(a - b) <= 1 for (_, box), (_, want) in zip(got, expected) for a, b in zip(box, want))
    image = client.get(f"/api/v1/images/{rid}")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png" and image.content == data
    assert Image.open(io.BytesIO(image.content)).size == (body["image"]["width"], body["image"]["height"])

    r = client.post(f"/api/v1/images/{rid}/corrections", json={"value": "Correct me, please!", "line_index": 0})
    assert r.status_code == 202 and r.json()["status"] == "accepted"
    cid = r.json()["correction_id"]
    fixed = poll(lambda: (d := client.get(f"/api/v1/images/{rid}/data").json())["corrections"] and d)
    assert fixed["corrections"] == [
        {"id": cid, "line_index": 0, "value": "Correct me, please!", "created": fixed["corrections"][0]["created"]}
    ]
    # the text as corrected, as a user wants it back
    as_text = client.get(f"/api/v1/images/{rid}/data", params={"format": "text"})
    assert as_text.status_code == 200 and as_text.headers["content-type"].startswith("text/plain")
    assert as_text.text.splitlines() == ["Correct me, please!", *(ln["text"] for ln in body["lines"][1:])]
    # and as a searchable PDF of the stored image, without reading it again: the corrected line over its box
    as_pdf = client.get(f"/api/v1/images/{rid}/data", params={"format": "pdf"})
    assert as_pdf.status_code == 200 and as_pdf.headers["content-type"] == "application/pdf"
    page = pdfium.PdfDocument(as_pdf.content)[0]
    assert page.get_size() == pytest.approx((body["image"]["width"] * 72 / 300, body["image"]["height"] * 72 / 300))
    assert page.get_textpage().get_text_range().split() == " ".join(as_text.text.splitlines()).split()
    # and as ALTO: the corrected line one String of its text, marked corrected; when it was read, what read it
    as_alto = client.get(f"/api/v1/images/{rid}/data", params={"format": "alto"})
    assert as_alto.status_code == 200 and as_alto.headers["content-type"].startswith("application/xml")
    root = assert_valid_alto(as_alto.content)
    lines = list(root.iter(f"{ALTO}TextLine"))
    assert [s.get("CONTENT") for s in lines[0].iter(f"{ALTO}String")] == ["Correct me, please!"]
    assert lines[0].get("CS") == "true" and all(ln.get("CS") is None for ln in lines[1:])
    assert [[s.get("CONTENT") for s in ln.iter(f"{ALTO}String")] for ln in lines[1:]] == \
        [[w["text"] for w in ln["words"]] for ln in body["lines"][1:]]
    assert root.find(f".//{ALTO}processingDateTime").text == fixed["created"]
    # as hOCR, the corrected line one word over it
    as_hocr = client.get(f"/api/v1/images/{rid}/data", params={"format": "hocr"})
    first_line = ET.fromstring(as_hocr.content).find(".//{http://www.w3.org/1999/xhtml}span[@class='ocr_line']")
    assert [w.text for w in first_line] == ["Correct me, please!"]
    # and as Tesseract's TSV: the corrected line one word
    as_tsv = client.get(f"/api/v1/images/{rid}/data", params={"format": "tsv"})
    assert as_tsv.status_code == 200 and as_tsv.headers["content-type"].startswith("text/tab-separated-values")
    words = [r for r in tsv_table(as_tsv.text) if r["level"] == "5"]
    assert words[0]["text"] == "Correct me, please!" and words[0]["line_num"] == "1"
    assert [r["text"] for r in words[1:]] == [w["text"] for ln in body["lines"][1:] for w in ln["words"]]


def corrections(pg_url: str, image_id: str) -> list[tuple[str, str]]:
    """(correction id, value) of every stored correction of one image, oldest first."""
    import asyncio

    async def go():
        conn = await asyncpg.connect(pg_url)
        try:
            rows = await conn.fetch("SELECT correction_id, value FROM text_correction WHERE image_id = $1 ORDER BY id",
                                    uuid.UUID(image_id))
            return [(str(r["correction_id"]), r["value"]) for r in rows]
        finally:
            await conn.close()

    return asyncio.new_event_loop().run_until_complete(go())


def test_a_correction_sent_again_under_its_id_is_stored_once(client, pg_url):
    rid = client.post("/api/v1/ocr", files={"image": ("c.png", png_bytes(["twice"]), "image/png")}).json()["request_id"]
    stored_data(client, rid)
    cid = str(uuid.uuid4())
    for _ in range(2):  # a client retrying after a dropped connection sends the same id
        r = client.post(f"/api/v1/images/{rid}/corrections", json={"value": "Twice", "correction_id": cid})
        assert r.status_code == 202 and r.json()["correction_id"] == cid
    other = client.post(f"/api/v1/images/{rid}/corrections", json={"value": "Once"}).json()["correction_id"]
    assert other != cid
    poll(lambda: len(corrections(pg_url, rid)) >= 2)
    time.sleep(1)
    assert corrections(pg_url, rid) == [(cid, "Twice"), (other, "Once")]
    bad = client.post(f"/api/v1/images/{rid}/corrections", json={"value": "x", "correction_id": "not-a-uuid"})
    assert bad.status_code == 422 and "correction_id" in bad.json()["error"]["message"]


def test_an_upload_sent_again_under_its_idempotency_key_is_one_request_stored_once(client, pg_url):
    """A client whose answer was lost on the way back sends the upload again: the same id, stored once."""
    data = png_bytes(["sent twice"])
    key = f"job-{uuid.uuid4()}"
    tries = [client.post("/api/v1/ocr", headers={"Idempotency-Key": key}, files={"image": ("t.png", data, "image/png")})
             for _ in range(2)]
    assert [r.status_code for r in tries] == [200, 200]
    first, again = (r.json() for r in tries)
    assert first["request_id"] == again["request_id"] and first["lines"] == again["lines"]
    uuid.UUID(first["request_id"])
    fresh = client.post("/api/v1/ocr", headers={"Idempotency-Key": f"{key}-2"},
                        files={"image": ("t.png", data, "image/png")}).json()
    plain = client.post("/api/v1/ocr", files={"image": ("t.png", data, "image/png")}).json()
    assert len({first["request_id"], fresh["request_id"], plain["request_id"]}) == 3
    once = (1, _boxes([first]))
    wait_stored(pg_url, [first], once)
    wait_stored(pg_url, [fresh, plain], (2, 2 * _boxes([first])))
    time.sleep(1)
    assert db_counts(pg_url, [first]) == once
    too_long = client.post("/api/v1/ocr", headers={"Idempotency-Key": "k" * 256},
                           files={"image": ("t.png", data, "image/png")})
    assert too_long.status_code == 422 and "Idempotency-Key" in too_long.json()["error"]["message"]


@pytest.mark.parametrize("fmt", ["TIFF", "PDF"])
def test_the_page_read_is_stored_with_the_whole_upload(client, fmt):
    if fmt == "PDF":
        data, media_type = text_pdf([["first page"], ["second page"]]), "application/pdf"
    else:
        ims = [Image.open(io.BytesIO(png_bytes([text]))).convert("L") for text in ("first page", "second page")]
        buf = io.BytesIO()
        ims[0].save(buf, "TIFF", save_all=True, append_images=ims[1:])
        data, media_type = buf.getvalue(), "image/tiff"
    body = client.post("/api/v1/ocr", params={"page": 2}, files={"image": ("two", data, media_type)})
    assert body.status_code == 200, body.text
    rid = body.json()["request_id"]
    stored = stored_data(client, rid)
    assert {k: stored["image"][k] for k in ("format", "page", "pages")} == {"format": fmt, "page": 2, "pages": 2}
    assert [ln["text"] for ln in stored["lines"]] == [ln["text"] for ln in body.json()["lines"]] == ["second page"]
    image = client.get(f"/api/v1/images/{rid}")
    assert image.headers["content-type"] == media_type and image.content == data
    # the page read, as a searchable PDF: a PDF's page at its own size (text_pdf's: 420x200 points)
    page = pdfium.PdfDocument(client.get(f"/api/v1/images/{rid}/data", params={"format": "pdf"}).content)[0]
    assert page.get_textpage().get_text_range().split() == ["second", "page"]
    if fmt == "PDF":
        assert page.get_size() == pytest.approx((420, 200), abs=0.5)


def test_every_answer_names_its_request_id_in_a_header_which_reads_it_back_and_deletes_it(client):
    """``X-OCR-Request-Id``: a text, TSV or ALTO answer had no place for its id, so it could not be corrected, read
    back or deleted. JSON answers, streams and errors say it too, the same id as their bodies; Serve's own
    ``X-Request-ID`` is another id."""
    files = {"image": ("note.png", png_bytes(["Deliver on Monday", "Gate 7"]), "image/png")}
    as_text = client.post("/api/v1/ocr", params={"format": "text"}, files=files)
    assert as_text.status_code == 200 and as_text.headers["content-type"].startswith("text/plain"), as_text.text
    rid = as_text.headers["x-ocr-request-id"]
    assert as_text.headers["x-request-id"] != rid  # Serve's proxy adds its own
    stored = stored_data(client, rid)
    assert client.get(f"/api/v1/images/{rid}/data", params={"format": "text"}).text == as_text.text
    assert [ln["text"] for ln in stored["lines"]] == ["Deliver on Monday", "Gate 7"]
    fixed = client.post(f"/api/v1/images/{rid}/corrections", json={"value": "Gate 9", "line_index": 1})
    assert fixed.status_code == 202, fixed.text
    assert client.delete(f"/api/v1/images/{rid}").status_code == 204
    assert client.get(f"/api/v1/images/{rid}/data").status_code == 404

    as_json = client.post("/api/v1/ocr", files=files)
    assert as_json.headers["x-ocr-request-id"] == as_json.json()["request_id"]
    # its timings too, as browsers' developer tools show them, for every format
    timing = dict(entry.strip().split(";dur=") for entry in as_json.headers["server-timing"].split(","))
    assert {name: float(ms) for name, ms in timing.items()} == pytest.approx(
        {name.removesuffix("_ms"): ms for name, ms in as_json.json()["timings"].items()}, abs=0.051)
    for fmt in ("tsv", "alto", "hocr"):
        answer = client.post("/api/v1/ocr", params={"format": fmt}, files=files)
        assert answer.status_code == 200 and uuid.UUID(answer.headers["x-ocr-request-id"]), (fmt, answer.text)
        assert "recognize;dur=" in answer.headers["server-timing"]
    key = str(uuid.uuid4())  # a document in a format: the document's id, from which its pages' ids derive
    document = {"image": ("two.pdf", text_pdf([["first page"], ["second page"]]), "application/pdf")}
    as_tsv = client.post("/api/v1/ocr", params={"pages": "all", "format": "tsv"}, files=document,
                         headers={"Idempotency-Key": key})
    doc_id = as_tsv.headers["x-ocr-request-id"]
    assert as_tsv.headers["x-page-request-ids"] == f"{page_id(doc_id, 1)}, {page_id(doc_id, 2)}"
    streamed = client.post("/api/v1/ocr", params={"pages": "all", "format": "ndjson"}, files=document,
                           headers={"Idempotency-Key": key})  # the same upload, sent again under its key
    assert streamed.headers["x-ocr-request-id"] == doc_id == json.loads(streamed.text.splitlines()[0])["start"][
        "request_id"]
    refused = client.post("/api/v1/ocr", params={"rotate": "45"}, files=files)
    assert refused.status_code == 422 and refused.headers["x-ocr-request-id"] == refused.json()["request_id"]
    lost = client.get("/api/v1/nowhere")
    assert lost.status_code == 404 and lost.headers["x-ocr-request-id"] == lost.json()["request_id"]


def test_the_pages_of_a_document_are_each_stored_once_under_their_own_ids(client, pg_url):
    """``?pages=``: each page is stored as its own upload (as ``?page=N`` stores it), once however often it is sent."""
    data = text_pdf([["first page"], ["second page"]])
    key = f"scan-{uuid.uuid4()}"
    tries = [client.post("/api/v1/ocr", params={"pages": "all"}, headers={"Idempotency-Key": key},
                         files={"image": ("two.pdf", data, "application/pdf")}) for _ in range(2)]
    assert [r.status_code for r in tries] == [200, 200], tries[0].text
    doc, again = (r.json() for r in tries)
    pages = doc["pages"]
    assert [p["request_id"] for p in again["pages"]] == [p["request_id"] for p in pages]
    for n, page in enumerate(pages, 1):
        stored = stored_data(client, page["request_id"])
        assert (stored["image"]["page"], stored["image"]["pages"]) == (n, 2)
        assert [ln["text"] for ln in stored["lines"]] == [ln["text"] for ln in page["lines"]]
        assert client.get(f"/api/v1/images/{page['request_id']}").content == data
    expected = (2, _boxes(pages))
    wait_stored(pg_url, pages, expected)
    time.sleep(1)
    assert db_counts(pg_url, pages) == expected and db_counts(pg_url, [doc]) == (0, 0)
    fixed = client.post(f"/api/v1/images/{pages[1]['request_id']}/corrections", json={"value": "2nd page",
                                                                                      "line_index": 0})
    assert fixed.status_code == 202, fixed.text
    past = client.post(f"/api/v1/images/{pages[1]['request_id']}/corrections", json={"value": "x", "line_index": 1})
    assert past.status_code == 422 and past.json()["error"]["code"] == "line_out_of_range"



def test_the_pages_of_a_document_share_one_stored_file_until_the_last_is_deleted(client, pg_url, storage_dirs):
    """The upload is stored once for all its pages (it crosses the broker once too), and deleting a page leaves it to
    the others."""
    data = text_pdf([["page one of three"], ["page two of three"], ["page three of three"]])
    doc = client.post("/api/v1/ocr", params={"pages": "all"}, files={"image": ("three.pdf", data, "application/pdf")})
    assert doc.status_code == 200, doc.text
    ids = [p["request_id"] for p in doc.json()["pages"]]
    wait_stored(pg_url, doc.json()["pages"], (3, _boxes(doc.json()["pages"])))
    files = {stored_file(pg_url, storage_dirs, rid) for rid in ids}
    assert len(files) == 1 and next(iter(files)).read_bytes() == data
    head = client.head(f"/api/v1/images/{ids[1]}")  # from the file's size and name, as GET gives it
    assert (head.status_code, head.headers["content-length"], head.headers["content-type"]) == (
        200, str(len(data)), "application/pdf")
    assert head.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"' and head.content == b""
    assert client.delete(f"/api/v1/images/{ids[0]}").status_code == 204
    assert client.delete(f"/api/v1/images/{ids[2]}").status_code == 204
    assert client.get(f"/api/v1/images/{ids[1]}").content == data
    assert client.get(f"/api/v1/images/{ids[0]}").status_code == 404
    assert client.delete(f"/api/v1/images/{ids[1]}").status_code == 204
    assert not next(iter(files)).exists()


def test_a_stored_image_is_revalidated_by_its_hash_and_a_deleted_one_is_not_served_from_a_cache(client):
    """ETag: the upload's SHA-256. A copy still current is 304 with no body; once deleted, a browser that revalidates
    (``no-cache``) gets 404, where ``max-age=86400`` had let it show the deleted photo for a day."""
    upload = png_bytes(["cached then deleted"])
    rid = client.post("/api/v1/ocr", files={"image": ("c.png", upload, "image/png")}).json()["request_id"]
    stored_data(client, rid)
    first = client.get(f"/api/v1/images/{rid}")
    tag = f'"{hashlib.sha256(upload).hexdigest()}"'
    assert first.content == upload and first.headers["ETag"] == tag and "no-cache" in first.headers["Cache-Control"]
    again = client.get(f"/api/v1/images/{rid}", headers={"If-None-Match": f'"other", {tag}'})
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == tag
    assert client.get(f"/api/v1/images/{rid}", headers={"If-None-Match": '"other"'}).content == upload
    # HEAD: the headers GET gives, no body (a client asking whether it is stored, or its tag; it was a 405)
    head = client.head(f"/api/v1/images/{rid}")
    assert head.status_code == 200 and head.content == b"", head.status_code
    assert {k: head.headers[k] for k in ("etag", "content-type", "content-length", "cache-control")} == {
        k: first.headers[k] for k in ("etag", "content-type", "content-length", "cache-control")}
    assert client.head(f"/api/v1/images/{rid}", headers={"If-None-Match": tag}).status_code == 304
    data = client.head(f"/api/v1/images/{rid}/data")
    assert data.status_code == 200 and data.content == b"" and data.headers["content-type"] == "application/json"
    put = client.put(f"/api/v1/images/{rid}")  # the methods of the resource, not of its first route (GET alone)
    assert put.status_code == 405 and put.headers["allow"] == "DELETE, GET, HEAD", put.headers.get("allow")
    # compared weakly, as RFC 9110 says: a proxy that compresses answers hands the tag on as W/"..."
    for header in (f"W/{tag}", "*"):
        weak = client.get(f"/api/v1/images/{rid}", headers={"If-None-Match": header})
        assert weak.status_code == 304 and weak.content == b"" and weak.headers["ETag"] == tag, header
    assert client.delete(f"/api/v1/images/{rid}").status_code == 204
    assert client.get(f"/api/v1/images/{rid}", headers={"If-None-Match": tag}).status_code == 404
    assert client.get(f"/api/v1/images/{rid}", headers={"If-None-Match": "*"}).status_code == 404
    gone = client.head(f"/api/v1/images/{rid}")
    assert gone.status_code == 404 and gone.content == b"" and gone.headers["x-ocr-request-id"]


def test_the_sidecar_still_takes_a_handover_as_the_previous_release_made_it(client, pg_url, storage_dirs):
    """During a redeploy an ingress replica of the previous release drains its handovers into the new sidecar: one
    answer, as ``forward(request_id, image, content_type, result)``, with no page list."""
    from ray import serve

    from .conftest import APP

    upload = png_bytes(["handed over the old way"])
    answer = client.post("/api/v1/ocr", files={"image": ("o.png", upload, "image/png")}).json()
    rid = str(uuid.uuid4())
    sidecar = serve.get_deployment_handle("Sidecar", app_name=APP)
    assert sidecar.forward.remote(rid, upload, "image/png", {**answer, "request_id": rid}).result() is True
    wait_stored(pg_url, [{"request_id": rid}], (1, _boxes([answer])))
    assert stored_file(pg_url, storage_dirs, rid).read_bytes() == upload
    assert [ln["text"] for ln in stored_data(client, rid)["lines"]] == [ln["text"] for ln in answer["lines"]]


def test_deleting_a_document_by_its_request_id_deletes_every_page_it_stored(client, pg_url, storage_dirs):
    """The id a ``?pages=`` request answered with stores nothing of its own; deleting it must not answer 204 and
    leave its pages (and the file) behind."""
    data = text_pdf([["delete me first"], ["delete me too"]])
    doc = client.post("/api/v1/ocr", params={"pages": "all"}, files={"image": ("two.pdf", data, "application/pdf")})
    assert doc.status_code == 200, doc.text
    pages = doc.json()["pages"]
    wait_stored(pg_url, pages, (2, _boxes(pages)))
    file = stored_file(pg_url, storage_dirs, pages[0]["request_id"])
    assert client.delete(f"/api/v1/images/{doc.json()['request_id']}").status_code == 204
    assert [client.get(f"/api/v1/images/{p['request_id']}").status_code for p in pages] == [404, 404]
    assert db_counts(pg_url, pages) == (0, 0) and not file.exists()
    poll(lambda: _archiver_log_lines(f"deleted image {doc.json()['request_id']} at its owner's request (stored: 2 "
                                     "pages of it)"), timeout=30)


def test_a_correction_names_a_page_of_a_document_by_the_documents_id(client, pg_url):
    """The id a ``?pages=`` request answered with reads back and deletes its pages; a correction sent to it got 404
    "no image": now ``page`` says which page, and without it the answer says what is missing."""
    data = text_pdf([["first page line"], ["second page line"]])
    doc = client.post("/api/v1/ocr", params={"pages": "all"}, files={"image": ("two.pdf", data, "application/pdf")})
    doc_id, pages = doc.json()["request_id"], doc.json()["pages"]
    wait_stored(pg_url, pages, (2, _boxes(pages)))
    sent = client.post(f"/api/v1/images/{doc_id}/corrections", json={"value": "second page, corrected",
                                                                     "line_index": 0, "page": 2})
    assert sent.status_code == 202 and sent.json()["image_id"] == pages[1]["request_id"], sent.text
    poll(lambda: client.get(f"/api/v1/images/{pages[1]['request_id']}/data").json()["corrections"])
    text = client.get(f"/api/v1/images/{doc_id}/data", params={"format": "text"}).text
    assert text == "first page line\n\fsecond page, corrected\n\f"
    unsaid = client.post(f"/api/v1/images/{doc_id}/corrections", json={"value": "which page?", "line_index": 0})
    assert unsaid.status_code == 422 and unsaid.json()["error"]["code"] == "page_required", unsaid.text
    assert "2 stored pages" in unsaid.json()["error"]["message"]
    for page, target in ((3, doc_id), (1, pages[0]["request_id"])):  # past its last page; a page's own id
        missing = client.post(f"/api/v1/images/{target}/corrections", json={"value": "x", "page": page})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found", missing.text
    far_line = client.post(f"/api/v1/images/{doc_id}/corrections", json={"value": "x", "page": 1, "line_index": 5})
    assert far_line.status_code == 422 and far_line.json()["error"]["code"] == "line_out_of_range", far_line.text


def test_a_documents_request_id_reads_back_its_stored_pages_as_one_document_in_every_format(client, pg_url):
    """The id a ``?pages=`` request answered with deleted its pages, yet reading it back gave 404: a caller who
    kept that id (the one every format's answer is named by) had to collect its pages' ids to get them."""
    data = text_pdf([["page one of three"], ["page two of three"], ["page three of three"]])
    doc = client.post("/api/v1/ocr", params={"pages": "1,3"}, files={"image": ("three.pdf", data, "application/pdf")})
    assert doc.status_code == 200, doc.text
    doc_id, pages = doc.json()["request_id"], doc.json()["pages"]
    wait_stored(pg_url, pages, (2, _boxes(pages)))
    third = pages[1]["request_id"]
    assert client.post(f"/api/v1/images/{third}/corrections", json={"value": "page 3 of 3",
                                                                    "line_index": 0}).status_code == 202
    poll(lambda: client.get(f"/api/v1/images/{third}/data").json()["corrections"])

    stored = client.get(f"/api/v1/images/{doc_id}/data")
    assert stored.status_code == 200, stored.text
    assert stored.json()["id"] == doc_id
    file = client.head(f"/api/v1/images/{doc_id}")  # the file its pages share
    assert (file.status_code, file.headers["content-length"], file.headers["content-type"]) == (
        200, str(len(data)), "application/pdf")
    assert [(p["id"], p["image"]["page"], p["image"]["pages"], [ln["text"] for ln in p["lines"]])
            for p in stored.json()["pages"]] == [(p["request_id"], p["image"]["page"], 3, [ln["text"] for ln in
                                                                                         p["lines"]]) for p in pages]
    assert stored.json()["pages"][1]["corrections"][0]["value"] == "page 3 of 3"
    text = client.get(f"/api/v1/images/{doc_id}/data", params={"format": "text"})
    assert text.text == "page one of three\n\fpage 3 of 3\n\f"  # as ?pages=&format=text, as corrected
    hocr = ET.fromstring(client.get(f"/api/v1/images/{doc_id}/data", params={"format": "hocr"}).content)
    ns = {"h": "http://www.w3.org/1999/xhtml"}
    assert [" ".join(w.text for w in page.iterfind(".//h:span[@class='ocrx_word']", ns))
            for page in hocr.findall(".//h:div[@class='ocr_page']", ns)] == ["page one of three", "page 3 of 3"]
    root = assert_valid_alto(client.get(f"/api/v1/images/{doc_id}/data", params={"format": "alto"}).content)
    assert [" ".join(s.get("CONTENT") for s in page.iter(f"{ALTO}String")) for page in root.iter(f"{ALTO}Page")] \
        == ["page one of three", "page 3 of 3"]
    rows = tsv_table(client.get(f"/api/v1/images/{doc_id}/data", params={"format": "tsv"}).text)
    assert sorted({r["page_num"] for r in rows}) == ["1", "3"]  # the pages' own numbers, as ?pages=1,3 writes them
    pdf = client.get(f"/api/v1/images/{doc_id}/data", params={"format": "pdf"})
    assert pdf.headers["content-type"] == "application/pdf"
    searchable = pdfium.PdfDocument(pdf.content)  # the file's own pages read, 1 and 3; each holds text of its own
    assert [searchable[i].get_textpage().get_text_range().split() for i in range(len(searchable))] == [
        ["page", "one", "of", "three"], ["page", "three", "of", "three"]]  # so it keeps it (OCRmyPDF's --skip-text)
    assert client.get(f"/api/v1/images/{doc_id}").content == data  # the file its pages share

    assert client.delete(f"/api/v1/images/{doc_id}").status_code == 204
    assert client.get(f"/api/v1/images/{doc_id}/data").status_code == 404
    assert client.get(f"/api/v1/images/{doc_id}").status_code == 404


@serve.deployment(ray_actor_options={"num_cpus": 0})
class PreviousArchiver:
    """The archiver of the release before document ids read back (no `stored`), as an in-place update leaves it for
    a while beside a new ingress; the real one of that release cannot run beside this code."""

    async def data(self, image_id: str) -> dict | None:
        if image_id == UNKNOWN:
            return None
        return {"id": image_id, "created": "2026-12-06T00:00:00+00:00", "results_stored": True, "corrections": [],
                "image": {"width": 40, "height": 20, "format": "PNG", "page": 1, "pages": 1, "rotation": 0,
                          "stored": True},
                "models": {"detector": "d", "recognizer": "r"},
                "lines": [{"box": [1, 1, 30, 15], "text": "kept", "confidence": 0.9, "words": []}]}

    async def image(self, image_id: str) -> tuple[bytes, str] | None:
        return None if image_id == UNKNOWN else (PREVIOUS_FILE, "image/png")

    async def image_tag(self, image_id: str) -> str | None:
        return None


PREVIOUS_FILE = png_bytes(["kept"])
UNKNOWN = str(uuid.uuid4())  # neither an image nor (as that archiver cannot say) a document


@serve.deployment(ray_actor_options={"num_cpus": 0})
class IdleSidecar:
    async def status(self) -> dict:
        return {}


def test_a_new_ingress_reads_stored_images_through_an_archiver_of_the_previous_release(serve_url, app_config):
    """Calls between deployments keep the previous release's shape during an in-place update (docs/deploy.md): the
    ingress asks the archiver which pages of a document are stored where an id is no image, which that release's
    archiver cannot answer: the id then reads back 404, as it did, rather than 500 until the archiver is replaced.
    Nor can it give a stored file's tag with the file, or its headers alone: the ingress hashes the file it reads."""
    from deployments.ingress import Ingress
    from tests.serve.test_api import FailingModel

    ingress = Ingress.options(ray_actor_options={"num_cpus": 0}).bind(
        FailingModel.options(name="Detector").bind(), FailingModel.options(name="Recognizer").bind(),
        app_config.model_dump(mode="json"), IdleSidecar.bind(), PreviousArchiver.bind())
    serve.run(ingress, name="previous", route_prefix="/previous")
    try:
        image_id = str(uuid.uuid4())
        with httpx.Client(base_url=serve_url, timeout=60) as c:
            data = c.get(f"/previous/api/v1/images/{image_id}/data")
            assert data.status_code == 200, data.text
            assert data.json()["id"] == image_id and [ln["text"] for ln in data.json()["lines"]] == ["kept"]
            assert c.get(f"/previous/api/v1/images/{image_id}/data", params={"format": "text"}).text == "kept\n"
            got = c.get(f"/previous/api/v1/images/{image_id}")  # that archiver names no tag: the ingress hashes
            tag = hashlib.sha256(PREVIOUS_FILE).hexdigest()
            assert got.content == PREVIOUS_FILE and got.headers["etag"] == f'"{tag}"', got.headers
            head = c.head(f"/previous/api/v1/images/{image_id}")  # nor has it `image_head`: the file is read
            assert head.status_code == 200 and head.content == b"", head.text
            assert {k: head.headers[k] for k in ("etag", "content-type", "content-length")} == {
                k: got.headers[k] for k in ("etag", "content-type", "content-length")}
            for path in (f"/previous/api/v1/images/{UNKNOWN}/data", f"/previous/api/v1/images/{UNKNOWN}"):
                missing = c.get(path)
                assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found", missing.text
    finally:
        serve.delete("previous")


def test_a_document_with_a_page_that_cannot_be_read_stores_none_of_it(client, pg_url):
    """All or nothing: the error names the page, and the pages read before it are not stored without it."""
    frames = [Image.new("L", (2000, 1600), 255) for _ in range(3)]  # frame 3 is reached past the 8 MP limit
    for n, frame in enumerate(frames):
        frame.paste(render_lines([f"frame {n + 1}"], size=40)[0].convert("L"), (100, 100))
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:])
    r = client.post("/api/v1/ocr", params={"pages": "all"}, files={"image": ("three.png", buf.getvalue())})
    assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large", r.text
    assert r.json()["error"]["message"].startswith("page 3: frame 3 of an animation")
    read = client.post("/api/v1/ocr", params={"pages": "1-2"}, files={"image": ("three.png", buf.getvalue())})
    assert [p["text"] for p in read.json()["pages"]] == ["frame 1", "frame 2"]  # pages it could read, it did
    ids = [{"request_id": page_id(r.json()["request_id"], n)} for n in (1, 2)]
    wait_stored(pg_url, read.json()["pages"], (2, _boxes(read.json()["pages"])))  # by then the first would be too
    assert db_counts(pg_url, ids) == (0, 0)


def ndjson_lines(client, params: dict, files: dict, headers: dict | None = None,
                 stop_after: int | None = None) -> tuple[httpx.Response, list[dict]]:
    """A streamed answer's response and its lines (``stop_after``: leave after that many, as a client that goes)."""
    lines: list[dict] = []
    with client.stream("POST", "/api/v1/ocr", params=params, files=files, headers=headers) as r:
        if r.status_code != 200 or r.headers["content-type"] != "application/x-ndjson":
            r.read()
            return r, lines
        for line in r.iter_lines():
            lines.append(json.loads(line))
            if len(lines) == stop_after:
                break
    return r, lines


def test_a_streamed_document_gives_each_page_as_json_gives_it_and_stores_them_as_json_does(client, pg_url):
    """``?pages=&format=ndjson``: a ``start`` line, a ``page`` line per page in order, an ``end`` line."""
    texts = [["Streamed page one"], ["Second page here"], ["Third and last"]]
    files = {"image": ("three.pdf", text_pdf(texts, size=16, width=360, height=144), "application/pdf")}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    r, lines = ndjson_lines(client, {"pages": "all", "format": "ndjson"}, files, key)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson", r.text
    assert [next(iter(line)) for line in lines] == ["start", "page", "page", "page", "end"]
    start, pages, end = lines[0]["start"], [line["page"] for line in lines[1:4]], lines[4]["end"]
    assert start["pages"] == [1, 2, 3] and start["held"] == 3
    assert [p["image"]["page"] for p in pages] == [1, 2, 3]
    assert [p["text"] for p in pages] == ["\n".join(t) for t in texts]
    assert [p["request_id"] for p in pages] == [page_id(start["request_id"], n) for n in (1, 2, 3)]
    assert r.headers["x-page-request-ids"] == ", ".join(p["request_id"] for p in pages)
    assert end["request_id"] == start["request_id"] and end["text"] == "\f".join(p["text"] for p in pages)
    DocumentStart.model_validate(start)  # each line as the spec says it is
    DocumentEnd.model_validate(end)
    for page in pages:
        OCRResponse.model_validate(page)
    assert "pages" not in end and end["timings"]["recognize_ms"] == pytest.approx(
        sum(p["timings"]["recognize_ms"] for p in pages))
    whole = client.post("/api/v1/ocr", params={"pages": "all"}, files=files, headers=key).json()  # sent again
    assert whole["request_id"] == start["request_id"] and [p["lines"] for p in whole["pages"]] == [
        p["lines"] for p in pages]
    wait_stored(pg_url, pages, (3, _boxes(pages)))  # once, for both
    stored = client.get(f"/api/v1/images/{start['request_id']}/data").json()  # the document, read back by its id
    assert [p["id"] for p in stored["pages"]] == [p["request_id"] for p in pages]


def test_a_streamed_document_whose_page_fails_ends_with_that_error_and_stores_none(client, pg_url):
    """After its first page the status has gone out: the error is the last line, with the status it would have had;
    before it, the document is refused as JSON would be; nothing of it is stored either way."""
    frames = [Image.new("L", (2000, 1600), 255) for _ in range(3)]  # frame 3 is reached past the 8 MP limit
    for n, frame in enumerate(frames):
        frame.paste(render_lines([f"frame {n + 1}"], size=40)[0].convert("L"), (100, 100))
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:])
    files = {"image": ("three.png", buf.getvalue())}
    r, lines = ndjson_lines(client, {"pages": "all", "format": "ndjson"}, files)
    assert r.status_code == 200 and [next(iter(line)) for line in lines[:2]] == ["start", "page"], lines
    sent = [line["page"] for line in lines[1:-1]]  # page 1 alone first; page 2, read beside 3, may be cut short
    assert [p["text"] for p in sent] == [f"frame {n}" for n in range(1, len(sent) + 1)], lines
    failed = lines[-1]
    assert failed["status"] == 413 and failed["error"]["code"] == "image_too_large", failed
    ErrorResponse.model_validate({k: v for k, v in failed.items() if k != "status"})
    assert failed["error"]["message"].startswith("page 3: frame 3 of an animation")
    assert failed["request_id"] == lines[0]["start"]["request_id"] and "retry_after_s" not in failed  # final
    first = client.post("/api/v1/ocr", params={"pages": "3", "format": "ndjson"}, files=files)
    assert first.status_code == 413 and first.json()["error"]["code"] == "image_too_large", first.text
    one = client.post("/api/v1/ocr", params={"page": 1, "format": "ndjson"}, files=files)
    assert one.status_code == 422 and "?pages=" in one.json()["error"]["message"], one.text
    read = client.post("/api/v1/ocr", params={"pages": "1-2"}, files=files)
    wait_stored(pg_url, read.json()["pages"], (2, _boxes(read.json()["pages"])))  # by then the stream's would be too
    assert db_counts(pg_url, [{"request_id": page_id(failed["request_id"], n)} for n in (1, 2)]) == (0, 0)


def test_a_client_that_leaves_a_stream_stops_the_reading_and_nothing_of_it_is_stored(client, pg_url):
    """Serve cancels a request whose client is gone: the pages still to come are not read, none is stored."""
    from tests.serve.test_observability import _log_record

    texts = [[f"Page {n} of a document left early"] for n in range(1, 9)]
    files = {"image": ("eight.pdf", text_pdf(texts, size=16, width=360, height=144), "application/pdf")}
    t0 = time.monotonic()
    read = client.post("/api/v1/ocr", params={"pages": "all"}, files=files).json()  # how long all of it takes
    whole_s = time.monotonic() - t0
    _, lines = ndjson_lines(client, {"pages": "all", "format": "ndjson"}, files, stop_after=2)
    assert [next(iter(line)) for line in lines] == ["start", "page"], lines
    record = _log_record(lines[0]["start"]["request_id"])
    assert record["status"] == 499 and record["code"] == "client_closed" and "pages" not in record, record
    wait_stored(pg_url, read["pages"], (8, _boxes(read["pages"])))
    time.sleep(whole_s)  # had it read on, it would have been stored by now
    assert db_counts(pg_url, [{"request_id": page_id(lines[0]["start"]["request_id"], n)} for n in range(1, 9)]) \
        == (0, 0)


def test_a_stored_file_that_no_longer_decodes_is_a_clear_error_not_a_500(client, pg_url, storage_dirs):
    """The searchable PDF of a stored image decodes its file again: one damaged on disk says so."""
    rid = client.post("/api/v1/ocr", files={"image": ("d.png", png_bytes(["damaged later"]), "image/png")}).json()[
        "request_id"]
    stored_data(client, rid)
    stored_file(pg_url, storage_dirs, rid).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    r = client.get(f"/api/v1/images/{rid}/data", params={"format": "pdf"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "corrupt_image", r.text


@pytest.mark.parametrize("fmt,media_type,sent", [("HEIF", "image/heic", "multipart"), ("AVIF", "image/avif", "body")])
def test_a_phone_photo_is_stored_as_it_came_and_served_as_what_it_is(client, pg_url, storage_dirs, fmt, media_type,
                                                                     sent):
    """The photo itself is kept, not a re-encoding, under an extension and a type that a viewer opens, whether it
    came as a form's field or as the whole body."""
    data = save(Image.open(io.BytesIO(png_bytes(["photo of a page"]))).convert("RGB"), fmt)
    if sent == "body":
        body = client.post("/api/v1/ocr", content=data, headers={"Content-Type": media_type})
    else:
        body = client.post("/api/v1/ocr", files={"image": ("IMG_0002", data, "application/octet-stream")})
    assert body.status_code == 200, body.text
    rid = body.json()["request_id"]
    stored = stored_data(client, rid)
    assert stored["image"]["format"] == fmt
    assert [ln["text"] for ln in stored["lines"]] == [ln["text"] for ln in body.json()["lines"]] != []
    image = client.get(f"/api/v1/images/{rid}")
    assert image.headers["content-type"] == media_type and image.content == data
    file = stored_file(pg_url, storage_dirs, rid)
    assert file.suffix == f".{media_type.split('/')[1]}" and file.read_bytes() == data


@pytest.mark.parametrize("suffix", ["", "/data"])
def test_image_ids_are_validated(client, suffix):
    r = client.get(f"/api/v1/images/not-a-uuid{suffix}")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_id"
    r = client.get(f"/api/v1/images/{uuid.uuid4()}{suffix}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_corrections_need_a_known_image_and_a_value(client):
    r = client.post(f"/api/v1/images/{uuid.uuid4()}/corrections", json={"value": "x"})
    assert r.status_code == 404
    r = client.post("/api/v1/images/nope/corrections", json={"value": "x"})
    assert r.status_code == 400
    r = client.post(f"/api/v1/images/{uuid.uuid4()}/corrections", json={"value": ""})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    # a misspelt line_index is named, not dropped: dropped, it made a line's correction the whole image's text
    r = client.post(f"/api/v1/images/{uuid.uuid4()}/corrections", json={"value": "x", "lineIndex": 2})
    assert r.status_code == 422 and "lineIndex" in r.json()["error"]["message"], r.text
    # what the database cannot store is refused at once, not accepted (202) and then dead-lettered
    for body, words in (({"value": "a\x00b"}, "NUL"), ({"value": "x", "line_index": 2**31}, "line_index"),
                        ('{"value": "\\ud800"}', "unicode")):
        kw = {"content": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, str) else \
            {"json": body}
        r = client.post(f"/api/v1/images/{uuid.uuid4()}/corrections", **kw)
        assert r.status_code == 422 and words in r.json()["error"]["message"], (body, r.text)


async def _written_elsewhere(path: str) -> None:
    """The file of an image stored by another replica's archiver: none is read here."""


def _as_if_answered_elsewhere(pg_url: str, image_id: uuid.UUID, lines: int | None) -> None:
    """Store what another ingress replica's answer would have stored: its file only (``None``), or its lines too."""
    import asyncio
    from datetime import UTC, datetime

    from serve_app.storage import repository

    async def go():
        conn = await asyncpg.connect(pg_url)
        try:
            now = datetime.now(UTC)
            await repository.store_image_file(conn, image_id, f"elsewhere/{image_id}.png", now, _written_elsewhere)
            if lines is not None:
                result = {"image": {"width": 100, "height": 40, "format": "PNG"},
                          "lines": [{"box": [0, 10 * i, 90, 10 * i + 9], "text": f"line {i}", "words": []}
                                    for i in range(lines)]}
                await repository.store_result(conn, image_id, result, now)
        finally:
            await conn.close()

    asyncio.new_event_loop().run_until_complete(go())


def test_a_file_stored_before_its_answer_is_served_as_its_own_type(client, pg_url, storage_dirs):
    """An upload and its answer travel in two messages, and the image's row learns its format from the answer: read
    back at once, a file that came first was served as ``application/octet-stream``."""
    import asyncio
    from datetime import UTC, datetime

    from serve_app.storage import repository
    from serve_app.storage.archive import content_path

    upload, image_id = png_bytes(["the file came first"]), uuid.uuid4()

    async def write(path: str) -> None:
        (storage_dirs[0] / path).parent.mkdir(parents=True, exist_ok=True)
        (storage_dirs[0] / path).write_bytes(upload)

    async def go():
        conn = await asyncpg.connect(pg_url)
        try:
            await repository.store_image_file(conn, image_id, content_path(upload, "image/png"), datetime.now(UTC),
                                              write)
        finally:
            await conn.close()

    asyncio.new_event_loop().run_until_complete(go())
    r = client.get(f"/api/v1/images/{image_id}")
    assert r.status_code == 200 and r.content == upload and r.headers["content-type"] == "image/png", r.headers
    assert client.get(f"/api/v1/images/{image_id}/data").status_code == 404  # its answer: still on its way
    assert client.delete(f"/api/v1/images/{image_id}").status_code == 204


def test_a_correction_names_a_line_that_the_answer_has(client, pg_url):
    """A line past the answer's last is refused, whether this replica gave the answer or the database holds it."""
    body = client.post("/api/v1/ocr", files={"image": ("c.png", png_bytes(["only line"]), "image/png")}).json()
    assert len(body["lines"]) == 1
    rid = body["request_id"]

    def send(image_id, line_index):
        return client.post(f"/api/v1/images/{image_id}/corrections", json={"value": "fixed", "line_index": line_index})

    r = send(rid, 1)  # at once: the answer is remembered, not yet read back from the database
    assert r.status_code == 422 and r.json()["error"]["code"] == "line_out_of_range", r.text
    assert "has line 0" in r.json()["error"]["message"]
    assert send(rid, 0).status_code == 202 and send(rid, None).status_code == 202

    elsewhere = uuid.uuid4()
    _as_if_answered_elsewhere(pg_url, elsewhere, 3)
    r = send(elsewhere, 3)
    assert r.status_code == 422 and "lines 0 to 2" in r.json()["error"]["message"], r.text
    assert send(elsewhere, 2).status_code == 202
    poll(lambda: len(client.get(f"/api/v1/images/{elsewhere}/data").json()["corrections"]) == 1)
    assert client.get(f"/api/v1/images/{elsewhere}/data", params={"format": "text"}).text == "line 0\nline 1\nfixed\n"

    empty = uuid.uuid4()
    _as_if_answered_elsewhere(pg_url, empty, 0)
    r = send(empty, 0)
    assert r.status_code == 422 and "has no lines" in r.json()["error"]["message"], r.text

    # only the file has arrived: the answer's lines are still on their way, so the line is taken on trust, and the
    # data is not given out as if the image had no text
    pending = uuid.uuid4()
    _as_if_answered_elsewhere(pg_url, pending, None)
    assert send(pending, 5).status_code == 202
    r = client.get(f"/api/v1/images/{pending}/data")
    assert r.status_code == 404 and "not stored yet" in r.json()["error"]["message"] and "Retry-After" in r.headers


def test_listing_all_images_is_not_possible(client):
    assert client.get("/api/v1/images").status_code in (404, 405)


def test_readyz_reports_the_spool(client):
    storage = client.get("/readyz").json()["storage"]
    assert storage["spool_full"] is False and "spool_depth" in storage


def _burst(serve_url: str, uploads: list[bytes]) -> list[dict]:
    import asyncio

    import httpx

    async def go():
        async with httpx.AsyncClient(base_url=serve_url, timeout=120) as c:
            rs = await asyncio.gather(*(c.post("/api/v1/ocr", files={"image": ("b.png", d, "image/png")})
                                        for d in uploads))
        assert [r.status_code for r in rs] == [200] * len(uploads)
        return [r.json() for r in rs]

    return asyncio.run(go())


def _boxes(bodies: list[dict]) -> int:
    return sum(len(b["lines"]) + sum(len(ln["words"]) for ln in b["lines"]) for b in bodies)


def test_broker_stopped_during_a_burst_every_request_answered_and_stored_once(serve_url, pg_url):
    from tests.conftest import rabbitmqctl

    uploads = [png_bytes([f"broker test {i}"]) for i in range(6)]
    rabbitmqctl("stop_app")
    try:
        bodies = _burst(serve_url, uploads)  # answers do not wait for the broker
        time.sleep(1)
        assert db_counts(pg_url, bodies)[0] == 0
    finally:
        rabbitmqctl("start_app")
    expected = (6, _boxes(bodies))
    wait_stored(pg_url, bodies, expected, timeout=120)
    time.sleep(1)
    assert db_counts(pg_url, bodies) == expected


def test_archiver_replica_killed_mid_stream_no_loss_no_duplicates(serve_url, pg_url):
    import ray

    uploads = [png_bytes([f"kill test {i}", "two"]) for i in range(6)]
    bodies = _burst(serve_url, uploads[:3])
    (name,) = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "#Archiver#" in a["name"]]
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    bodies += _burst(serve_url, uploads[3:])  # the controller starts a new archiver; messages wait in the queues
    expected = (6, _boxes(bodies))
    wait_stored(pg_url, bodies, expected, timeout=180)
    time.sleep(1)
    assert db_counts(pg_url, bodies) == expected


def test_a_page_read_turned_is_stored_with_its_turn_and_boxes_in_upload_pixels(client):
    upload = Image.open(io.BytesIO(png_bytes(["turned over"]))).transpose(Image.Transpose.ROTATE_180)
    buf = io.BytesIO()
    upload.save(buf, "PNG")
    body = client.post("/api/v1/ocr", params={"rotate": "180"}, files={"image": ("t.png", buf.getvalue())})
    assert body.status_code == 200, body.text
    answer = body.json()
    assert answer["image"]["rotation"] == 180 and answer["text"] == "turned over"
    stored = stored_data(client, answer["request_id"])
    assert stored["image"]["rotation"] == 180
    (line,) = answer["lines"]
    assert [ln["box"] for ln in stored["lines"]] == [pytest.approx(line["box"], abs=1)]  # stored in whole pixels
    x0, y0, x1, y1 = line["box"]
    assert 0 <= x0 < x1 <= upload.width and 0 <= y0 < y1 <= upload.height


def test_sidecar_replica_killed_as_results_arrive_none_is_lost(serve_url, pg_url):
    """Answers are handed to the sidecar off the request path; a handover whose replica died is made again."""
    import asyncio

    import httpx
    import ray

    uploads = [png_bytes([f"word{i}"]) for i in range(30)]  # within the admission limit (32)

    async def go() -> list[dict]:
        async with httpx.AsyncClient(base_url=serve_url, timeout=120) as c:
            sent = [asyncio.create_task(c.post("/api/v1/ocr", params={"layout": "word"},
                                               files={"image": ("s.png", d, "image/png")})) for d in uploads]
            await asyncio.wait(sent, return_when=asyncio.FIRST_COMPLETED)  # handovers have begun
            (name,) = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "#Sidecar#" in a["name"]]
            ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
            rs = await asyncio.gather(*sent)
        assert [r.status_code for r in rs] == [200] * len(uploads)
        return [r.json() for r in rs]

    bodies = asyncio.run(go())
    expected = (30, _boxes(bodies))
    wait_stored(pg_url, bodies, expected, timeout=120)
    time.sleep(1)
    assert db_counts(pg_url, bodies) == expected


def test_sidecar_replica_killed_as_corrections_arrive_each_is_accepted_and_stored_once(client, serve_url, pg_url):
    """A correction whose sidecar replica died under it is sent again under the same id: 202, stored once."""
    import asyncio

    import httpx
    import ray

    rid = client.post("/api/v1/ocr", files={"image": ("k.png", png_bytes(["kill"]), "image/png")}).json()["request_id"]
    stored_data(client, rid)
    values = [f"correction {i}" for i in range(30)]  # within a client's share of the ingress (32)

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=serve_url, timeout=120) as c:
            sent = [asyncio.create_task(c.post(f"/api/v1/images/{rid}/corrections", json={"value": v}))
                    for v in values]
            await asyncio.wait(sent, return_when=asyncio.FIRST_COMPLETED)
            (name,) = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "#Sidecar#" in a["name"]]
            ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
            return await asyncio.gather(*sent)

    rs = asyncio.run(go())
    assert [(r.status_code, r.json().get("error")) for r in rs] == [(202, None)] * len(values)
    answered = sorted((r.json()["correction_id"], v) for r, v in zip(rs, values))
    poll(lambda: len(corrections(pg_url, rid)) >= len(values), timeout=120)
    time.sleep(1)
    assert sorted(corrections(pg_url, rid)) == answered


def _rows_and_files(pg_url: str, storage_dirs, rid: str, data: bytes) -> tuple[int, int, list[str]]:
    """(image rows, box rows, files) of one image, whose upload, a PNG, was ``data``."""
    import asyncio

    async def go() -> tuple[int, int]:
        conn = await asyncpg.connect(pg_url)
        try:
            return (await conn.fetchval("SELECT count(*) FROM image WHERE id = $1", uuid.UUID(rid)),
                    await conn.fetchval("SELECT count(*) FROM image_box WHERE image_id = $1", uuid.UUID(rid)))
        finally:
            await conn.close()

    file = storage_dirs[0] / content_path(data, "image/png")
    return (*asyncio.new_event_loop().run_until_complete(go()), [file.name] if file.exists() else [])


def _archiver_log_lines(text: str) -> list[str]:
    """Lines of the archiver replicas' Serve logs that hold ``text``."""
    import glob

    import ray

    logs_dir = ray._private.worker._global_node.get_logs_dir_path()
    return [ln for path in glob.glob(f"{logs_dir}/serve/replica_*Archiver*.log")
            for ln in open(path, errors="replace") if text in ln]


def test_an_image_deleted_is_gone_and_its_answer_still_on_the_way_is_never_stored(client, pg_url, storage_dirs):
    from ray import serve

    from tests.conftest import rabbitmqctl

    from .conftest import APP

    upload = png_bytes(["forget me"])
    rid = client.post("/api/v1/ocr", files={"image": ("d.png", upload, "image/png")}).json()["request_id"]
    stored_data(client, rid)
    client.post(f"/api/v1/images/{rid}/corrections", json={"value": "Forget me"})
    assert _rows_and_files(pg_url, storage_dirs, rid, upload)[2] == [content_path(upload, "image/png").split("/")[-1]]
    r = client.delete(f"/api/v1/images/{rid}")
    assert r.status_code == 204 and r.content == b""
    assert _rows_and_files(pg_url, storage_dirs, rid, upload) == (0, 0, [])
    assert client.get(f"/api/v1/images/{rid}").status_code == 404
    assert client.get(f"/api/v1/images/{rid}/data").status_code == 404
    assert client.post(f"/api/v1/images/{rid}/corrections", json={"value": "x"}).status_code == 404
    assert client.delete(f"/api/v1/images/{rid}").status_code == 204  # deleting is idempotent
    assert client.delete("/api/v1/images/nope").json()["error"]["code"] == "invalid_id"
    # the archiver's own line for it is in its replica's log (serve_app logs there, formatted by Serve)
    poll(lambda: _archiver_log_lines(f"deleted image {rid} at its owner's request (stored)"), timeout=30)

    archiver = serve.get_deployment_handle("Archiver", app_name=APP)
    discarded = archiver.status.remote().result()["discarded"]
    rabbitmqctl("stop_app")  # the answer waits in the sidecar's spool
    try:
        waiting = client.post("/api/v1/ocr", files={"image": ("w.png", upload := png_bytes(["on its way"]),
                                                              "image/png")})
        assert waiting.status_code == 200
        assert client.delete(f"/api/v1/images/{waiting.json()['request_id']}").status_code == 204
    finally:
        rabbitmqctl("start_app")
    poll(lambda: archiver.status.remote().result()["discarded"] >= discarded + 2, timeout=120)  # image and data
    time.sleep(1)
    assert _rows_and_files(pg_url, storage_dirs, waiting.json()["request_id"], upload) == (0, 0, [])


def test_stored_results_answer_503_while_the_database_is_down_and_nothing_is_lost(client, pg_url, pg_database):
    """Reads of stored results need PostgreSQL; while it refuses connections they answer 503 with Retry-After (not
    500), OCR itself goes on, and what was read meanwhile is stored once the database is back."""
    from tests.conftest import _admin, _run

    before = client.post("/api/v1/ocr", files={"image": ("d.png", png_bytes(["stored before"]), "image/png")}).json()
    rid = before["request_id"]
    stored_data(client, rid)
    _run(_admin(f'ALTER DATABASE "{pg_database}" ALLOW_CONNECTIONS false'))
    _run(_admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{pg_database}'"))
    try:
        for path in (f"/api/v1/images/{rid}", f"/api/v1/images/{rid}/data"):
            r = client.get(path)
            assert r.status_code == 503, (path, r.status_code, r.text[:300])
            assert r.json()["error"]["code"] == "storage_unavailable" and r.headers["Retry-After"] == "1"
        # an id this ingress has not answered lately needs the database to be known: not a 404 while it is down
        r = client.post(f"/api/v1/images/{uuid.uuid4()}/corrections", json={"value": "x"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable", r.text[:300]
        r = client.delete(f"/api/v1/images/{uuid.uuid4()}")  # a deletion is never answered before it is done
        assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable", r.text[:300]
        during = client.post("/api/v1/ocr", files={"image": ("d.png", png_bytes(["read meanwhile"]), "image/png")})
        assert during.status_code == 200 and during.json()["text"] == "read meanwhile"
        # ready all the same (answers wait in the queues), and saying where the database stands
        poll(lambda: (r := client.get("/readyz")).status_code == 200 and r.json()["storage"]["database"] == "down")
    finally:
        _run(_admin(f'ALTER DATABASE "{pg_database}" ALLOW_CONNECTIONS true'))
    poll(lambda: client.get("/readyz").json()["storage"]["database"] == "up")
    assert stored_data(client, rid)["lines"][0]["text"] == "stored before"
    bodies = [before, during.json()]
    expected = (2, _boxes(bodies))
    wait_stored(pg_url, bodies, expected, timeout=120)


def test_results_on_their_way_to_the_sidecar_when_the_ingress_is_replaced_are_stored(serve_url, pg_url, app_config):
    """A redeploy replaces the ingress replica gracefully; answers it had given but not yet handed to the sidecar
    (whose replica is restarting here, so the handovers wait) reach storage before the old replica exits."""
    import asyncio

    import httpx
    import ray
    from ray import serve

    from deployments.app import graph
    from serve_app.config import AppConfig

    from .conftest import APP, TEST_OVERRIDES, replicas

    uploads = [png_bytes([f"drain{i}"]) for i in range(12)]

    async def answered() -> list[dict]:
        (name,) = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "#Sidecar#" in a["name"]]
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
        async with httpx.AsyncClient(base_url=serve_url, timeout=120) as c:
            rs = await asyncio.gather(*(c.post("/api/v1/ocr", params={"layout": "word"},
                                               files={"image": ("s.png", d, "image/png")}) for d in uploads))
        assert [r.status_code for r in rs] == [200] * len(uploads)
        return [r.json() for r in rs]

    bodies = asyncio.run(answered())
    changed = AppConfig.load(overrides={**TEST_OVERRIDES, "ingress": {**TEST_OVERRIDES["ingress"], "retry_after_s": 2}})
    before = replicas()
    try:
        serve.run(graph(changed), name=APP, route_prefix="/")  # a new ingress replica; the old one shuts down
        # an ingress setting read at start replaces the ingress alone: the models and the archiver keep running
        after = replicas()
        assert after["Ingress"] - before["Ingress"]
        assert {k: after[k] for k in ("Detector", "Recognizer", "Archiver")} == \
            {k: before[k] for k in ("Detector", "Recognizer", "Archiver")}
    finally:
        serve.run(graph(app_config), name=APP, route_prefix="/")
    expected = (len(uploads), _boxes(bodies))
    wait_stored(pg_url, bodies, expected, timeout=120)


def test_the_archiver_comes_up_before_its_database_and_then_stores_what_waited(serve_url, amqp_url, tmp_path):
    """PostgreSQL refusing connections while the app deploys (a database that starts after Ray) must not fail the
    deployment: the archiver comes up, its reads raise `StorageUnavailable`, and once the database lets it in it
    applies the migrations and stores what waited in the queues."""
    import asyncio

    from ray import serve

    from deployments.archiver import ArchiverDeployment
    from serve_app.storage.messages import data_message, image_message
    from serve_app.storage.publisher import Publisher
    from serve_app.storage.repository import StorageUnavailable
    from serve_app.storage.spool import Spool
    from tests.conftest import PG_ADMIN, _admin, _run

    db = f"ocr_late_{uuid.uuid4().hex[:10]}"
    _run(_admin(f'CREATE DATABASE "{db}"'))
    _run(_admin(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false'))
    settings = {"mode": "on", "database_url": PG_ADMIN.rsplit("/", 1)[0] + f"/{db}", "rabbitmq_url": amqp_url,
                "image_dir": str(tmp_path / "images"), "spool_dir": str(tmp_path / "spool")}
    rid, png = str(uuid.uuid4()), png_bytes(["late database"])
    result = {"image": {"width": 300, "height": 60, "format": "PNG"}, "lines": [
        {"box": [5, 5, 200, 40], "text": "late database", "confidence": 0.9, "words": []}]}

    async def publish() -> None:
        publisher = Publisher(amqp_url, Spool(tmp_path / "publisher", 100, 10**7))
        publisher.start()
        assert publisher.submit(image_message(rid, png, "image/png")) and publisher.submit(data_message(rid, result))
        deadline = time.monotonic() + 30
        while publisher.status()["spool_depth"] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await publisher.close()

    try:
        archiver = serve.run(ArchiverDeployment.bind(settings), name="late_db", route_prefix=None)
        with pytest.raises(StorageUnavailable):
            archiver.data.remote(rid).result(timeout_s=30)
        asyncio.run(publish())
        time.sleep(1)
        _run(_admin(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true'))
        def read(method: str):  # None until stored; the first reads may still find the database out of reach
            try:
                return getattr(archiver, method).remote(rid).result(timeout_s=30)
            except StorageUnavailable:
                return None

        stored = poll(lambda: read("data"), timeout=120)
        assert [ln["text"] for ln in stored["lines"]] == ["late database"]
        assert poll(lambda: read("image"), timeout=60) == (png, "image/png")
    finally:
        serve.delete("late_db")
        _run(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


def test_a_hung_sidecar_holds_at_most_the_handover_budget_in_the_ingress(serve_url, pg_url, app_config):
    """While the sidecar hangs (its process stopped), answers still flow, and the ingress holds the uploads waiting
    for it only up to ``ingress.max_pending_handover_mb``: past that an answer is not stored, and says so in its log
    line, rather than the ingress growing until it is killed for memory and loses them all."""
    import os
    import signal

    import httpx
    import numpy as np
    import ray
    from ray import serve

    from deployments.app import graph
    from serve_app.config import AppConfig

    from .conftest import APP, TEST_OVERRIDES
    from .test_api import _ingress_log_records

    def noisy_png(seed: int) -> bytes:  # about 0.6 MB: noise does not compress
        pixels = np.random.default_rng(seed).integers(0, 255, (400, 600, 3), dtype=np.uint8)
        pixels[130:200, 40:560] = 255
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "PNG")
        return buf.getvalue()

    uploads = [noisy_png(i) for i in range(3)]
    assert all(500_000 < len(u) < 1_000_000 for u in uploads)
    tight = AppConfig.load(overrides={**TEST_OVERRIDES,
                                      "ingress": {**TEST_OVERRIDES["ingress"], "max_pending_handover_mb": 1}})
    serve.run(graph(tight), name=APP, route_prefix="/")
    (name,) = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "#Sidecar#" in a["name"]]
    pid = ray.get(ray.get_actor(name, namespace="serve").__ray_call__.remote(lambda _: os.getpid()))
    os.kill(pid, signal.SIGSTOP)
    try:
        with httpx.Client(base_url=serve_url, timeout=60) as c:
            rs = [c.post("/api/v1/ocr", params={"layout": "word"}, files={"image": ("n.png", u, "image/png")})
                  for u in uploads]
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        assert [r.status_code for r in rs] == [200] * 3
        bodies = [r.json() for r in rs]
        poll(lambda: db_counts(pg_url, bodies[:1])[0] == 1, timeout=120)  # the first fitted in the budget
        time.sleep(2)
        assert db_counts(pg_url, bodies[1:])[0] == 0
        records = _ingress_log_records({b["request_id"] for b in bodies})
        assert [records[b["request_id"]].get("stored") for b in bodies] == [None, False, False]
    finally:
        serve.run(graph(app_config), name=APP, route_prefix="/")
