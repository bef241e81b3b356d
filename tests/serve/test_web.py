"""The web page in real headless Chromium (Debian's) against the real app: upload, region, correction, errors, docs."""

import json
import random
import shutil
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image

from tests.unit.test_alto import A as ALTO
from tests.unit.test_alto import assert_valid_alto
from tests.unit.test_imaging import save
from tests.unit.test_tsv import table as tsv_table
from training.pdfs import text_pdf
from training.synth import render_lines

pytestmark = pytest.mark.serve

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LINES = ["Invoice number 4521", "Total due 38.90", "Thank you"]
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]


#: Collects what the page's Content-Security-Policy blocks, from before the page's own script runs.
CSP_WATCH = """window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
                          (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));"""


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: run scripts/setup.sh")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, serve_url):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(CSP_WATCH)
    pg = context.new_page()
    pg.requests = []  # type: ignore[attr-defined]
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.goto(serve_url + "/")
    yield pg
    context.close()


@pytest.fixture(scope="module")
def page_png(tmp_path_factory):
    img, truth = render_lines(LINES, size=28)
    path = tmp_path_factory.mktemp("web") / "page.png"
    img.save(path)
    return path, img.size, truth


def test_upload_shows_the_words_and_draws_their_boxes(page, page_png, serve_url):
    path, (w, _), _ = page_png
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#prep:has-text('JPEG')")
    page.click("#read")
    page.wait_for_selector("#results:not([hidden])", timeout=60_000)
    values = [i.input_value() for i in page.query_selector_all("#lines input")]
    assert values == LINES
    assert len(page.query_selector_all("#overlay polygon.line")) == 3  # lines are drawn as their quadrilaterals
    assert len(page.query_selector_all("#overlay rect.word")) == sum(len(x.split()) for x in LINES)
    assert "total" in page.inner_text("#timings")
    assert not page.is_visible("#pager") and not page.is_visible("#all-pages-row")  # one page: no page choice
    assert page.get_attribute("#sent-info", "data-width") == str(w)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(ARTIFACTS / "web-phone.png"), full_page=True)
    assert all(u.startswith(serve_url) or u.startswith("blob:") or u.startswith("data:") for u in page.requests)


def test_after_a_reload_the_browser_asks_about_the_pages_files_and_keeps_its_copies(page, page_png):
    """``Cache-Control: no-cache`` and a 304 while the file is the same: Chromium asks every time (an upgrade's new
    ``app.js`` is never missed) and downloads nothing it has, gzipped or not."""
    seen: list[tuple[str, int]] = []
    page.on("response", lambda r: seen.append((r.url.rsplit("/", 1)[-1], r.status)))
    page.reload()
    page.wait_for_load_state("load")
    # the document itself Chromium fetches whole on a reload (its 304 is held by test_api's test)
    assert {name: status for name, status in seen if name in ("app.js", "style.css")} == \
        {"app.js": 304, "style.css": 304}, seen
    page.set_input_files("#file", str(page_png[0]))  # the page kept from the first load still runs
    page.click("#read")
    page.wait_for_selector("#results:not([hidden])", timeout=60_000)
    assert [i.input_value() for i in page.query_selector_all("#lines input")] == LINES


def test_a_transparent_image_is_sent_with_its_alpha_and_read(page, tmp_path):
    """A browser's JPEG turns transparent pixels black, which would hide dark text: such images go as PNG."""
    img, _ = render_lines(LINES[:1], size=28)
    rgba = np.zeros((img.height, img.width, 4), np.uint8)
    rgba[..., 3] = 255 - np.asarray(img.convert("L"))  # black ink as alpha over transparent black
    path = tmp_path / "logo.png"
    Image.fromarray(rgba, "RGBA").save(path)
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#prep:has-text('PNG (transparent)')")
    page.click("#read")
    page.wait_for_selector("#results:not([hidden])", timeout=60_000)
    assert [i.input_value() for i in page.query_selector_all("#lines input")] == LINES[:1]


