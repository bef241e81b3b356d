"""API keys without Ray: which keys are read, which a request presents, and which paths need one."""

from deployments.api_keys import allowed, guarded, load, presented

A, B = "k" * 24, "second-key-for-rotation"


def test_keys_are_read_from_the_environment_comma_or_space_separated():
    assert load({}) == ()
    assert load({"OCR_API_KEYS": ""}) == ()
    assert load({"OCR_API_KEYS": f" {A}, {B}\n"}) == (A, B)


def test_a_key_is_taken_from_a_bearer_header_or_x_api_key():
    assert presented({"authorization": f"Bearer {A}"}) == A
    assert presented({"authorization": f"bearer  {A} "}) == A
    assert presented({"x-api-key": B}) == B
    assert presented({"authorization": f"Basic {A}"}) is None
    assert presented({"authorization": "Bearer "}) is None
    assert presented({}) is None


def test_only_a_listed_key_is_allowed_and_no_keys_means_open():
    assert allowed((), None) and allowed((), "anything")
    assert allowed((A, B), B) and allowed((A,), A)
    assert not allowed((A, B), None)
    assert not allowed((A, B), A[:-1]) and not allowed((A,), A + "x") and not allowed((A,), "")


def test_the_api_needs_a_key_the_page_docs_and_probes_do_not():
    assert guarded("/api/v1/ocr") and guarded("/api/v1/images/x/data")
    assert guarded("/keyed/api/v1/ocr", "/keyed")
    for path in ("/", "/static/app.js", "/docs", "/docs/openapi.json", "/openapi.json", "/healthz", "/readyz"):
        assert not guarded(path)
    assert not guarded("/keyed/healthz", "/keyed")
