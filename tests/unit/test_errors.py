"""The ingress's refusals of a method, over its own routes and handlers, without Serve (no route is called)."""

import asyncio
import uuid

import httpx

from deployments import ingress


def send(method: str, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ingress.api), base_url="http://t") as c:
            return await c.request(method, path)
    return asyncio.run(go())


def test_a_405_allows_every_method_of_the_resource_not_only_its_first_routes():
    """A stored image is read by GET and HEAD and deleted by DELETE, on two routes; Starlette's 405 named the first
    route's methods alone (``Allow: GET``), so a client told to use another method was never told of DELETE."""
    image = f"/api/v1/images/{uuid.uuid4()}"
    for method, path, allowed in (("PUT", image, "DELETE, GET, HEAD"), ("PATCH", f"{image}/data", "GET, HEAD"),
                                  ("GET", f"{image}/corrections", "POST"), ("GET", "/api/v1/ocr", "POST"),
                                  ("POST", "/readyz", "GET, HEAD")):
        r = send(method, path)
        assert r.status_code == 405 and r.headers["allow"] == allowed, (method, path, r.headers.get("allow"))
        assert r.json()["error"]["code"] == "method_not_allowed" and r.json()["request_id"]
    assert send("PUT", "/api/v1/nothing-here").status_code == 404  # no route of that path: not a 405