@pytest.mark.parametrize("kind", ["tiff", "pdf"])
def test_every_page_of_a_tiff_or_pdf_can_be_read(page, tmp_path, serve_url, kind):
    """A browser draws no PDF and at most a TIFF's first page: the file goes as it is, and the page offers the rest."""
    texts = [LINES[:1], LINES[1:2]]
    path = tmp_path / f"letter.{kind}"
    if kind == "pdf":
        path.write_bytes(text_pdf(texts))
    else:
        ims = [render_lines(t, size=28)[0] for t in texts]
        ims[0].save(path, save_all=True, append_images=ims[1:])
    with page.expect_response(lambda r: "/api/v1/ocr" in r.url) as answer:
        page.set_input_files("#file", str(path))
    page.wait_for_selector("#status:has-text('on page 1 of 2')", timeout=60_000)
    assert "sent as it is" in page.inner_text("#prep") and page.is_visible("#pager")
    assert [i.input_value() for i in page.query_selector_all("#lines input")] == texts[0]
    first = shown_page(page, answer.value.json(), 1)
    page.select_option("#page", "2")
    page.wait_for_selector("#status:has-text('on page 2 of 2')", timeout=60_000)
    assert [i.input_value() for i in page.query_selector_all("#lines input")] == texts[1]
    assert any(u.startswith(serve_url + "/api/v1/ocr?page=2") for u in page.requests)
    assert shown_page(page, None, 2) != first  # the page read is the page shown


def test_a_region_of_a_pdf_page_is_picked_on_the_page_the_service_drew_and_read_alone(page, tmp_path, serve_url):
    """A browser cannot crop a PDF page: the region dragged over its drawing goes as ``?region=`` in the page's
    pixels, and the service reads that part of the page alone."""
    texts = [LINES, ["Kind regards"]]
    path = tmp_path / "letter.pdf"
    path.write_bytes(text_pdf(texts))
    with page.expect_response(lambda r: "/api/v1/ocr" in r.url) as answer:
        page.set_input_files("#file", str(path))
    page.wait_for_selector("#status:has-text('Found 3 lines on page 1 of 2')", timeout=60_000)
    body = answer.value.json()
    shown_page(page, body, 1)
    assert page.inner_text("#stage-title").startswith("2. Drag over")
    x0, y0, x1, y1 = body["lines"][1]["box"]
    b = page.locator("#canvas").bounding_box()
    at = lambda x, y: (b["x"] + x / body["image"]["width"] * b["width"],  # noqa: E731
                       b["y"] + y / body["image"]["height"] * b["height"])
    page.mouse.move(*at(x0 - 12, y0 - 8))
    page.mouse.down()
    page.mouse.move(*at((x0 + x1) / 2, (y0 + y1) / 2), steps=4)
    page.mouse.move(*at(x1 + 12, y1 + 8), steps=4)
    page.mouse.up()
    assert page.inner_text("#roi-info").startswith("region ")
    with page.expect_response(lambda r: "region=" in r.url) as again:
        page.click("#read")
    page.wait_for_selector("#status:has-text('Found 1 line on page 1 of 2')", timeout=60_000)
    part = again.value.json()
    assert [i.input_value() for i in page.query_selector_all("#lines input")] == [LINES[1]]
    r0, s0, r1, s1 = part["image"]["region"]
    assert abs(r0 - (x0 - 12)) < 8 and abs(r1 - (x1 + 12)) < 8 and abs(s1 - (y1 + 8)) < 8
    assert "preview" not in again.value.url  # the page is drawn already
    roi = page.locator("#overlay rect.roi")
    assert [float(roi.get_attribute(k)) for k in ("x", "y")] == pytest.approx([r0, s0], abs=1)  # in page pixels
    line = page.locator("#overlay polygon.line")
    assert line.count() == 1 and float(line.get_attribute("points").split(",")[0]) >= r0 - 1
    page.select_option("#page", "2")  # another page: read whole, drawn anew
    page.wait_for_selector("#status:has-text('on page 2 of 2')", timeout=60_000)
    assert [i.input_value() for i in page.query_selector_all("#lines input")] == texts[1]
    assert page.inner_text("#roi-info") == "" and shown_page(page, None, 2)
    assert not any("region=" in u for u in page.requests if "page=2" in u)


