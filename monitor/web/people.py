"""HTTP endpoints of SPEC §13 that are not links: on-call, declare/resolve/patch, review.

Kept out of `api.py` so the people features come and go as one module; `build_app` adds
`people_routes(daemon)` to its routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.people.oncall import oncall

if TYPE_CHECKING:
    from monitor.runtime.daemon import Daemon


def people_routes(daemon: Daemon) -> list[Route]:
    async def oncall_now(request: Request) -> Response:
        try:
            days = float(request.query_params.get("days", "0"))
        except ValueError:
            return JSONResponse({"error": "days must be a number", "status": 422}, 422)
        return JSONResponse({"schedules": oncall(daemon.config, daemon.clock(),
                                                 min(max(days, 0), 90))})

    return [Route("/api/v1/oncall", oncall_now, methods=["GET"])]
