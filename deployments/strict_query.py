"""An API request's query names only parameters its route takes; any other is refused 422, naming it.

FastAPI ignores query parameters it does not know. A misspelt one then does nothing, without a word: `?rotation=auto`
read a page as it came, `?min_conf=0` kept the service's filter, and each answered 200 (so did `?pages=3`, with page
1, before ``pages`` was a parameter). The request's author cannot tell such an answer from the one asked for, so
the API says so instead, as it does for a correction's unknown fields. Only ``/api/`` routes: the page, its assets
and the probes take whatever they get.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

#: Not a parameter, though it reads as one: a Serve class-based route keeps the dependant FastAPI built when the
#: method was decorated, where its ``self`` was a query parameter (Serve injects the replica there since).
NOT_PARAMETERS = frozenset({"self"})


def _query_names(dependant: Dependant) -> frozenset[str]:
    names: set[str] = set()
    todo = [dependant]
    while todo:
        current = todo.pop()
        names.update(param.alias for param in current.query_params)
        todo.extend(current.dependencies)
    return frozenset(names - NOT_PARAMETERS)


#: By route: routes are not hashable. Each entry holds its route, so that no other object takes its id.
_known: dict[int, tuple[APIRoute, frozenset[str]]] = {}


def known_query(route: APIRoute) -> frozenset[str]:
    """The query parameters ``route`` takes, its dependencies' included (by the names clients send)."""
    entry = _known.get(id(route))
    if entry is None:
        entry = _known[id(route)] = (route, _query_names(route.dependant))
    return entry[1]


async def no_unknown_query(request: Request) -> None:
    """A dependency of every route: raises the usual 422 for a query parameter an ``/api/`` route does not take."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.path.startswith("/api/"):
        return
    known = known_query(route)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise RequestValidationError([
            {"type": "extra_forbidden", "loc": ("query", name), "input": request.query_params.get(name),
             "msg": f"this route takes no parameter {name!r} (it takes: {takes})"} for name in unknown])