#: The canvas's size and where its dark pixels are, a mask row by row in eighths of its height.
CANVAS_INK = """() => { const c = document.getElementById("canvas");
  const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  const rows = new Array(8).fill(0);
  for (let i = 0; i < px.length; i += 4) {
    if (px[i] < 128) rows[Math.floor(Math.floor(i / 4 / c.width) * 8 / c.height)]++;
  }
  return [c.width, c.height, rows]; }"""


def shown_page(page, body: dict | None, number: int) -> list:
    """The page a browser cannot draw is drawn from the answer's preview, with its boxes over the words' ink."""
    page.wait_for_selector(f"#canvas[data-page='{number}']", state="attached", timeout=30_000)
    width, height, rows = page.evaluate(CANVAS_INK)
    if body is not None:
        assert (width, height) == (body["preview"]["width"], body["preview"]["height"]) and width > 100
        assert page.get_attribute("#overlay", "viewBox") == f"0 0 {body['image']['width']} {body['image']['height']}"
        inked = [y for y, n in enumerate(rows) if n]
        for line in body["lines"]:  # each line's box over rows with ink
            y0, y1 = (int(v * 8 / body["image"]["height"]) for v in (line["box"][1], line["box"][3]))
            assert set(range(y0, min(y1, 7) + 1)) & set(inked), (line, rows)
    assert sum(rows) > 50
    assert "fixed" not in page.get_attribute("#canvas", "class")  # a region of it may be dragged out
    return rows


def test_every_page_comes_down_as_one_file_and_is_deleted_with_the_page_read(page, tmp_path, serve_url):
    """A document's pages in one download (``?pages=all``); "Delete stored copy" deletes what that stored too."""
    texts = [LINES[:1], LINES[1:2]]
    path = tmp_path / "letter.pdf"
    path.write_bytes(text_pdf(texts))
    with page.expect_response(lambda r: "/api/v1/ocr" in r.url and r.status == 200) as answer:
        page.set_input_files("#file", str(path))
    page.wait_for_selector("#status:has-text('on page 1 of 2')", timeout=60_000)
    rid = answer.value.json()["request_id"]
    assert page.is_visible("#all-pages-row") and page.inner_text("#all-pages-row").strip() == "every page (2)"
    page.check("#all-pages")
    page.select_option("#save-format", "text")
    with page.expect_response(lambda r: "pages=all" in r.url) as every, page.expect_download() as download:
        page.click("#save-as")
    assert download.value.suggested_filename == f"ocr-{rid}-all-pages.txt"
    assert Path(download.value.path()).read_text("utf-8") == "".join(f"{t[0]}\n\f" for t in texts)
    page.wait_for_selector("#status:has-text('Text saved, every page (2)')")
    ids = [rid, *every.value.headers["x-page-request-ids"].split(", ")]
    assert len(set(ids)) == 3
    deadline = time.monotonic() + 60  # stored first, so that the deletion has something to delete
    while any(httpx.get(f"{serve_url}/api/v1/images/{i}/data").status_code != 200 for i in ids):
        assert time.monotonic() < deadline, "not stored"
        time.sleep(0.25)
    page.once("dialog", lambda d: d.accept())
    page.click("#forget")
    page.wait_for_selector("#status:has-text('Deleted')", timeout=30_000)
    assert [httpx.get(f"{serve_url}/api/v1/images/{i}/data").status_code for i in ids] == [404, 404, 404]
    assert page.evaluate("window.cspViolations") == []


