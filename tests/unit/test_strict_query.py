"""Unknown query parameters of ``/api/`` routes are refused, naming them (`deployments.strict_query`)."""

from fastapi import Depends, FastAPI, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from deployments.strict_query import known_query, no_unknown_query


def paging(cursor: str | None = Query(None)) -> str | None:
    return cursor


def app() -> FastAPI:
    api = FastAPI(dependencies=[Depends(no_unknown_query)])

    @api.exception_handler(RequestValidationError)
    async def invalid(_, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"errors": [[".".join(map(str, e["loc"])), e["msg"]] for e in exc.errors()]}, 422)

    @api.get("/api/v1/things")
    async def things(page: int = Query(1), output: str = Query("json", alias="format"),
                     cursor: str | None = Depends(paging)) -> dict:
        return {"page": page, "format": output, "cursor": cursor}

    @api.get("/healthz")
    async def healthz() -> dict:
        return {"ok": True}

    return api


def test_the_parameters_a_route_takes_pass_and_any_other_is_named():
    client = TestClient(app())
    assert client.get("/api/v1/things", params={"page": 2, "format": "text", "cursor": "c"}).json() == \
        {"page": 2, "format": "text", "cursor": "c"}  # aliases and a dependency's own parameters count
    r = client.get("/api/v1/things", params={"pages": 3, "output": "x", "page": 2})
    assert r.status_code == 422
    assert r.json()["errors"] == [
        ["query.output", "this route takes no parameter 'output' (it takes: cursor, format, page)"],
        ["query.pages", "this route takes no parameter 'pages' (it takes: cursor, format, page)"]]
    assert client.get("/healthz", params={"cache": "1"}).status_code == 200  # not an /api/ route: left alone


def test_what_a_route_takes_is_read_from_its_dependencies():
    api = app()
    route = next(r for r in api.routes if getattr(r, "path", "") == "/api/v1/things")
    assert known_query(route) == {"page", "format", "cursor"}
