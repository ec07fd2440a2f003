"""`GET /api/v1/systems/{id}/history?days=90` (SPEC §7): days, 48 half-hour slots, availability.

Reads `monitor.history.query` only; the same reader feeds the status pages' bars.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from monitor.history.model import MAX_DAYS
from monitor.history.query import history_document

if TYPE_CHECKING:
    from monitor.runtime.daemon import Daemon

DEFAULT_DAYS = 90


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def parse_days(raw: str | None) -> int | None:
    """`days` is 1..400 (default 90); anything else is None (the caller answers 422)."""
    if raw is None:
        return DEFAULT_DAYS
    if not raw.isdigit():
        return None
    days = int(raw)
    return days if 1 <= days <= MAX_DAYS else None


def history_routes(daemon: Daemon) -> list[Route]:
    async def system_history(request: Request) -> JSONResponse:
        system_id = request.path_params["id"]
        if not daemon.config.has_system(system_id):
            return _error(404, f"no system {system_id!r}")
        days = parse_days(request.query_params.get("days"))
        if days is None:
            return _error(422, f"days must be a whole number from 1 to {MAX_DAYS}")
        now = daemon.clock()
        history = await daemon.history_reader.system(system_id, now, days)
        return JSONResponse(history_document(history, daemon.config.site.tz))

    return [Route("/api/v1/systems/{id}/history", system_history, methods=["GET"])]
