"""What the OpenAPI spec tells clients and client generators, beyond what FastAPI derives by itself."""

import copy
import re

from deployments import api_spec, ingress
from serve_app.schemas import CorrectionIn

IMAGE_PATHS = ("/api/v1/images/{image_id}", "/api/v1/images/{image_id}/data", "/api/v1/images/{image_id}/corrections")


def operations(spec: dict) -> dict[str, tuple[str, str]]:
    return {op["operationId"]: (path, method) for path, methods in spec["paths"].items()
            for method, op in methods.items()}


def test_every_operation_has_an_id_of_its_own_the_same_in_every_run():
    """GET and HEAD on one route shared one id, named after whichever method a set gave first (it changed with
    PYTHONHASHSEED); now each method has its own route and id."""
    spec = ingress.api.openapi()
    ids = [op["operationId"] for methods in spec["paths"].values() for op in methods.values()]
    assert len(ids) == len(set(ids)), sorted(ids)
    for path, method, op in ((p, m, o) for p, ms in spec["paths"].items() for m, o in ms.items()):
        assert op["operationId"].endswith(f"_{method}"), (path, method, op["operationId"])
    assert {"get", "head"} <= set(spec["paths"]["/healthz"]) and {"get", "head"} <= set(spec["paths"]["/readyz"])


def test_stored_images_are_named_by_uuid_answer_head_and_are_linked_from_an_answer():
    spec = ingress.api.openapi()
    for path in IMAGE_PATHS:
        for operation in spec["paths"][path].values():
            (param,) = [p for p in operation["parameters"] if p["name"] == "image_id"]
            assert param["schema"]["format"] == "uuid", (path, param)
    for path in IMAGE_PATHS[:2]:
        assert {"get", "head"} <= set(spec["paths"][path]), path
    assert "304" in spec["paths"][IMAGE_PATHS[0]]["get"]["responses"]  # If-None-Match
    links = spec["paths"]["/api/v1/ocr"]["post"]["responses"]["200"]["links"]
    known = operations(spec)
    assert {known[link["operationId"]] for link in links.values()} == {
        (IMAGE_PATHS[0], "get"), (IMAGE_PATHS[1], "get"), (IMAGE_PATHS[2], "post"), (IMAGE_PATHS[0], "delete")}
    for link in links.values():  # the header every format of answer carries, not a JSON body's field
        assert link["parameters"] == {"image_id": "$response.header.X-OCR-Request-Id"}, link


def test_a_corrections_pattern_says_what_its_validator_refuses():
    pattern = ingress.api.openapi()["components"]["schemas"]["CorrectionIn"]["properties"]["value"]["pattern"]
    python = re.compile(pattern.replace("\\u0000", "\\x00"))  # ECMA-262's escape, in Python's spelling
    assert python.fullmatch("Total 4.50") and not python.fullmatch("Tot\x00al")
    assert CorrectionIn(value="Total 4.50").value == "Total 4.50"


def test_the_api_routes_take_a_key_in_the_spec_only_where_the_service_has_keys():
    plain = ingress.api.openapi()
    assert "securitySchemes" not in plain.get("components", {})
    keyed = api_spec.with_keys(copy.deepcopy(plain), required=True)
    assert set(keyed["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    for path, methods in keyed["paths"].items():
        for operation in methods.values():
            assert (operation.get("security") == [{"bearer": []}, {"apiKey": []}]) == path.startswith("/api/")
    assert api_spec.with_keys(copy.deepcopy(plain), required=False) == plain