@pytest.mark.parametrize("size,sent,print_px", [((500, 1500), (500, 1500), 20), ((3000, 1000), (2048, 683), 20),
                                                ((1300, 4000), (1159, 3566), 20), ((800, 4000), (800, 4000), 20),
                                                ((1280, 20000), (1036, 16191), 26)])
def test_small_print_is_sent_with_the_pixels_it_is_read_by(page, tmp_path, size, sent, print_px):
    """A receipt photographed whole is tall: scaled to 720 px high, as the page first did, its print lost a third
    of its height and F1 fell from 0.908 to 0.877 on docs_dev. Only a long side past 2048 px is scaled now, and a
    tall strip (a web page's screenshot) keeps up to 1159 px of its width: 800 x 4000 went as 410 x 2048. Within
    16.7 MP, the most a canvas holds in every browser: a 1280 x 20000 screenshot goes as 1036 x 16191 (its line
    printed larger: sent at 0.81 of its size, 20 px print had a letter misread)."""
    img = Image.new("RGB", size, "white")
    img.paste(render_lines(LINES[:1], size=print_px)[0].convert("RGB"), (40, 60))
    path = tmp_path / "receipt.png"
    img.save(path)
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#prep:has-text('JPEG')")
    page.click("#read")
    page.wait_for_selector("#results:not([hidden])", timeout=60_000)
    assert tuple(int(page.get_attribute("#sent-info", f"data-{d}")) for d in ("width", "height")) == sent
    assert [i.input_value() for i in page.query_selector_all("#lines input")] == LINES[:1]


def test_an_iphone_photo_the_browser_cannot_draw_is_sent_as_it_is_and_read(page, tmp_path):
    """Chromium draws no HEIC (Safari does, and sends a JPEG): the page sends the photo itself."""
    img = render_lines(LINES[:1], size=28)[0].convert("RGB")
    path = tmp_path / "IMG_0003.HEIC"
    path.write_bytes(save(img, "HEIF"))
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#results:not([hidden])", timeout=60_000)
    assert "sent as it is" in page.inner_text("#prep")
    assert [i.input_value() for i in page.query_selector_all("#lines input")] == LINES[:1]


def drag_region(page, size: tuple[int, int], box: tuple[float, ...], mx: float, my: float) -> None:
    """Drag over ``box`` (image pixels) widened by ``mx``, ``my`` on the displayed canvas."""
    x0, y0, x1, y1 = box
    c = page.locator("#canvas").bounding_box()
    sx, sy = c["width"] / size[0], c["height"] / size[1]
    page.mouse.move(c["x"] + (x0 - mx) * sx, c["y"] + (y0 - my) * sy)
    page.mouse.down()
    page.mouse.move(c["x"] + (x1 + mx) * sx, c["y"] + (y1 + my) * sy, steps=5)
    page.mouse.up()


def test_region_sends_only_that_region_and_boxes_land_on_the_full_image(page, page_png):
    path, (w, h), truth = page_png
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#prep:has-text('JPEG')")
    x0, y0, _, y1 = truth[1].box  # the second line, in image (= canvas) pixels
    drag_region(page, (w, h), truth[1].box, 12, 10)
    assert "region" in page.inner_text("#roi-info")
    page.click("#read")
    page.wait_for_selector("#results:not([hidden])", timeout=60_000)
    sent_w = int(page.get_attribute("#sent-info", "data-width"))
    sent_h = int(page.get_attribute("#sent-info", "data-height"))
    assert sent_w < w and sent_h < h / 2  # only the region travelled
    assert [i.input_value() for i in page.query_selector_all("#lines input")] == [LINES[1]]
    points = page.get_attribute("#overlay polygon.line", "points")
    xs, ys = zip(*[map(float, p.split(",")) for p in points.split()])
    assert abs(min(ys) - y0) < 10 and abs(max(ys) - y1) < 10 and abs(min(xs) - x0) < 20  # mapped to the full image


