"""The shipped client (`serve_app.client`) against the real Serve app: every page of a PDF, and a lost ingress
replica ridden out without losing an answer. A full admission queue: `test_api.py`, in the overload test."""

import asyncio
import json
import math
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pypdfium2 as pdfium
import pytest
import ray
from PIL import Image

from serve_app.client import OCRClient, OCRError, RetryPolicy
from tests.unit.test_alto import A as ALTO
from tests.unit.test_alto import assert_valid_alto
from tests.unit.test_tsv import table as tsv_table
from training.pdfs import text_pdf
from training.synth import render_lines

from .test_api import png

pytestmark = pytest.mark.serve


def test_the_command_line_reads_every_page_of_a_pdf_and_reports_what_it_could_not(serve_url, tmp_path):
    texts = [["Invoice number 4521", "Total due 38.90"], ["Kind regards"], ["Page three"]]
    (tmp_path / "bill.pdf").write_bytes(text_pdf(texts, size=16, width=360, height=144))
    (tmp_path / "notes.txt").write_text("not a picture")
    run = subprocess.run([sys.executable, "-m", "serve_app.client", str(tmp_path / "bill.pdf"),
                          str(tmp_path / "notes.txt"), "--pages", "all", "--json", "--url", serve_url,
                          "--hocr", str(tmp_path / "hocr"), "--pdf", str(tmp_path / "pdf"),
                          "--alto", str(tmp_path / "alto"), "--tsv", str(tmp_path / "tsv")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr  # one file could not be read
    records = [json.loads(line) for line in run.stdout.splitlines()]
    pages = [r for r in records if r["file"].endswith("bill.pdf")]
    assert [(r["image"]["page"], r["image"]["pages"]) for r in pages] == [(1, 3), (2, 3), (3, 3)]
    assert [r["text"] for r in pages] == ["\n".join(t) for t in texts]
    assert len({r["request_id"] for r in pages}) == 3
    (bad,) = [r for r in records if r["file"].endswith("notes.txt")]
    assert bad["error"]["code"] == "unsupported_media_type" and bad["attempts"] == 1  # a 4xx is never retried
    assert bad["request_id"]
    # the pages read, as one hOCR document per file; none for the file not read
    assert sorted(p.name for p in (tmp_path / "hocr").iterdir()) == ["bill.pdf.hocr"]
    root = ET.parse(tmp_path / "hocr" / "bill.pdf.hocr").getroot()
    ns = {"h": "http://www.w3.org/1999/xhtml"}
    hocr_pages = root.findall(".//h:div[@class='ocr_page']", ns)
    assert [p.get("title").split("; ")[2] for p in hocr_pages] == ["ppageno 0", "ppageno 1", "ppageno 2"]
    assert [" ".join(w.text for w in p.iterfind(".//h:span[@class='ocrx_word']", ns)) for p in hocr_pages] == \
        [r["text"].replace("\n", " ") for r in pages]
    # as one ALTO document
    assert sorted(p.name for p in (tmp_path / "alto").iterdir()) == ["bill.pdf.xml"]
    root = assert_valid_alto((tmp_path / "alto" / "bill.pdf.xml").read_bytes())
    alto_pages = root.findall(f".//{ALTO}Page")
    assert [p.get("PHYSICAL_IMG_NR") for p in alto_pages] == ["1", "2", "3"]
    assert [" ".join(s.get("CONTENT") for s in p.iter(f"{ALTO}String")) for p in alto_pages] == \
        [r["text"].replace("\n", " ") for r in pages]
    # as one TSV table
    rows = tsv_table((tmp_path / "tsv" / "bill.pdf.tsv").read_text("utf-8"))
    assert [" ".join(r["text"] for r in rows if r["level"] == "5" and r["page_num"] == str(n)) for n in (1, 2, 3)] \
        == [r["text"].replace("\n", " ") for r in pages]
    # and as one searchable PDF: the pages at their own size, each copying its words
    assert sorted(p.name for p in (tmp_path / "pdf").iterdir()) == ["bill.pdf.pdf"]
    searchable = pdfium.PdfDocument(tmp_path / "pdf" / "bill.pdf.pdf")
    assert [searchable[i].get_size() for i in range(len(searchable))] == [pytest.approx((360, 144), abs=0.5)] * 3
    assert [searchable[i].get_textpage().get_text_range().split() for i in range(3)] == \
        [r["text"].split() for r in pages]


def test_the_command_line_prints_a_blank_line_between_blocks_of_text(serve_url, tmp_path):
    first, _ = render_lines(["Invoice number 4521", "Total due 38.90"], size=28)
    second, _ = render_lines(["Thank you"], size=28)
    sheet = Image.new("RGB", (first.width, first.height + 60 + second.height), "white")
    sheet.paste(first, (0, 0))
    sheet.paste(second, (0, first.height + 60))
    sheet.save(tmp_path / "letter.png")
    run = subprocess.run([sys.executable, "-m", "serve_app.client", str(tmp_path / "letter.png"), "--url", serve_url],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"== {tmp_path / 'letter.png'} page 1/1\nInvoice number 4521\nTotal due 38.90\n\nThank you\n"
    piped = subprocess.run(_command(serve_url, "-", "--text", str(tmp_path / "out")), capture_output=True,
                           input=(tmp_path / "letter.png").read_bytes(), timeout=120)  # `... | client -`
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.decode() == "== - page 1/1\nInvoice number 4521\nTotal due 38.90\n\nThank you\n"
    assert (tmp_path / "out" / "stdin.txt").read_text() == "Invoice number 4521\nTotal due 38.90\n\nThank you\n\f"
    (tmp_path / "two.pdf").write_bytes(text_pdf([["Front page"], ["Back page"]], size=16, width=360, height=144))
    first = subprocess.run(_command(serve_url, str(tmp_path / "two.pdf")), capture_output=True, text=True, timeout=120)
    assert first.stdout == f"== {tmp_path / 'two.pdf'} page 1/2\nFront page\n", first.stderr  # the first, by default
    assert f"== {tmp_path / 'two.pdf'}: holds 2 pages, of which page 1 was read (--pages all" in first.stderr
    asked = subprocess.run(_command(serve_url, str(tmp_path / "two.pdf"), "--pages", "1"), capture_output=True,
                           text=True, timeout=120)
    assert asked.stdout == first.stdout and "holds 2 pages" not in asked.stderr  # asked for: nothing to say


def test_the_client_reads_corrects_and_deletes_what_is_stored(serve_url):
    """The stored results through the same retrying client: asked for at once after the answer, they come once
    stored (a 404 that says when to ask again is asked again); a plain 404 is final."""
    upload = png(render_lines(["Invoice number 4521", "Total due 38.90"], size=28)[0])

    async def go() -> tuple:
        async with OCRClient(serve_url, policy=RetryPolicy(attempts=40, max_backoff_s=1.0, deadline_s=60)) as c:
            answer = await c.ocr(upload, "bill.png", preview=120)
            rid = answer.body["request_id"]
            x0, y0, x1, y1 = answer.body["lines"][1]["box"]
            part = await c.ocr(upload, "bill.png", region=(x0 - 8, y0 - 8, x1 + 8.5, y1 + 8))
            stored = await c.stored(rid)  # may not be in the database yet
            file = await c.image(rid)
            cid = await c.correct(rid, "Total due 39.80", line_index=1)
            deadline = time.monotonic() + 60
            while not (await c.stored(rid))["corrections"] and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
            text = await c.stored(rid, "text")
            pdf = await c.stored(rid, "pdf")
            await c.delete(rid)
            with pytest.raises(OCRError) as gone:
                await c.stored(rid)
            return answer.body, part.body, stored, file, cid, text, pdf, gone.value

    body, part, stored, file, cid, text, pdf, gone = asyncio.run(go())
    assert part["text"] == "Total due 38.90"  # the region alone, sent as the pixels holding it
    assert part["image"]["region"][2] == math.ceil(body["lines"][1]["box"][2] + 8.5)
    assert [ln["text"] for ln in stored["lines"]] == [ln["text"] for ln in body["lines"]] and file == upload
    assert body["preview"]["width"] == 120 and body["preview"]["url"].startswith("data:image/jpeg;base64,")
    assert text == "Invoice number 4521\nTotal due 39.80\n" and len(cid) == 36
    assert pdf.startswith(b"%PDF-") and pdfium.PdfDocument(pdf)[0].get_textpage().get_text_range().split()[-3:] \
        == ["Total", "due", "39.80"]
    assert (gone.status, gone.code, gone.attempts) == (404, "not_found", 1)


def _command(serve_url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "serve_app.client", *args, "--url", serve_url]


def test_the_command_line_reads_a_folder_keeps_its_subfolders_apart_and_skips_what_is_done(serve_url, tmp_path):
    """Two scans of one name in two folders keep two outputs (the second overwrote the first); a run again with
    ``--skip-done`` reads only the file whose output is missing, and never an output folder's PDFs as scans."""
    scans = tmp_path / "scans"
    for folder, line in (("2024-01", "Alpha invoice 12"), ("2024-02", "Beta receipt 34")):
        (scans / folder).mkdir(parents=True)
        render_lines([line], size=28)[0].save(scans / folder / "page.png")
    (scans / "2024-02" / "letter.pdf").write_bytes(text_pdf([["First page here"], ["Second page there"]], size=16,
                                                            width=360, height=144))
    (scans / "2024-02" / "notes.txt").write_text("not a scan")  # in a folder only readable types are read
    (scans / ".trash").mkdir()
    render_lines(["Deleted scan"], size=28)[0].save(scans / ".trash" / "old.png")
    outputs = ["--text", str(scans / "ocr" / "text"), "--pdf", str(scans / "ocr" / "pdf")]  # inside the folder read

    first = subprocess.run(_command(serve_url, str(scans), "--pages", "all", "--json", *outputs),
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    records = [json.loads(line) for line in first.stdout.splitlines()]
    assert [(Path(r["file"]).relative_to(scans).as_posix(), r["image"]["page"]) for r in records] == [
        ("2024-01/page.png", 1), ("2024-02/letter.pdf", 1), ("2024-02/letter.pdf", 2), ("2024-02/page.png", 1)]
    text = scans / "ocr" / "text"
    assert sorted(p.relative_to(text).as_posix() for p in text.rglob("*")) == [
        "2024-01", "2024-01/page.png.txt", "2024-02", "2024-02/letter.pdf.txt", "2024-02/page.png.txt"]
    assert (text / "2024-01" / "page.png.txt").read_text() == "Alpha invoice 12\n\f"
    assert (text / "2024-02" / "page.png.txt").read_text() == "Beta receipt 34\n\f"
    assert (text / "2024-02" / "letter.pdf.txt").read_text() == "First page here\n\fSecond page there\n\f"
    with httpx.Client(base_url=serve_url, timeout=120) as http:  # what the service writes of the same document
        assert http.post("/api/v1/ocr?pages=all&format=text", files={"image": (scans / "2024-02" / "letter.pdf").open(
            "rb")}).text == (text / "2024-02" / "letter.pdf.txt").read_text()
    assert len(pdfium.PdfDocument(scans / "ocr" / "pdf" / "2024-02" / "letter.pdf.pdf")) == 2
    assert "3 of 3 files read (4 pages)" in first.stderr

    (text / "2024-02" / "page.png.txt").unlink()  # as if the run had stopped before it
    again = subprocess.run(_command(serve_url, str(scans), "--pages", "all", "--json", "--skip-done", *outputs),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert [Path(json.loads(line)["file"]).relative_to(scans).as_posix() for line in again.stdout.splitlines()] \
        == ["2024-02/page.png"]
    assert (text / "2024-02" / "page.png.txt").read_text() == "Beta receipt 34\n\f"
    assert "1 of 3 files read (1 pages)" in again.stderr and "2 skipped as done" in again.stderr


def test_an_interrupted_batch_keeps_every_file_read_before_it_and_goes_on_from_there(serve_url, tmp_path):
    """Outputs are written as each file is read (they were written once every file was), whole or not at all."""
    render_lines(["Small page first"], size=28)[0].save(tmp_path / "a.png")
    pages = [[f"Long document page {n}"] for n in range(1, 13)]
    (tmp_path / "b.pdf").write_bytes(text_pdf(pages, size=16, width=360, height=144))
    out = tmp_path / "out"
    command = _command(serve_url, str(tmp_path / "a.png"), str(tmp_path / "b.pdf"), "--pages", "all",
                       "--concurrency", "1", "--text", str(out), "--json")
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "a.png.txt").exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run.poll() is None, "the first file's output came only once the run had ended"
        assert (out / "a.png.txt").read_text() == "Small page first\n\f"
        run.send_signal(signal.SIGINT)  # while the document is being read
        stdout, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 130, stderr
    assert [json.loads(line)["file"] for line in stdout.splitlines()] == [str(tmp_path / "a.png")]
    assert "interrupted with 1 not read" in stderr and "--skip-done" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png.txt"]  # no half-written output of the document

    again = subprocess.run([*command, "--skip-done"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert [json.loads(line)["file"] for line in again.stdout.splitlines()] == [str(tmp_path / "b.pdf")] * 12
    assert (out / "b.pdf.txt").read_text() == "".join(f"{p[0]}\n\f" for p in pages)


def test_the_client_rides_out_a_lost_ingress_replica(client, serve_url):
    """Serve's proxy answers the requests inside a killed ingress replica with a plain-text 500 (it cannot send an
    upload again; `benchmarks.faults`); the client can, and every request gets its own words."""
    names = ["Amber", "Bridge", "Copper", "Delta", "Garden", "Harbor"]
    uploads = []
    for i, name in enumerate(names):
        text, _ = render_lines([f"{name} ingress lost"], size=28)
        frame = Image.new("RGB", (1280, 720), (255, 255, 255))
        frame.paste(text, (100 + 40 * i, 200))
        uploads.append(png(frame))

    async def kill_during_burst() -> list:
        async with OCRClient(serve_url, policy=RetryPolicy(attempts=8, deadline_s=180)) as c:
            sent = [asyncio.create_task(c.ocr(data, f"{i}.png")) for i, data in enumerate(uploads)]
            await asyncio.sleep(0.6)  # decoded, and in the detector's first batch
            (actor,) = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "#Ingress#" in a["name"]]
            ray.kill(ray.get_actor(actor, namespace="serve"), no_restart=True)
            return await asyncio.gather(*sent, return_exceptions=True)

    try:
        answers = asyncio.run(kill_during_burst())
        failed = [a for a in answers if isinstance(a, BaseException)]
        assert not failed, failed
        assert [a.body["text"] for a in answers] == [f"{n} ingress lost" for n in names]
        assert max(a.attempts for a in answers) > 1, "no request was in the killed replica"
    finally:
        deadline = time.monotonic() + 120  # leave the app whole for the tests after this one
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(1)


def test_the_client_names_its_calls_so_that_a_call_made_again_is_one_request(client, serve_url):
    data = png(render_lines(["Same call"], size=28)[0])

    async def read() -> list:
        async with OCRClient(serve_url) as c:
            return await asyncio.gather(c.ocr(data, "a.png", idempotency_key="job 7"),
                                        c.ocr(data, "a.png", idempotency_key="job 7"), c.ocr(data, "a.png"),
                                        c.ocr(data, "a.png"))

    keyed, again, plain, other = asyncio.run(read())
    raw = client.post("/api/v1/ocr", headers={"Idempotency-Key": "job 7"},
                      files={"image": ("a.png", data, "image/png")})
    assert keyed.body["request_id"] == again.body["request_id"] == raw.json()["request_id"]
    assert len({keyed.body["request_id"], plain.body["request_id"], other.body["request_id"]}) == 3
    assert keyed.body["text"] == plain.body["text"] == "Same call"


def test_the_client_waits_its_turn_when_it_is_past_its_share(serve_url, app_config):
    """One request in progress per client (``ingress.max_requests_per_client: 1``, taken live): of four sent at
    once, the three past the share are answered 429, and the client sends each again after its Retry-After until
    all four are read."""
    from ray import serve

    from deployments.app import graph
    from serve_app.config import AppConfig

    from .conftest import APP, TEST_OVERRIDES

    words = ["Alpha", "Bravo", "Charlie", "Delta"]
    uploads = [png(render_lines([w], size=28)[0]) for w in words]
    one_each = AppConfig.load(overrides={**TEST_OVERRIDES, "ingress": {**TEST_OVERRIDES["ingress"],
                                                                        "max_requests_per_client": 1}})
    serve.run(graph(one_each), name=APP, route_prefix="/")  # user_config only: the ingress reconfigures in place

    async def read() -> list:
        async with OCRClient(serve_url, policy=RetryPolicy(attempts=10, deadline_s=120)) as c:
            return await asyncio.gather(*(c.ocr(data, f"{w}.png") for w, data in zip(words, uploads)))

    try:
        answers = asyncio.run(read())
    finally:
        serve.run(graph(app_config), name=APP, route_prefix="/")
    assert [a.body["text"] for a in answers] == words
    assert max(a.attempts for a in answers) > 1, [a.attempts for a in answers]


def test_a_page_past_the_last_is_an_error_at_once(serve_url):
    async def ask() -> OCRError:
        async with OCRClient(serve_url) as c:
            with pytest.raises(OCRError) as caught:
                await c.ocr_pages(text_pdf([["One page"]]), "one.pdf", pages="1-2")
            return caught.value

    error = asyncio.run(ask())
    assert (error.status, error.code, error.attempts) == (422, "page_out_of_range", 1)


def _counting(client: OCRClient) -> list[str]:
    """The query of every request the client sends (an httpx event hook on its connection pool)."""
    sent: list[str] = []

    async def note(request) -> None:
        sent.append(request.url.query.decode())

    client._http.event_hooks["request"].append(note)
    return sent


def test_the_pages_of_a_document_are_one_request_that_sends_the_upload_once(serve_url):
    """A request per page sent the whole upload each time (a 50-page, 10 MB PDF: 500 MB up, 49 requests at once)."""
    from deployments.request_ids import page_id, request_id

    texts = [["Kind regards"], ["Total due 38.90"], ["Page three"]]

    async def read() -> tuple[list, list[str]]:
        async with OCRClient(serve_url) as c:
            sent = _counting(c)
            return await c.ocr_pages(text_pdf(texts, size=16, width=360, height=144), "three.pdf", pages="all",
                                     idempotency_key="doc 3"), sent

    answers, sent = asyncio.run(read())
    assert [a.body["text"] for a in answers] == [t[0] for t in texts]
    assert [a.body["image"]["page"] for a in answers] == [1, 2, 3] and len(sent) == 1 and "pages=all" in sent[0]
    document = request_id("doc 3", None)  # the key names the document; its pages are stored under ids of it
    assert [a.body["request_id"] for a in answers] == [page_id(document, n) for n in (1, 2, 3)]


def test_the_client_tells_of_each_page_of_a_document_as_its_line_comes(serve_url):
    """``on_page``: the document streamed (``format=ndjson``), one request; each page heard of once, in order."""
    texts = [["Heard first"], ["Heard second"], ["Heard third"]]
    data = text_pdf(texts, size=16, width=360, height=144)

    async def read() -> tuple[list, list, list, list[str]]:
        heard: list = []
        async with OCRClient(serve_url) as c:
            sent = _counting(c)
            streamed = await c.ocr_pages(data, "three.pdf", pages="all", idempotency_key="heard", on_page=heard.append)
            whole = await c.ocr_pages(data, "three.pdf", pages="all", idempotency_key="heard")
            return streamed, whole, heard, sent

    streamed, whole, heard, sent = asyncio.run(read())
    assert [a.body["text"] for a in heard] == [t[0] for t in texts] and heard == streamed
    def read_as(answers: list) -> list:
        return [(a.body["request_id"], a.body["image"], a.body["lines"]) for a in answers]
    assert read_as(streamed) == read_as(whole)  # the same pages, under the same ids
    assert len(sent) == 2 and "format=ndjson" in sent[0] and "format" not in sent[1]


def test_past_the_services_page_limit_the_client_reads_the_pages_in_parts_of_that_limit(serve_url, client):
    """``ingress.max_pages`` (50) refuses 413 ``too_many_pages`` and says how many one request reads; the client
    then asks for the pages in parts of that many, the upload sent once a part (it sent a request per page, each
    with the whole upload: 51 uploads for these 51 pages, now 2), and still answers every page in order."""
    texts = [[f"Sheet {n}"] for n in range(1, 53)]
    data = text_pdf(texts, size=14, width=200, height=60)
    refused = client.post("/api/v1/ocr", params={"pages": "1-52"}, files={"image": ("long.pdf", data)})
    assert refused.status_code == 413 and refused.json()["error"]["max_pages"] == 50

    heard: list = []

    async def read(pages: str) -> tuple[list, list[str]]:
        heard.clear()
        async with OCRClient(serve_url) as c:
            sent = _counting(c)
            return await c.ocr_pages(data, "long.pdf", pages=pages, idempotency_key=f"long {pages}",
                                     on_page=heard.append), sent

    answers, sent = asyncio.run(read("2-52"))
    assert [a.body["image"]["page"] for a in answers] == list(range(2, 53))
    assert heard == answers  # told of in page order, though the parts are read side by side
    assert [a.body["text"] for a in answers] == [t[0] for t in texts[1:]]
    assert [q for q in sent if "pages=" in q] == sent and len(sent) == 3  # refused before any page was read
    assert "pages=2-52" in sent[0] and sorted(sent[1:]) == sorted(["pages=2-51&rotate=0&format=ndjson",
                                                                "pages=52&rotate=0&format=ndjson"])

    answers, sent = asyncio.run(read("all"))  # refused once the first page says how many there are
    assert [a.body["text"] for a in answers] == [t[0] for t in texts] and heard == answers
    assert [q.split("&")[0] for q in sent] == ["pages=all", "pages=1-50", "pages=51-52"]
    assert len({a.body["request_id"] for a in answers}) == 52


def test_the_client_sends_a_word_filter_of_its_own(serve_url, tmp_path):
    img, _ = render_lines(["Kind regards"], size=28)
    data = png(img)

    async def go() -> None:
        async with OCRClient(serve_url) as c:
            with pytest.raises(OCRError) as info:  # out of range: the service says so, and it is not sent again
                await c.ocr(data, "a.png", min_confidence=1.5)
            assert (info.value.status, info.value.code, info.value.attempts) == (422, "invalid_request", 1)
            assert (await c.ocr(data, "a.png", min_confidence=0)).body["text"] == "Kind regards"

    asyncio.run(go())
    (tmp_path / "a.png").write_bytes(data)
    run = subprocess.run([sys.executable, "-m", "serve_app.client", str(tmp_path / "a.png"), "--json", "--url",
                          serve_url, "--min-confidence", "1.5"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and json.loads(run.stdout)["error"]["code"] == "invalid_request"
