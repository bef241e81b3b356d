"""Which declared bodies are refused before they are read (`deployments/body_limits.py`); on the real service, over
a raw socket: tests/serve/test_api.py."""

import pytest

from deployments import body_limits


@pytest.fixture(autouse=True)
def _restored():
    before = body_limits.limit(body_limits.UPLOAD_ROUTE) - body_limits.MULTIPART_SLACK
    yield
    body_limits.configure(before)


def test_an_upload_may_declare_the_largest_image_and_its_envelope_and_no_more():
    body_limits.configure(1_000_000)
    most = 1_000_000 + body_limits.MULTIPART_SLACK
    assert body_limits.refusal("/api/v1/ocr", str(most)) is None
    code, message = body_limits.refusal("/api/v1/ocr", str(most + 1))
    assert code == "image_too_large" and "1000000 bytes" in message
    assert body_limits.refusal("/api/v1/ocr", None) is None  # chunked: the route's own checks refuse it, once read
    assert body_limits.refusal("/api/v1/ocr", "ten") is None  # not ours to judge: the HTTP server answers that


def test_every_other_route_takes_a_correction_at_most():
    body_limits.configure(1_000_000)
    path = "/api/v1/images/0b3fb535-2f8d-43c0-a4b9-a340e96e50cf/corrections"
    assert body_limits.refusal(path, str(body_limits.OTHER_ROUTES)) is None
    code, _ = body_limits.refusal(path, str(body_limits.OTHER_ROUTES + 1))
    assert code == "request_too_large"
    assert body_limits.OTHER_ROUTES >= 6 * 10_000 + 1024  # 10,000 characters, each escaped as \\uXXXX in JSON
