"""A request's answer in its format (`serve_app.documents`): one page's, or a document of the pages ``?pages=`` read."""

import pytest

from serve_app import documents, hocr

from .test_alto import answer
from .test_tsv import table


def page(n: int, text_ms: float = 10.0) -> dict:
    body = answer(page=n)
    body["request_id"] = f"page-{n}"
    body["timings"] = {"decode_ms": n, "detect_ms": 2 * n, "recognize_ms": text_ms, "total_ms": 100.0}
    return body


def test_a_document_holds_its_pages_in_order_with_their_stages_summed():
    pages = [page(1), page(2)]
    doc = documents.document("doc", pages, {"detector": "d"}, total_ms=150.0)
    assert doc["pages"] is pages and documents.pages_of(doc) is pages and documents.pages_of(pages[0]) == [pages[0]]
    assert doc["timings"] == {"decode_ms": 3, "detect_ms": 6, "recognize_ms": 20.0, "total_ms": 150.0}
    assert doc["text"] == "Total due: 38.90\nThank you\fTotal due: 38.90\nThank you"


def test_every_format_writes_a_document_page_by_page_and_one_page_as_before():
    doc = documents.document("doc", [page(1), page(2)], {}, total_ms=1.0)
    text, media_type, headers = documents.formatted(doc, "text", "scan.pdf")
    assert media_type == "text/plain" and text == "Total due: 38.90\nThank you\n\f" * 2  # Tesseract ends pages so
    assert headers == {"X-Page-Request-Ids": "page-1, page-2"}  # where each page was stored
    one, _, headers = documents.formatted(page(1), "text", None)
    assert one == "Total due: 38.90\nThank you\n" and headers == {}
    rows = table(documents.formatted(doc, "tsv", None)[0])
    assert [r["page_num"] for r in rows if r["level"] == "1"] == ["1", "2"]
    markup, media_type, _ = documents.formatted(doc, "hocr", "scan.pdf")
    assert media_type == hocr.MEDIA_TYPE and markup.count('class="ocr_page"') == 2 and "<title>doc</title>" in markup
    xml, _, _ = documents.formatted(doc, "alto", "scan.pdf")
    assert xml.count("<Page ") == 2 and "<fileName>scan.pdf</fileName>" in xml
    doc["pdf"] = b"%PDF-"
    pdf, media_type, headers = documents.formatted(doc, "pdf", None)
    assert (pdf, media_type, headers) == (b"%PDF-", "application/pdf", {
        "Content-Disposition": 'inline; filename="doc.pdf"', "X-Page-Request-Ids": "page-1, page-2"})
    assert "pdf" not in doc
    with pytest.raises(ValueError):
        documents.formatted(doc, "docx", None)


def test_what_is_stored_and_forwarded_has_no_preview_and_the_answer_keeps_its_own():
    pages = [{**answer(page=n), "preview": {"url": "data:image/jpeg;base64,AAAA", "width": 64, "height": 20}}
             for n in (1, 2)]
    stored = documents.to_store(pages, "2026-12-06T16:00:00+00:00")
    assert [sorted(s) for s in stored] == [sorted([*answer(), "created_at"])] * 2
    assert [s["image"]["page"] for s in stored] == [1, 2] and stored[0]["lines"] == pages[0]["lines"]
    assert all("preview" in p and "created_at" not in p for p in pages)


def test_timings_go_as_a_server_timing_header_in_their_order():
    header = documents.server_timing({"decode_ms": 5.24, "detect_ms": 392.649, "recognize_ms": 216.7,
                                      "total_ms": 622.95})
    assert header == "decode;dur=5.2, detect;dur=392.6, recognize;dur=216.7, total;dur=623.0"
