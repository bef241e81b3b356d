"""Cross-origin rules without a server: which origins, which headers, and origins checked where they are set."""

import pytest
from pydantic import ValidationError

from deployments import cross_origin
from serve_app.config import AppConfig

LISTED = ("https://app.example.com", "http://localhost:3000")


def test_only_listed_origins_or_any_with_a_star():
    assert cross_origin.allowed(LISTED, "https://app.example.com")
    assert not cross_origin.allowed(LISTED, "https://app.example.com.evil.net")
    assert not cross_origin.allowed(LISTED, "http://app.example.com")  # another scheme is another origin
    assert not cross_origin.allowed((), "https://app.example.com")
    assert cross_origin.allowed(("*",), "https://anything.example")


def test_an_answer_names_the_origin_and_varies_by_it_unless_any_is_allowed():
    named = cross_origin.answer_headers(LISTED, "http://localhost:3000")
    assert named["Access-Control-Allow-Origin"] == "http://localhost:3000" and named["Vary"] == "Origin"
    assert {"Retry-After", "X-Page-Request-Ids"} <= set(named["Access-Control-Expose-Headers"].split(", "))
    anyone = cross_origin.answer_headers(("*",), "http://localhost:3000")
    assert anyone["Access-Control-Allow-Origin"] == "*" and "Vary" not in anyone
    assert "Access-Control-Allow-Credentials" not in named | anyone  # keys go in headers, never cookies


def test_a_preflight_allows_the_key_headers_and_is_cached():
    assert cross_origin.is_preflight("OPTIONS", {"access-control-request-method": "POST"})
    assert not cross_origin.is_preflight("OPTIONS", {})  # a plain OPTIONS is not a browser asking
    assert not cross_origin.is_preflight("POST", {"access-control-request-method": "POST"})
    headers = cross_origin.preflight_headers(LISTED, LISTED[0])
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "x-api-key", "idempotency-key", "traceparent"} <= allowed
    assert "POST" in headers["Access-Control-Allow-Methods"] and int(headers["Access-Control-Max-Age"]) > 0


@pytest.mark.parametrize("origin", ["https://app.example.com/", "app.example.com", "https://App.example.com",
                                    "https://app.example.com/ocr", "ftp://files.example.com", ""])
def test_a_misspelt_origin_fails_at_start_not_silently_at_run_time(origin):
    with pytest.raises(ValidationError, match="is not an origin"):
        AppConfig.load(overrides={"ingress": {"cors_origins": [origin]}})


def test_origins_as_browsers_send_them_are_accepted():
    origins = ["https://app.example.com", "http://localhost:3000", "http://[::1]:8080", "*"]
    assert AppConfig.load(overrides={"ingress": {"cors_origins": origins}}).ingress.cors_origins == origins
    assert AppConfig().ingress.cors_origins == []  # off unless asked for


def test_a_fault_outside_the_ocr_route_is_our_json_500_and_a_listed_page_can_read_it(caplog):
    """Starlette answers an unhandled exception outside every middleware: no CORS headers, no request id.

    The ingress's own middleware stack and handlers, in their order, around a route that fails as a bug would (a
    fault no real part can be made to produce on demand).
    """
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from deployments import ingress

    app = FastAPI()
    app.user_middleware = list(ingress.api.user_middleware)
    app.exception_handlers = dict(ingress.api.exception_handlers)

    @app.get("/api/v1/broken")
    async def broken() -> None:
        raise KeyError("a bug")

    cross_origin.configure(LISTED)
    ingress.log.addHandler(caplog.handler)  # Ray's logger does not propagate to the root one
    try:
        with TestClient(app, raise_server_exceptions=False) as c:
            r = c.get("/api/v1/broken", headers={"Origin": LISTED[0]})
            other = c.get("/api/v1/broken", headers={"Origin": "https://elsewhere.example"})
    finally:
        cross_origin.configure(())
        ingress.log.removeHandler(caplog.handler)
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert r.headers["access-control-allow-origin"] == LISTED[0]
    rid = r.json()["request_id"]
    assert any(rid in rec.getMessage() and rec.exc_info for rec in caplog.records)  # logged under the id answered
    assert other.status_code == 500 and "access-control-allow-origin" not in other.headers