def test_one_selected_word_is_read_without_detection(page, page_png, serve_url):
    path, (w, h), truth = page_png
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#prep:has-text('JPEG')")
    word, word_box = truth[1].words[0]  # "Total"
    drag_region(page, (w, h), word_box, 6, 4)
    page.check("#as-word")
    page.click("#read")
    page.wait_for_selector("#results:not([hidden])", timeout=60_000)
    assert [i.input_value() for i in page.query_selector_all("#lines input")] == [word]
    assert any(u.startswith(serve_url + "/api/v1/ocr?layout=word") for u in page.requests)


def test_a_page_upside_down_is_read_when_it_may_be_turned(page, page_png, tmp_path, serve_url):
    path, _, _ = page_png
    turned = tmp_path / "upside-down.png"
    Image.open(path).transpose(Image.Transpose.ROTATE_180).save(turned)
    page.set_input_files("#file", str(turned))
    page.wait_for_selector("#prep:has-text('JPEG')")
    page.check("#find-turn")
    page.click("#read")
    page.wait_for_selector("#results:not([hidden])", timeout=60_000)
    assert [i.input_value() for i in page.query_selector_all("#lines input")] == LINES
    assert "read turned 180° clockwise" in page.inner_text("#status")
    assert any(u.startswith(serve_url + "/api/v1/ocr?rotate=auto") for u in page.requests)


def test_words_the_service_is_unsure_of_are_shown_when_asked(page, page_png, serve_url):
    path, _, _ = page_png
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#prep:has-text('JPEG')")
    page.check("#every-word")
    with page.expect_response(lambda r: "/api/v1/ocr" in r.url and r.status == 200) as answer:
        page.click("#read")
    page.wait_for_selector("#results:not([hidden])", timeout=60_000)
    assert "min_confidence=0" in answer.value.url
    assert [i.input_value() for i in page.query_selector_all("#lines input")] == [
        ln["text"] for ln in answer.value.json()["lines"]]


def test_the_page_does_everything_within_its_content_security_policy(page, page_png):
    """Choose, preview, read, draw, download: nothing the page does is blocked; script it did not load is."""
    path, _, _ = page_png
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#prep:has-text('JPEG')")
    page.click("#read")
    page.wait_for_selector("#results:not([hidden])", timeout=60_000)
    page.hover("#overlay rect")
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename.endswith(".json")
    assert page.evaluate("window.cspViolations") == []
    # as a recognized "<script>" would be, were it ever written into the page: refused, and reported
    ran = page.evaluate("""() => { const s = document.createElement("script"); s.textContent = "window.ran = 1";
                                   document.body.appendChild(s); return window.ran === 1; }""")
    # a function, not an expression: Playwright polls an expression with eval() in the page, which this very
    # policy refuses whenever the violation is reported after the first check
    page.wait_for_function("() => window.cspViolations.length > 0")
    assert not ran and page.evaluate("window.cspViolations")[0].startswith("script-src")


def read_page(page, path: Path) -> str:
    """Upload ``path``, read it and return the answer's request id."""
    with page.expect_response(lambda r: "/api/v1/ocr" in r.url and r.status == 200) as answer:
        page.set_input_files("#file", str(path))
        page.wait_for_selector("#prep:has-text('JPEG')")
        page.click("#read")
    page.wait_for_selector("#results:not([hidden])", timeout=60_000)
    return answer.value.json()["request_id"]


