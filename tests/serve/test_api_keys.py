"""API keys and cross-origin calls through a real Serve app: a second ingress (``/keyed``) started with
``OCR_API_KEYS`` in its environment and one page origin allowed (``ingress.cors_origins``), reading with the
session's own detector and recognizer."""

import asyncio
import time
import uuid

import httpx
import pytest
from ray import serve

from deployments.ingress import Ingress
from serve_app.client import OCRClient, OCRError
from training.synth import render_lines

from .conftest import APP
from .test_api import png
from .test_observability import scrape, value

pytestmark = pytest.mark.serve

KEYS = ("first-key-0123456789", "rotated-key-9876543210")
LINES = ["Invoice number 4521", "Total due 38.90"]


@pytest.fixture(scope="module")
def front():
    """A page served from another origin, a local one as a browser sees it (a page on a public address may not
    call loopback at all): ``http://localhost:PORT`` may call the keyed API, ``http://127.0.0.1:PORT`` may not."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><p>another front end</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    yield f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    server.shutdown()


@pytest.fixture(scope="module")
def keyed(serve_url, app_config, front):
    ingress = Ingress.options(max_ongoing_requests=app_config.ingress.max_ongoing_requests, ray_actor_options={
        "num_cpus": 0, "runtime_env": {"env_vars": {"OCR_API_KEYS": ",".join(KEYS)}}})
    cfg = app_config.model_copy(update={"ingress": app_config.ingress.model_copy(update={"cors_origins": [front[0]]})})
    app = ingress.bind(serve.get_deployment_handle("Detector", app_name=APP),
                       serve.get_deployment_handle("Recognizer", app_name=APP), cfg.model_dump(mode="json"))
    serve.run(app, name="keyed", route_prefix="/keyed")
    yield f"{serve_url}/keyed"
    serve.delete("keyed")


def read(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    data = png(render_lines(LINES, size=28)[0])
    return httpx.post(f"{url}/api/v1/ocr", files={"image": ("p.png", data, "image/png")}, headers=headers,
                      timeout=120)


def test_the_api_answers_401_without_a_listed_key_and_reads_with_one(keyed, metrics_port):
    for headers in (None, {"Authorization": "Bearer wrong-key-0123456789"}, {"X-API-Key": KEYS[0][:-1]},
                    {"Authorization": f"Basic {KEYS[0]}"}):
        r = read(keyed, headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["code"] == "unauthorized" and r.json()["request_id"]
        assert r.headers["WWW-Authenticate"] == "Bearer"
    ok = read(keyed, {"Authorization": f"Bearer {KEYS[0]}"})
    assert ok.status_code == 200 and ok.json()["text"] == "\n".join(LINES)
    assert read(keyed, {"X-API-Key": KEYS[1]}).status_code == 200  # a second key, for rotation
    stored = httpx.get(f"{keyed}/api/v1/images/{uuid.uuid4()}", timeout=30)
    assert stored.status_code == 401  # every /api/ route, before it looks for anything
    deadline, refused = time.monotonic() + 60, 0.0
    while refused < 5 and time.monotonic() < deadline:  # counted, for an operator to see
        refused = value(scrape(metrics_port), "ray_ocr_requests_total", status="401", code="unauthorized")
        time.sleep(2)
    assert refused >= 5


def test_each_key_has_its_own_share_of_the_ingress(keyed, app_config):
    """Requests count against the key they present, not the address they come from: with one key's share taken
    by slow uploads, that key is answered 429, while the other key from the same address is not, nor is a wrong
    key (which counts against the address, and is then refused 401)."""
    import contextlib
    import socket

    host, port = keyed.split("//", 1)[1].split("/", 1)[0].split(":")
    share = app_config.ingress.max_requests_per_client
    slow = [socket.create_connection((host, int(port)), timeout=30) for _ in range(share)]
    try:
        for s in slow:  # a body that never comes: each holds its place for the body grace (5 s in the tests)
            s.sendall(f"POST /keyed/api/v1/ocr HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {KEYS[0]}\r\n"
                      "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n--x\r\n"
                      .encode())
        time.sleep(1.0)
        stored = f"{keyed}/api/v1/images/{uuid.uuid4()}"
        taken = httpx.get(stored, headers={"Authorization": f"Bearer {KEYS[0]}"}, timeout=30)
        other = httpx.get(stored, headers={"X-API-Key": KEYS[1]}, timeout=30)
        wrong = httpx.get(stored, headers={"Authorization": "Bearer wrong-key-0123456789"}, timeout=30)
    finally:
        for s in slow:
            with contextlib.suppress(OSError):
                s.close()
    assert taken.status_code == 429 and taken.json()["error"]["code"] == "too_many_requests", taken.text
    assert other.status_code == 501 and other.json()["error"]["code"] == "storage_disabled", other.text
    assert wrong.status_code == 401, wrong.text


def test_the_page_docs_and_probes_stay_open(keyed):
    for path in ("/", "/static/app.js", "/docs", "/docs/openapi.json", "/healthz", "/readyz"):
        assert httpx.get(keyed + path, timeout=30).status_code == 200, path


def test_the_spec_says_that_the_api_takes_a_key(keyed):
    """So that a generated client sends one, and the docs page's "Authorize" lets "Try it out" send one (it could
    only get 401s); the spec of the session's own ingress, started without keys, says nothing of keys."""
    for path in ("/openapi.json", "/docs/openapi.json"):
        spec = httpx.get(keyed + path, timeout=30).json()
        assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}, path
        assert spec["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"
        for route, methods in spec["paths"].items():
            for method, operation in methods.items():
                assert ("security" in operation) == route.startswith("/api/"), (route, method)
                if route.startswith("/api/"):
                    assert "401" in operation["responses"], (route, method)


def test_the_client_sends_its_key_and_is_not_retried_without_one(keyed):
    async def both() -> tuple:
        async with OCRClient(keyed, api_key=KEYS[1]) as client:
            answer = await client.ocr(png(render_lines(LINES, size=28)[0]), "p.png")
        async with OCRClient(keyed) as client:
            with pytest.raises(OCRError) as refused:
                await client.ocr(png(render_lines(LINES, size=28)[0]), "p.png")
        return answer, refused.value

    answer, refused = asyncio.run(both())
    assert answer.body["text"] == "\n".join(LINES)
    assert (refused.status, refused.code, refused.attempts) == (401, "unauthorized", 1)


def test_the_web_page_asks_for_the_key_and_then_reads(keyed, tmp_path):
    from .test_web import CHROMIUM, LAUNCH_ARGS  # the same headless Chromium as the page's own tests

    playwright = pytest.importorskip("playwright.sync_api")
    path = tmp_path / "page.png"
    render_lines(LINES, size=28)[0].save(path)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            page.goto(keyed + "/")  # under a route prefix: the page's calls are relative to it
            assert page.is_hidden("#key-row")
            page.set_input_files("#file", str(path))
            page.wait_for_selector("#prep:has-text('JPEG')")
            page.click("#read")
            page.wait_for_selector("#status.error:has-text('API key')", timeout=60_000)
            assert page.is_visible("#key-row")
            page.fill("#api-key", KEYS[0])
            page.click("#read")
            page.wait_for_selector("#results:not([hidden])", timeout=60_000)
            assert [i.input_value() for i in page.query_selector_all("#lines input")] == LINES
            page.reload()  # the key is kept for the tab
            assert page.input_value("#api-key") == KEYS[0]
        finally:
            browser.close()


def preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(f"{url}/api/v1/ocr", timeout=30, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"})


def test_a_listed_origin_is_let_in_without_a_key_for_the_preflight_and_reads_every_answer(keyed, serve_url, front):
    listed, other = front
    asked = preflight(keyed, listed)
    assert asked.status_code == 204 and asked.headers["Access-Control-Allow-Origin"] == listed
    assert "authorization" in asked.headers["Access-Control-Allow-Headers"].lower()
    ok = httpx.post(f"{keyed}/api/v1/ocr", files={"image": ("p.png", png(render_lines(LINES, size=28)[0]))},
                    headers={"Origin": listed, "Authorization": f"Bearer {KEYS[0]}"}, timeout=120)
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == listed
    assert ok.headers["Vary"] == "Origin, Accept-Encoding"  # httpx accepts gzip: the answer varies with both
    refused = read(keyed, {"Origin": listed})  # the page can read why, and that a key is asked for
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == listed
    assert "WWW-Authenticate" in refused.headers["Access-Control-Expose-Headers"]
    for url, origin in ((keyed, other), (serve_url, listed)):  # not listed; none listed
        r = preflight(url, origin)
        assert "Access-Control-Allow-Origin" not in r.headers and r.status_code >= 400, (url, origin, r.status_code)
        r = httpx.get(f"{url}/healthz", headers={"Origin": origin}, timeout=30)
        assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers


FETCH = """async ({url, key, png}) => {
    const bytes = Uint8Array.from(atob(png), c => c.charCodeAt(0));
    const body = new FormData();
    body.append("image", new Blob([bytes], {type: "image/png"}), "p.png");
    try {
        const r = await fetch(url, {method: "POST", body, headers: key ? {"Authorization": "Bearer " + key} : {}});
        return {status: r.status, body: await r.json(), asks: r.headers.get("WWW-Authenticate")};
    } catch (e) {
        return {blocked: String(e)};
    }
}"""


def test_chromium_lets_a_listed_page_call_the_api_and_blocks_any_other(keyed, serve_url, front):
    import base64

    from .test_web import CHROMIUM, LAUNCH_ARGS

    playwright = pytest.importorskip("playwright.sync_api")
    data = base64.b64encode(png(render_lines(LINES, size=28)[0])).decode()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            def call_from(origin: str, url: str, key: str | None) -> dict:
                page = browser.new_page()
                page.goto(f"{origin}/")
                return page.evaluate(FETCH, {"url": f"{url}/api/v1/ocr", "key": key, "png": data})

            listed, other = front
            read_ = call_from(listed, keyed, KEYS[0])
            assert read_.get("status") == 200 and read_["body"]["text"] == "\n".join(LINES), read_
            refused = call_from(listed, keyed, None)
            assert (refused.get("status"), refused["body"]["error"]["code"], refused["asks"]) == \
                (401, "unauthorized", "Bearer"), refused
            assert "blocked" in call_from(other, keyed, KEYS[0])  # not listed
            assert "blocked" in call_from(listed, serve_url, None)  # the session app lists no origin
        finally:
            browser.close()
