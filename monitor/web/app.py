"""The Starlette app: every module's `ROUTES`, the edge middleware, JSON errors for the API.

To serve a new page or endpoint, write its handlers as top-level functions in a module of
`monitor/web/`, list them in that module's `ROUTES`, and add the module to `ROUTE_MODULES`
(and describe API routes in `monitor/web/openapi.py`: `tests/test_openapi.py` checks it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from monitor.web import api, cluster, history, links, openapi, pages, people, push, review
from monitor.web.edge import Edge
from monitor.web.guard import error
from monitor.web.interfaces import WebSide

Handler = Callable[[Request], Awaitable[Response]]
ROUTE_MODULES = [api, people, history, push, links, review, cluster, pages, openapi]


def routes() -> list[BaseRoute]:
    """Every module's routes, one per path (see `merge_routes`)."""
    return merge_routes([route for module in ROUTE_MODULES for route in module.ROUTES])


def merge_routes(routes: list[Route]) -> list[BaseRoute]:
    """One route per path, dispatching by method, so a 405 lists every method in `Allow`
    even when two modules serve the same path (GET in api, POST in people)."""
    by_path: dict[str, list[Route]] = {}
    for route in routes:
        by_path.setdefault(route.path, []).append(route)
    merged: list[BaseRoute] = []
    for path, group in by_path.items():
        if len(group) == 1:
            merged.append(group[0])
            continue
        table: dict[str, Handler] = {}
        for route in group:
            for method in route.methods or {"GET", "HEAD"}:
                table.setdefault(method, route.endpoint)

        async def dispatch(request: Request, table: dict[str, Handler] = table) -> Response:
            return await table[request.method](request)

        merged.append(Route(path, dispatch, methods=sorted(table)))
    return merged


def build_app(side: WebSide | None) -> Starlette:
    """`side` is the daemon as the web layer sees it (None only to list the routes)."""
    app = Starlette(routes=routes(), middleware=[Middleware(Edge)],
                    exception_handlers={HTTPException: http_error})
    app.state.side = side
    return app


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown API paths and wrong methods answer JSON like every other API error."""
    assert isinstance(exc, HTTPException)
    if not request.url.path.startswith("/api/"):
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    detail = {404: f"no API endpoint {request.url.path}",
              405: f"{request.method} is not allowed on {request.url.path}"}
    response = error(exc.status_code, detail.get(exc.status_code, exc.detail))
    response.headers.update(exc.headers or {})
    return response
