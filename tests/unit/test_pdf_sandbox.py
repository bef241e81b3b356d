"""PDF pages rendered in worker processes: the same pixels, and a page that costs too much stopped, not waited on."""

import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pypdfium2 as pdfium
import pytest

from serve_app.imaging import CorruptImage, ImageTooLarge, PageOutOfRange, decode_image, decode_pdf
from serve_app.pdf_sandbox import PdfSandbox
from training.pdfs import text_pdf

MB = 1024 * 1024


def busy_pdf(paths: int) -> bytes:
    """One page drawing ``paths`` one-point squares, Flate-compressed: a million of them in 26 kB."""
    content = zlib.compress(b"0 0 1 1 re f\n" * paths, 9)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n%b\nendstream" % (len(content), content)]
    out, offsets = bytearray(b"%PDF-1.7\n"), []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%b\nendobj\n" % (i, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture()
def sandbox():
    """Bounded by the clock alone: a busy page of three million paths peaks near 1.1 GB, and PDFium grows its lists by
    doubling, so with 1 GiB a fast machine met the memory bound before the deadline (a different refusal)."""
    box = PdfSandbox(timeout_s=2, memory_mb=4096, idle=2)
    yield box
    box.close()


def test_a_page_comes_back_as_rendered_in_process(sandbox):
    data = text_pdf([["first page"], ["second", "page"]], width=360, height=144)
    for page in (1, 2):
        got = sandbox.render(data, 10_000_000, None, page, 150)
        want = decode_pdf(data, 10_000_000, None, page, 150)
        assert (got.format, got.page, got.pages, got.dpi) == (want.format, want.page, want.pages, want.dpi)
        assert np.array_equal(got.pixels, want.pixels) and (got.pixels < 100).any()
    via_upload = decode_image(data, MB, 10_000_000, page=2, pdf_dpi=150, render_pdf=sandbox.render)
    assert np.array_equal(via_upload.pixels, want.pixels)
    assert sandbox.lost == 0


def test_the_clients_errors_come_back_as_themselves(sandbox):
    with pytest.raises(PageOutOfRange, match="the PDF has 1 page"):
        sandbox.render(text_pdf([["one"]]), 10_000_000, None, 3, 100)
    with pytest.raises(CorruptImage, match="PDF could not be opened"):
        sandbox.render(text_pdf([["cut"]])[:200], 10_000_000, None, 1, 100)
    assert sandbox.lost == 0  # a worker that answered is kept


def test_a_page_that_draws_too_much_is_refused_at_the_deadline_and_the_next_is_read(sandbox):
    """Three million paths in 77 kB: PDFium parses them for about 5 s, and nothing in its API stops it."""
    t0 = time.monotonic()
    with pytest.raises(ImageTooLarge, match="not rendered within 2 s") as info:
        sandbox.render(busy_pdf(3_000_000), 10_000_000, None, 1, 100)
    assert info.value.status == 413 and time.monotonic() - t0 < 4
    assert sandbox.lost == 1
    assert sandbox.render(text_pdf([["next"]]), 10_000_000, None, 1, 100).pages == 1


def test_a_page_that_needs_more_memory_than_its_worker_may_have_is_refused():
    """Ten million paths in 253 kB took 3.5 GB to load; the worker's address space is bounded by the kernel."""
    box = PdfSandbox(timeout_s=30, memory_mb=400, idle=1)
    try:
        t0 = time.monotonic()
        with pytest.raises(ImageTooLarge, match="400 MiB") as info:
            box.render(busy_pdf(10_000_000), 10_000_000, None, 1, 100)
        assert info.value.status == 413 and time.monotonic() - t0 < 20
        assert box.render(text_pdf([["after"]]), 10_000_000, None, 1, 100).pages == 1
    finally:
        box.close()


def test_pages_rendered_at_once_each_get_their_own_worker(sandbox):
    data = text_pdf([["one"], ["two"], ["three"], ["four"]])
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda p: sandbox.render(data, 10_000_000, None, p, 100), [1, 2, 3, 4]))
    assert [g.page for g in got] == [1, 2, 3, 4]
    assert len({g.pixels.tobytes() for g in got}) == 4
    assert len(sandbox._idle) == 2  # the extra workers started for the burst are not kept


def test_a_worker_killed_while_idle_is_replaced_without_the_page_noticing(sandbox):
    for worker in list(sandbox._idle):
        worker.proc.kill()
        worker.proc.wait()
    assert sandbox.render(text_pdf([["fresh"]]), 10_000_000, None, 1, 100).pages == 1
    assert sandbox.lost == 0


def test_words_are_laid_over_a_page_in_a_worker_and_a_page_too_busy_to_parse_is_stopped(sandbox):
    """`searchable_pdf.over_pdf` parses the page's content again: the same bounds hold as for rendering it."""
    answer = {"image": {"width": 1700, "height": 2200, "format": "PDF", "page": 1, "pages": 1, "rotation": 0},
              "lines": [{"words": [{"text": "Paid", "box": [100, 100, 300, 160], "confidence": 0.9}]}]}
    laid = sandbox.overlay(busy_pdf(1_000), [answer])
    assert pdfium.PdfDocument(laid)[0].get_textpage().get_text_range().split() == ["Paid"]
    t0 = time.monotonic()
    with pytest.raises(ImageTooLarge, match="not written with its words within 2 s"):
        sandbox.overlay(busy_pdf(3_000_000), [answer])
    assert time.monotonic() - t0 < 4 and sandbox.lost == 1
    with pytest.raises(CorruptImage):
        sandbox.overlay(b"%PDF-1.7 cut", [answer])
    assert sandbox.lost == 1  # said so, and kept its worker
