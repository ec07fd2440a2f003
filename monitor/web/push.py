"""Results pushed to hismon (SPEC 15): `POST /api/v1/checks/{id}/result` and Alertmanager.

Both are writes that can send wards to paper, so neither is ever unauthenticated: a passive
check's own `token`, else (and for Alertmanager always) a Bearer token of
`server.api_tokens`; no token configured means every push is refused with 401. Both go to
the leader (a standby answers 503, which Alertmanager retries). The handlers only check the
token and the body; the daemon folds the results (`Daemon.push_result`, `apply_alerts`).
`monitor.web.app` mounts `ROUTES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.core.models import iso
from monitor.probing.pushed import AlertmanagerPayload, PushedResult
from monitor.web.bodies import ID_PATTERN, request_body
from monitor.web.guard import Refusal, bearer_token, error, token_valid, write
from monitor.web.interfaces import ReadView, WebSide

MAX_RESULT_BODY = 64 * 1024
MAX_ALERTMANAGER_BODY = 4 * 1024 * 1024
"""Alertmanager sends a whole group at once; thousands of alerts still fit."""


def result_tokens(request: Request, view: ReadView) -> Sequence[str]:
    """The passive check's own token if it sets one, else the API tokens; never open."""
    check_id = request.path_params["id"]
    check = next((c for c in view.config.checks if c.id == check_id), None)
    if check is None or not check.pushed:
        # Only a caller with an API token learns which checks exist (SPEC 7: 401 first).
        if not token_valid(bearer_token(request), view.config.server.api_tokens):
            raise Refusal(401, "unauthorized", "missing or invalid Bearer token")
        raise Refusal(404, "not_found", f"no passive check {check_id}")
    own = getattr(check, "token", None)
    return [own] if own else view.config.server.api_tokens


@write(PushedResult, tokens=result_tokens, limit=MAX_RESULT_BODY)
async def result(request: Request, side: WebSide, body: PushedResult) -> Response:
    check_id = request.path_params["id"]
    received = await side.push_result(check_id, body.result())
    if received is None:
        return error(503, f"check {check_id} is probed by another cluster member")
    state = side.states[check_id]
    return JSONResponse({"check": check_id, "state": state.state.name,
                         "hard_state": state.hard_state.name, "hard": state.hard,
                         "received_at": iso(received, side.config.site.tz)})


@write(AlertmanagerPayload, limit=MAX_ALERTMANAGER_BODY)
async def alertmanager(request: Request, side: WebSide, body: AlertmanagerPayload) -> Response:
    applied = await side.apply_alerts(body.alerts)
    return JSONResponse({"applied": applied.applied, "unknown_check": applied.unknown_check})


ROUTES = [
    Route("/api/v1/checks/{id}/result", result, methods=["POST"]),
    Route("/api/v1/alertmanager", alertmanager, methods=["POST"]),
]


_STATES = ["OK", "WARN", "CRIT", "UNKNOWN"]
_ID = {"type": "string", "pattern": ID_PATTERN}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json({"$ref": "#/components/schemas/Error"}, description)


_REFUSALS = {
    "401": _error("Missing or invalid token; nothing was changed"),
    "413": _error("The body is too large"),
    "422": _error("The body does not match the schema"),
    "503": _error("This instance is a standby (SPEC §9); send the request to the leader"),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/checks/{id}/result": {"post": {
        "operationId": "pushResult", "tags": ["write"],
        "summary": "A result for a `passive` check, pushed by another tool",
        "description": "Needs `Authorization: Bearer <token>`: the check's own `token`, or "
                       "when it has none a token of `server.api_tokens`. The result goes "
                       "through confirm/recover (1 and 1 by default for passive checks).",
        "security": [{"bearer": []}],
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": _ID,
                        "description": "Id of a check of type passive"}],
        "requestBody": request_body(PushedResult),
        "responses": {
            "200": _json({"type": "object",
                          "required": ["check", "state", "hard_state", "hard", "received_at"],
                          "properties": {"check": {"type": "string"},
                                         "state": {"type": "string", "enum": _STATES},
                                         "hard_state": {"type": "string", "enum": _STATES},
                                         "hard": {"type": "boolean"},
                                         "received_at": {"type": "string",
                                                         "format": "date-time"}}},
                         "Recorded; the check's state after it"),
            "404": _error("No passive check with this id (asked with an API token)"),
            **_REFUSALS,
        },
    }},
    "/api/v1/alertmanager": {"post": {
        "operationId": "alertmanagerWebhook", "tags": ["write"],
        "summary": "Alertmanager's webhook (payload version 4) driving passive checks",
        "description": "Each alert labelled `hismon_check: ID` sets that passive check: "
                       "firing is CRIT (WARN for `severity: warning`), resolved is OK; a "
                       "check is the worst of its alerts firing now. Bearer token of "
                       "`server.api_tokens`.",
        "security": [{"bearer": []}],
        "requestBody": request_body(AlertmanagerPayload),
        "responses": {
            "200": _json({"type": "object", "required": ["applied", "unknown_check"],
                          "properties": {"applied": {"type": "integer", "minimum": 0},
                                         "unknown_check": {"type": "integer", "minimum": 0}}},
                         "How many alerts set a passive check, and how many named none"),
            **_REFUSALS,
        },
    }},
}