def test_the_text_read_comes_down_as_a_searchable_pdf(page, page_png):
    """The image as sent, read again as a PDF whose words copy as the page lists them; within the page's policy."""
    keys: list[str | None] = []
    page.on("request", lambda r: "/api/v1/ocr" in r.url and keys.append(r.headers.get("idempotency-key")))
    rid = read_page(page, page_png[0])
    with page.expect_download() as download:
        page.click("#save-as")  # a searchable PDF, the format chosen unless another is
    assert download.value.suggested_filename == f"ocr-{rid}.pdf"
    # the same upload under the same key: stored once, under the id the page deletes
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1]
    pdf = pdfium.PdfDocument(download.value.path())
    listed = [i.input_value() for i in page.query_selector_all("#lines input")]
    assert len(pdf) == 1 and pdf[0].get_textpage().get_text_range().split() == " ".join(listed).split()
    page.wait_for_selector("#status:has-text('Searchable PDF saved')")
    assert page.evaluate("window.cspViolations") == []


def test_the_text_read_comes_down_in_a_layout_format_of_ones_choosing(page, tmp_path):
    """ALTO and TSV, as the service writes them, hold the words the page lists, in the blocks it shows apart (two
    paragraphs); under the upload's key."""
    first, _ = render_lines(["Invoice number 4521", "Total due 38.90"], size=28)
    second, _ = render_lines(["Thank you for your order"], size=28)
    sheet = Image.new("RGB", (max(first.width, second.width), first.height + 60 + second.height), "white")
    sheet.paste(first, (0, 0))
    sheet.paste(second, (0, first.height + 60))
    sheet.save(tmp_path / "letter.png")
    keys: list[str | None] = []
    page.on("request", lambda r: "/api/v1/ocr" in r.url and keys.append(r.headers.get("idempotency-key")))
    rid = read_page(page, tmp_path / "letter.png")
    listed = " ".join(i.input_value() for i in page.query_selector_all("#lines input")).split()
    starts = page.eval_on_selector_all("#lines li", "items => items.map(li => li.classList.contains('new-block'))")
    assert starts == [False, False, True]  # the second paragraph set apart
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#copy")
    page.wait_for_selector("#status:has-text('Copied')")
    lines = [i.input_value() for i in page.query_selector_all("#lines input")]
    assert page.evaluate("navigator.clipboard.readText()") == f"{lines[0]}\n{lines[1]}\n\n{lines[2]}"
    page.select_option("#save-format", "alto")
    with page.expect_download() as download:
        page.click("#save-as")
    assert download.value.suggested_filename == f"ocr-{rid}.xml"
    root = assert_valid_alto(Path(download.value.path()).read_bytes())
    assert [s.get("CONTENT") for s in root.iter(f"{ALTO}String")] == listed
    assert [len(list(b.iter(f"{ALTO}TextLine"))) for b in root.iter(f"{ALTO}TextBlock")] == [2, 1]
    page.wait_for_selector("#status:has-text('ALTO XML saved')")
    page.select_option("#save-format", "tsv")
    with page.expect_download() as download:
        page.click("#save-as")
    assert download.value.suggested_filename == f"ocr-{rid}.tsv"
    rows = tsv_table(Path(download.value.path()).read_text("utf-8"))
    assert [r["text"] for r in rows if r["level"] == "5"] == listed
    assert len(keys) == 3 and keys[0] and keys.count(keys[0]) == 3
    assert page.evaluate("window.cspViolations") == []


