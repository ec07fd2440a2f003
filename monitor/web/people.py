"""HTTP endpoints of SPEC §13 that are not links: on-call, declare/resolve/patch, the
help-desk confirmations and the vendor response taken by phone.

Kept out of `api.py` so the people features live in one module; `build_app` adds
`people_routes(daemon)` to its routes. Writes need a Bearer token and go to the leader,
like every operator action; the rules are in `monitor/people/actions.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.core.models import Incident, iso
from monitor.delivery.context import incident_payload
from monitor.people.actions import Refused
from monitor.people.oncall import oncall

if TYPE_CHECKING:
    from monitor.runtime.daemon import Daemon

Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, message: str, incident: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message, "status": status}
    if incident is not None:
        body["incident"] = incident
    return JSONResponse(body, status_code=status)


def _text(body: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise Refused(422, f'"{key}" must be a non-empty string' if required
                      else f'"{key}" must be a string')
    return value.strip()


def people_routes(daemon: Daemon) -> list[Route]:
    from monitor.web.api import json_body, parse_time, token_ok

    async def shape(incident: Incident) -> dict[str, Any]:
        data = incident_payload(incident, daemon.config)
        tz = daemon.config.site.tz
        data["timeline"] = [
            {"at": iso(e.at, tz), "kind": e.kind, "text": e.text, "data": e.data}
            for e in await daemon.store.timeline(incident.id)]
        return data

    def write(action: Callable[[Request, dict[str, Any]], Awaitable[Response]]) -> Handler:
        """Bearer token, the leader, a JSON object body; `Refused` becomes its status."""
        async def handler(request: Request) -> Response:
            if not token_ok(request, daemon.config.server.api_tokens):
                return _error(401, "missing or invalid Bearer token")
            if not daemon.leading:
                return _error(503, "this hismon instance is a standby; send this to the "
                                   f"leader ({daemon.leadership.holder or 'none elected yet'})")
            body = await json_body(request)
            if body is None:
                return _error(422, "body must be a JSON object")
            try:
                return await action(request, body)
            except Refused as exc:
                found = await shape(exc.incident) if exc.incident is not None else None
                return _error(exc.status, str(exc), found)
        return handler

    async def oncall_now(request: Request) -> Response:
        try:
            days = float(request.query_params.get("days", "0"))
        except ValueError:
            return _error(422, "days must be a number")
        if not 0 <= days <= 90:
            return _error(422, "days must be 0 to 90")
        return JSONResponse({"schedules": oncall(daemon.config, daemon.clock(), days)})

    async def declare(request: Request, body: dict[str, Any]) -> Response:
        system = _text(body, "system", True)
        severity = _text(body, "severity", True)
        title = _text(body, "title", True)
        by = _text(body, "by", True)
        assert system and severity and title and by
        started = body.get("started_at")
        started_at = None
        if started is not None:
            try:
                started_at = parse_time(started, daemon.clock())
            except ValueError as exc:
                raise Refused(422, f"started_at: {exc}") from None
        incident = await daemon.engine.declare(system, severity, title, by, started_at)
        return JSONResponse(await shape(incident), status_code=201)

    async def resolve(request: Request, body: dict[str, Any]) -> Response:
        by = _text(body, "by", True)
        assert by
        incident = await daemon.engine.resolve_by_hand(
            request.path_params["id"], by, _text(body, "note"))
        return JSONResponse(await shape(incident))

    async def patch(request: Request, body: dict[str, Any]) -> Response:
        by = _text(body, "by", True)
        assert by
        known = {"by", "confirmed_cause", "root_cause", "actions"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise Refused(422, f"unknown field {unknown[0]} (known: {', '.join(sorted(known))})")
        changes = {k: body[k] for k in ("confirmed_cause", "root_cause", "actions") if k in body}
        incident = await daemon.engine.patch(request.path_params["id"], by, changes)
        return JSONResponse(await shape(incident))

    async def confirm(request: Request, body: dict[str, Any]) -> Response:
        what = _text(body, "what", True)
        assert what
        incident = await daemon.engine.confirm_department(
            request.path_params["id"], request.path_params["dept"], what, _text(body, "by"),
            via="api")
        return JSONResponse(await shape(incident))

    async def vendor(request: Request, body: dict[str, Any]) -> Response:
        incident = await daemon.engine.vendor_response(
            request.path_params["id"], _text(body, "by"), _text(body, "eta"), via="api")
        return JSONResponse(await shape(incident))

    return [
        Route("/api/v1/oncall", oncall_now, methods=["GET"]),
        Route("/api/v1/incidents", write(declare), methods=["POST"]),
        Route("/api/v1/incidents/{id}", write(patch), methods=["PATCH"]),
        Route("/api/v1/incidents/{id}/resolve", write(resolve), methods=["POST"]),
        Route("/api/v1/incidents/{id}/departments/{dept}/confirm", write(confirm),
              methods=["POST"]),
        Route("/api/v1/incidents/{id}/vendor-response", write(vendor), methods=["POST"]),
    ]


def merge_routes(routes: list[Route]) -> list[Route]:
    """One route per path, dispatching by method, so a 405 lists every method in `Allow`."""
    by_path: dict[str, list[Route]] = {}
    for route in routes:
        by_path.setdefault(route.path, []).append(route)
    merged: list[Route] = []
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
