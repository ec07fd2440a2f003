"""`GET /api/v1/systems/{id}/history?days=90` (SPEC §7): days, 48 half-hour slots, availability.

Reads `monitor.history.query` only; the same reader feeds the status pages' bars.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from monitor.history.model import MAX_DAYS
from monitor.history.query import history_document
from monitor.web.guard import side_of

DEFAULT_DAYS = 90
_WORST = {"type": "string", "enum": ["ok", "degraded", "down", "maintenance", "no_data"]}
_SHARE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/systems/{id}/history": {"get": {
        "operationId": "systemHistory", "tags": ["read"],
        "summary": "A system's history: one cell per day, 48 half-hour slots, availability",
        "parameters": [
            {"name": "id", "in": "path", "required": True, "description": "System id",
             "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_.:-]+$"}},
            {"name": "days", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_DAYS,
                        "default": DEFAULT_DAYS}}],
        "responses": {
            "200": {"description": "The history", "content": {"application/json": {"schema": {
                "type": "object", "required": ["system", "days", "slots_24h"],
                "properties": {
                    "system": {"type": "string"},
                    "days": {"type": "array", "description": "Oldest first, the last is today "
                             "(site time zone)", "items": {
                                 "type": "object", "required": ["date", "availability", "worst"],
                                 "properties": {"date": {"type": "string", "format": "date"},
                                                "availability": _SHARE, "worst": _WORST}}},
                    "slots_24h": {"type": "array", "minItems": 48, "maxItems": 48,
                                  "description": "Half hours at :00/:30 site time, oldest "
                                                 "first; the last holds now", "items": {
                                      "type": "object", "required": ["start", "worst"],
                                      "properties": {"start": {"type": "string",
                                                               "format": "date-time"},
                                                     "worst": _WORST}}},
                    "availability_24h": _SHARE,
                    "availability_30d": _SHARE,
                }}}}},
            "404": {"description": "No such system", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}},
            "422": {"description": "`days` is not a whole number from 1 to 400",
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}}}},
        },
    }},
}


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


async def system_history(request: Request) -> JSONResponse:
    view = side_of(request)
    system_id = request.path_params["id"]
    if not view.config.has_system(system_id):
        return _error(404, f"no system {system_id!r}")
    days = parse_days(request.query_params.get("days"))
    if days is None:
        return _error(422, f"days must be a whole number from 1 to {MAX_DAYS}")
    history = await view.system_history(system_id, view.clock(), days)
    return JSONResponse(history_document(history, view.config.site.tz))


ROUTES = [Route("/api/v1/systems/{id}/history", system_history, methods=["GET"])]