def answer_error(route, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
    """Answer a routed request as the service answers an error (a fault stood in for where noted)."""
    route.fulfill(status=status, headers=headers or {}, content_type="application/json",
                  body=json.dumps({"error": {"code": code, "message": message}}))


def test_a_correction_turned_away_is_sent_again_under_its_id_and_stored_once(page, page_png, serve_url):
    """The first try is answered 503 as when the sidecar's replica was lost under it (a fault stood in for here:
    killing a replica thrice within one call cannot be timed); the page waits its Retry-After and sends it again."""
    rid = read_page(page, page_png[0])
    sent: list[dict] = []
    urls: list[str] = []

    def first_turned_away(route) -> None:
        sent.append(json.loads(route.request.post_data))
        urls.append(route.request.url)
        if len(sent) > 1:
            return route.continue_()
        return answer_error(route, 503, "storage_unavailable", "the Sidecar replica was lost 3 times",
                            {"Retry-After": "1"})

    page.route("**/corrections", first_turned_away)
    first = page.locator("#lines li").first
    first.locator("input").fill("Invoice number 4522")
    first.locator("button.fix").click()
    page.wait_for_selector("#lines li .sent:has-text('accepted')", timeout=30_000)
    assert len(sent) == 2 and sent[0] == sent[1] and sent[0]["value"] == "Invoice number 4522"
    cid = str(uuid.UUID(sent[0]["correction_id"]))
    assert urls == [f"{serve_url}/api/v1/images/{rid}/corrections"] * 2

    def stored() -> list[dict]:
        r = httpx.get(f"{serve_url}/api/v1/images/{rid}/data")
        return r.json()["corrections"] if r.status_code == 200 else []

    deadline = time.monotonic() + 60
    while not stored() and time.monotonic() < deadline:
        time.sleep(0.25)
    assert [(c["id"], c["value"]) for c in stored()] == [(cid, "Invoice number 4522")]


def test_the_stored_copy_is_deleted_only_when_the_user_confirms(page, page_png, serve_url):
    rid = read_page(page, page_png[0])
    deletes: list[str] = []
    page.on("request", lambda r: deletes.append(r.url) if r.method == "DELETE" else None)
    page.once("dialog", lambda d: d.dismiss())
    page.click("#forget")
    time.sleep(0.5)
    assert deletes == [] and page.is_enabled("#forget")  # dismissed: nothing sent

    deadline = time.monotonic() + 60  # stored first, so that the deletion has something to delete
    while httpx.get(f"{serve_url}/api/v1/images/{rid}/data").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.25)
    assert httpx.get(f"{serve_url}/api/v1/images/{rid}").status_code == 200
    page.once("dialog", lambda d: d.accept())
    page.click("#forget")
    page.wait_for_selector("#status:has-text('Deleted')", timeout=30_000)
    assert deletes == [f"{serve_url}/api/v1/images/{rid}"]
    assert httpx.get(f"{serve_url}/api/v1/images/{rid}").status_code == 404
    assert httpx.get(f"{serve_url}/api/v1/images/{rid}/data").status_code == 404
    assert not page.is_enabled("#forget") and not page.locator("#lines button.fix").first.is_enabled()
    assert not page.is_enabled("#save-as")  # sent under the upload's key, it would store the image again


def test_a_service_that_stores_nothing_says_so_at_once(page, page_png, serve_url, app_config):
    """The app redeployed with storage off: the storage routes answer 501 ``storage_disabled``, which no wait
    changes, so the page shows it at once, one request each, instead of sending it again as it would a 503."""
    from ray import serve

    from deployments.app import graph
    from serve_app.config import AppConfig

    from .conftest import APP, TEST_OVERRIDES

    storing_nothing = AppConfig.load(overrides={**TEST_OVERRIDES, "storage": {"mode": "off"}})
    serve.run(graph(storing_nothing), name=APP, route_prefix="/")
    calls: list[str] = []
    page.on("request", lambda r: calls.append(r.method) if "/api/v1/images/" in r.url else None)
    try:
        rid = read_page(page, page_png[0])
        for method, path in (("GET", ""), ("GET", "/data"), ("DELETE", "")):
            r = httpx.request(method, f"{serve_url}/api/v1/images/{rid}{path}")
            assert (r.status_code, r.json()["error"]["code"]) == (501, "storage_disabled"), (method, path)
        first = page.locator("#lines li").first
        first.locator("input").fill("Invoice number 4522")
        first.locator("button.fix").click()
        page.wait_for_selector("#lines li span.error:has-text('not stored')", timeout=10_000)
        page.once("dialog", lambda d: d.accept())
        page.click("#forget")
        page.wait_for_selector("#status.error:has-text('not stored')", timeout=10_000)
    finally:
        serve.run(graph(app_config), name=APP, route_prefix="/")
    assert calls == ["POST", "DELETE"]


