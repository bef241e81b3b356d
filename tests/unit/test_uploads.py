import pytest

from deployments.body_limits import media_type
from deployments.uploads import is_raw, missing_image


@pytest.mark.parametrize("content_type,raw", [
    ("image/jpeg", True), ("IMAGE/HEIC", True), ("image/png; charset=binary", True), ("application/pdf", True),
    ("application/octet-stream", True),
    ("multipart/form-data; boundary=x", False), ("application/x-www-form-urlencoded", False),
    ("application/json", False), ("text/plain", False), ("application/pdfx", False),
])
def test_a_body_is_the_upload_itself_when_declared_as_a_file(content_type, raw):
    assert is_raw(content_type) is raw


@pytest.mark.parametrize("length,chunked,raw", [("1234", False, True), (None, True, True), ("0", False, False),
                                               (None, False, False)])
def test_a_body_without_a_type_is_the_upload_when_there_is_one(length, chunked, raw):
    """``requests.post(url, data=f)`` declares no type; a bare POST has no body to read."""
    assert is_raw(None, length, chunked) is raw and is_raw("", length, chunked) is raw


def test_a_bare_post_is_told_how_to_send_an_image():
    status, code, message = missing_image(None, [])
    assert (status, code) == (422, "missing_field") and "no body" in message and "-F image=@" in message


def test_the_media_type_is_read_without_its_parameters():
    assert media_type(" Multipart/Form-Data ; boundary=abc") == "multipart/form-data" and media_type(None) == ""


def test_a_multipart_body_without_the_field_names_the_fields_it_has():
    status, code, message = missing_image("multipart/form-data; boundary=b", ["file", "name", "file"])
    assert (status, code) == (422, "missing_field")
    assert "no field 'image'" in message and "'file', 'name'" in message and "Content-Type" in message


def test_a_multipart_body_with_no_fields_says_so():
    assert "it has no fields" in missing_image("multipart/form-data", [])[2]


@pytest.mark.parametrize("content_type,says", [
    ("application/x-www-form-urlencoded", "curl --data"), ("application/json", "application/json"),
    ("text/plain; charset=utf-8", "text/plain")])
def test_another_body_is_not_an_upload_and_the_answer_says_how_to_send_one(content_type, says):
    status, code, message = missing_image(content_type, [])
    assert (status, code) == (415, "unsupported_media_type")
    assert says in message and "-F image=@" in message and "--data-binary" in message
