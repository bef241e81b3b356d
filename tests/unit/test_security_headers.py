"""Which answers get which browser policy (`deployments/security_headers.py`); the headers on real answers and
the page within its policy in Chromium: tests/serve/test_api.py, tests/serve/test_web.py."""

from deployments.security_headers import COMMON, DOCS_CSP, INERT_CSP, PAGE_CSP, for_answer


def test_the_page_the_docs_and_what_carries_recognized_text_each_get_their_policy():
    assert for_answer("/", "text/html; charset=utf-8")["Content-Security-Policy"] == PAGE_CSP
    assert for_answer("/docs", "text/html")["Content-Security-Policy"] == DOCS_CSP
    for path, kind in (("/api/v1/ocr", "text/html; charset=utf-8"), ("/api/v1/ocr", "application/json"),
                       ("/api/v1/images/x/data", "TEXT/HTML"), ("/nowhere", "application/json"),
                       ("/api/v1/ocr", "application/xml")):
        assert for_answer(path, kind)["Content-Security-Policy"] == INERT_CSP, (path, kind)
    # a stored PDF must open in the browser's viewer, an asset is governed by the page: no policy of their own
    for path, kind in (("/api/v1/images/x", "application/pdf"), ("/api/v1/images/x", "image/png"),
                       ("/static/app.js", "text/javascript"), ("/api/v1/ocr", "text/plain"), ("/x", None)):
        assert for_answer(path, kind) == COMMON, (path, kind)
    assert all(h["X-Content-Type-Options"] == "nosniff" for h in (for_answer("/", None), for_answer("/x", None)))
    assert "'unsafe-inline'" not in PAGE_CSP and "frame-ancestors 'none'" in PAGE_CSP
    assert INERT_CSP.startswith("default-src 'none'") and "sandbox" in INERT_CSP