@pytest.mark.parametrize("limit,status", [("max_inflight", 503), ("max_requests_per_client", 429)])
def test_a_busy_service_is_asked_again_until_it_reads_the_page(page, page_png, serve_url, app_config, limit, status):
    """One request admitted at a time (by the service, or for this address, which the page shares with the other
    upload), and the detector holding each 3 s for a batch: the page's upload is turned away with 503 (429) while
    another is read; the page says so, waits the Retry-After, sends it again and shows it."""
    from ray import serve

    from deployments.app import graph
    from serve_app.config import AppConfig

    from .conftest import APP, TEST_OVERRIDES

    held = AppConfig.load(overrides={**TEST_OVERRIDES, "ingress": {**TEST_OVERRIDES["ingress"], limit: 1},
                                     "detector": {"max_batch_size": 4, "batch_wait_timeout_s": 3.0}})
    serve.run(graph(held), name=APP, route_prefix="/")  # user_config only: the replicas reconfigure in place
    statuses: list[int] = []
    keys: list[str | None] = []
    page.on("response", lambda r: statuses.append(r.status) if "/api/v1/ocr" in r.url else None)
    page.on("request", lambda r: keys.append(r.headers.get("idempotency-key")) if "/api/v1/ocr" in r.url else None)
    path, _, _ = page_png
    other = threading.Thread(target=lambda: httpx.post(
        serve_url + "/api/v1/ocr", files={"image": ("o.png", path.read_bytes(), "image/png")}, timeout=60))
    try:
        page.set_input_files("#file", str(path))
        page.wait_for_selector("#prep:has-text('JPEG')")
        other.start()
        time.sleep(0.5)  # the other upload is admitted and waits in the detector's batch
        page.click("#read")
        page.wait_for_selector("#status:has-text('trying again')", timeout=10_000)
        page.wait_for_selector("#results:not([hidden])", timeout=60_000)
    finally:
        other.join()
        serve.run(graph(app_config), name=APP, route_prefix="/")
    assert [i.input_value() for i in page.query_selector_all("#lines input")] == LINES
    assert statuses[0] == status and statuses[-1] == 200, statuses
    assert len(keys) == len(statuses) and len(set(keys)) == 1 and keys[0], keys  # one upload: one id, however often


@pytest.mark.parametrize(
    "name,data,expected",
    [("notes.txt", b"just some text, not a picture", "Not an image"),
     ("huge.jpg", random.Random(1).randbytes(3 * 1024 * 1024), "Too large")],
)
def test_bad_files_show_the_api_error(page, tmp_path, name, data, expected):
    path = tmp_path / name
    path.write_bytes(data)
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#status.error", timeout=60_000)
    assert expected in page.inner_text("#status")


def test_api_docs_load_with_no_request_leaving_the_machine(browser, serve_url):
    context = browser.new_context()
    context.add_init_script(CSP_WATCH)
    pg = context.new_page()
    urls: list[str] = []
    pg.on("request", lambda r: urls.append(r.url))
    pg.goto(serve_url + "/docs")
    pg.wait_for_selector(".opblock-summary-path:has-text('/api/v1/ocr')", timeout=30_000)
    assert urls and all(u.startswith(serve_url) or u.startswith("data:") for u in urls), urls
    assert pg.evaluate("window.cspViolations") == []  # Swagger UI within its own policy
    context.close()


def test_page_is_labelled_for_keyboard_and_screen_readers(page):
    assert page.get_attribute("#file", "accept") == "image/*,.heic,.heif,.avif,application/pdf"
    assert page.locator("label[for=file]").count() == 1
    assert page.get_attribute("#drop", "tabindex") == "0"
    assert page.get_attribute("#status", "role") == "status"
    assert page.locator("#pager select#page").count() == 1  # the page choice is labelled by its own text


