"""HTTP side (SPEC §7): metrics, health, the JSON API. Pages live in `monitor/web/pages.py`.

Handlers read the daemon's state; the only writes are operator actions (ack, notes,
silences, heartbeats), which go through the engine like any other event. Write endpoints
need a Bearer token from `server.api_tokens`; without one they answer 401 and change nothing.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from monitor.core.durations import parse_duration
from monitor.core.models import Incident, Silence, iso
from monitor.delivery.context import incident_payload
from monitor.runtime import memtrim
from monitor.web.history import history_routes

if TYPE_CHECKING:
    from monitor.runtime.daemon import Daemon


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def token_ok(request: Request, tokens: list[str]) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return any(t and hmac.compare_digest(token.encode(), t.encode()) for t in tokens)


async def json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def build_app(daemon: Daemon) -> Starlette:
    def unauthorized() -> JSONResponse:
        return error(401, "missing or invalid Bearer token")

    def not_leader() -> JSONResponse | None:
        """Operator actions go to the instance that runs incidents (SPEC §9)."""
        if daemon.leading:
            return None
        return error(503, "this hismon instance is a standby; send this to the leader "
                          f"({daemon.leadership.holder or 'none elected yet'})")

    def authorized(request: Request) -> bool:
        return token_ok(request, daemon.config.server.api_tokens)

    async def metrics(request: Request) -> Response:
        daemon._refresh_source()
        body = await daemon.metrics.exposition()
        memtrim.trim()  # at most every 30 s: a scrape's temporaries must not stay in RSS
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        problems = []
        if not daemon.ready:
            problems.append("starting")
        try:
            await asyncio.wait_for(daemon.store.ping(), 2.0)
        except Exception as exc:
            problems.append(f"store unreachable: {type(exc).__name__}")
        if daemon.store_error:
            problems.append(f"store: {daemon.store_error}")
        if daemon.leading:
            problems += daemon.engine.problems()
        if problems:
            return JSONResponse({"ready": False, "problems": problems}, status_code=503)
        return JSONResponse({"ready": True, "leader": daemon.leading,
                             "leader_instance": daemon.leadership.holder})

    def check_json(state: Any) -> dict[str, Any]:
        return {
            "id": state.check_id, "system": state.system, "type": state.type,
            "state": state.state.name, "hard": state.hard, "hard_state": state.hard_state.name,
            "message": state.message, "duration_seconds": round(state.duration, 6),
            "last_run": iso(state.last_run, daemon.config.site.tz), "flapping": state.flapping,
            "stale": state.stale, "unstable": state.unstable,
            "numbers": state.numbers,
        }

    async def checks(request: Request) -> Response:
        system = request.query_params.get("system")
        items = [check_json(s) for s in daemon.states.values()
                 if system is None or s.system == system]
        return JSONResponse({"checks": items})

    async def incident_json(incident: Incident, with_timeline: bool) -> dict[str, Any]:
        data = incident_payload(incident, daemon.config)
        if with_timeline:
            tz = daemon.config.site.tz
            data["timeline"] = [
                {"at": iso(e.at, tz), "kind": e.kind, "text": e.text, "data": e.data}
                for e in await daemon.store.timeline(incident.id)]
            data["messages"] = [
                {"kind": m.kind, "notifier": m.notifier, "status": m.status,
                 "attempts": m.attempts, "last_error": m.last_error,
                 "sent_at": iso(m.sent_at, tz)}
                for m in reversed(await daemon.store.list_messages(incident_id=incident.id))]
        return data

    async def incidents(request: Request) -> Response:
        status = request.query_params.get("status")
        if status not in (None, "open", "resolved"):
            return error(422, "status must be open or resolved")
        found = await daemon.store.list_incidents(status=status)
        return JSONResponse({"incidents": [await incident_json(i, True) for i in found]})

    async def incident(request: Request) -> Response:
        found = await daemon.store.get_incident(request.path_params["id"])
        if found is None:
            return error(404, f"no incident {request.path_params['id']}")
        return JSONResponse(await incident_json(found, True))

    async def ack(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        if (standby := not_leader()) is not None:
            return standby
        body = await json_body(request)
        if body is None or not isinstance(body.get("by"), str) or not body["by"].strip():
            return error(422, 'body must be JSON with a non-empty "by"')
        note = body.get("note")
        if note is not None and not isinstance(note, str):
            return error(422, '"note" must be a string')
        found = await daemon.engine.acknowledge(request.path_params["id"], body["by"].strip(),
                                                note)
        if found is None:
            return error(404, f"no open incident {request.path_params['id']}")
        return JSONResponse(await incident_json(found, False))

    async def update(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        if (standby := not_leader()) is not None:
            return standby
        body = await json_body(request)
        if body is None or not isinstance(body.get("text"), str) or not body["text"].strip():
            return error(422, 'body must be JSON with a non-empty "text"')
        by = body.get("by")
        if by is not None and not isinstance(by, str):
            return error(422, '"by" must be a string')
        by = (by or "").strip() or "incident lead"
        found = await daemon.engine.add_note(request.path_params["id"], by, body["text"].strip())
        if found is None:
            return error(404, f"no open incident {request.path_params['id']}")
        return JSONResponse(await incident_json(found, False))

    async def messages(request: Request) -> Response:
        status = request.query_params.get("status")
        if status not in (None, "pending", "sent", "failed", "undeliverable"):
            return error(422, "status must be pending, sent, failed or undeliverable")
        tz = daemon.config.site.tz
        found = await daemon.store.list_messages(
            status=status, incident_id=request.query_params.get("incident"), limit=500)
        return JSONResponse({"messages": [
            {"key": m.idempotency_key, "kind": m.kind, "notifier": m.notifier,
             "incident": m.incident_id, "title": m.payload.get("title"), "status": m.status,
             "attempts": m.attempts, "last_error": m.last_error,
             "created_at": iso(m.created_at, tz), "sent_at": iso(m.sent_at, tz)}
            for m in found]})

    async def list_silences(request: Request) -> Response:
        tz = daemon.config.site.tz
        now = daemon.clock()
        return JSONResponse({"silences": [
            {"id": w.key, "systems": list(w.systems), "start": iso(w.start, tz),
             "end": iso(w.end, tz), "reason": w.reason,
             "source": "config" if w.key.startswith("config-") else "api",
             "active": w.start <= now < w.end}
            for w in daemon.engine.windows(now) if w.end > now]})

    async def add_silence(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        if (standby := not_leader()) is not None:
            return standby
        body = await json_body(request)
        if body is None:
            return error(422, "body must be a JSON object")
        try:
            silence = parse_silence(body, daemon)
        except ValueError as exc:
            return error(422, str(exc))
        await daemon.store.save_silence(silence)
        daemon.engine.silences[silence.id] = silence
        daemon.engine.invalidate_windows()
        daemon.engine.wake()
        return JSONResponse({"id": silence.id, "systems": silence.systems,
                             "start": iso(silence.start, daemon.config.site.tz),
                             "end": iso(silence.end, daemon.config.site.tz),
                             "reason": silence.reason}, status_code=201)

    async def silences(request: Request) -> Response:
        if request.method == "POST":
            return await add_silence(request)
        return await list_silences(request)

    async def delete_silence(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        if (standby := not_leader()) is not None:
            return standby
        silence_id = request.path_params["id"]
        if silence_id.startswith("config-"):
            return error(422, "maintenance windows from the config are changed in the config")
        if not await daemon.store.delete_silence(silence_id):
            return error(404, f"no silence {silence_id}")
        daemon.engine.silences.pop(silence_id, None)
        daemon.engine.invalidate_windows()
        daemon.engine.wake()
        return JSONResponse({"deleted": silence_id})

    async def heartbeat(request: Request) -> Response:
        check_id = request.path_params["check_id"]
        check = next((c for c in daemon.config.checks if c.id == check_id), None)
        if check is None or check.type != "heartbeat":
            return error(404, f"no heartbeat check {check_id}")
        wanted = getattr(check, "token", None)
        if wanted and not token_ok(request, [wanted]):
            return unauthorized()
        now = daemon.clock()
        daemon.ctx.heartbeats[check_id] = now
        await daemon.store.save_heartbeat(check_id, now)
        return JSONResponse({"check": check_id, "received_at": iso(now, daemon.config.site.tz)})

    routes = [
        Route("/metrics", metrics),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/api/v1/checks", checks),
        Route("/api/v1/incidents", incidents),
        Route("/api/v1/incidents/{id}", incident),
        Route("/api/v1/incidents/{id}/ack", ack, methods=["POST"]),
        Route("/api/v1/incidents/{id}/updates", update, methods=["POST"]),
        # One route for both methods, so a 405 there lists both in `Allow`.
        Route("/api/v1/silences", silences, methods=["GET", "POST"]),
        Route("/api/v1/silences/{id}", delete_silence, methods=["DELETE"]),
        Route("/api/v1/heartbeat/{check_id}", heartbeat, methods=["POST"]),
        Route("/api/v1/messages", messages, methods=["GET"]),
    ]
    from monitor.web.links import link_routes
    from monitor.web.people import merge_routes, people_routes
    from monitor.web.push import push_routes
    from monitor.web.review import review_routes

    routes = merge_routes(routes + people_routes(daemon) + history_routes(daemon)
                          + push_routes(daemon) + link_routes(daemon) + review_routes(daemon))
    try:
        from monitor.web.pages import page_routes
    except ImportError:  # pages are optional until they land
        pass
    else:
        routes += page_routes(daemon)
    return Starlette(routes=routes, exception_handlers={HTTPException: api_http_error})


async def api_http_error(request: Request, exc: Exception) -> Response:
    """Unknown API paths and wrong methods answer JSON like every other API error."""
    assert isinstance(exc, HTTPException)
    if not request.url.path.startswith("/api/"):
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    detail = {404: f"no API endpoint {request.url.path}",
              405: f"{request.method} is not allowed on {request.url.path}"}
    response = error(exc.status_code, detail.get(exc.status_code, exc.detail))
    response.headers.update(exc.headers or {})
    return response


MAX_TIME = 253_402_128_000.0
"""9999-12-30T00:00Z: the last instant every time zone can still write as a date."""


def parse_time(value: Any, now: float) -> float:
    """An RFC 3339 time, or a duration from now (`2h`)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("time must be a string: RFC 3339 (2026-12-01T22:00:00+08:00) or 2h")
    try:
        ts = now + parse_duration(value)
    except ValueError:
        ts = _absolute_time(value)
    # A silence is stored and shown on every page and API answer: a time that cannot be
    # written back as a date (year 1, `99999999999d`) would break those for good.
    if not 0 <= ts <= MAX_TIME:
        raise ValueError(f'time "{value}" is out of range (1970 to 9999)')
    return ts


def _absolute_time(value: str) -> float:
    import datetime as dt

    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f'invalid time "{value}"') from None
    if parsed.tzinfo is None:
        raise ValueError(f'time "{value}" needs a UTC offset')
    try:
        return parsed.timestamp()
    except (OverflowError, ValueError):
        return float("nan")  # refused as out of range by the caller


def parse_silence(body: dict[str, Any], daemon: Daemon) -> Silence:
    systems = body.get("systems") or ([body["system"]] if body.get("system") else None)
    known = {s.id for s in daemon.config.systems}
    if not isinstance(systems, list) or not systems or not all(isinstance(s, str) for s in systems):
        raise ValueError('"systems" must be a non-empty list of system ids')
    unknown = [s for s in systems if s not in known]
    if unknown:
        raise ValueError(f"unknown system {', '.join(unknown)}")
    now = time.time()
    start = parse_time(body["start"], now) if body.get("start") else now
    if "end" not in body and "until" not in body:
        raise ValueError('"end" (or "until") is required')
    end = parse_time(body.get("end") or body.get("until"), now)
    if end <= start:
        raise ValueError("end must be after start")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError('"reason" is required')
    created_by = body.get("created_by") if isinstance(body.get("created_by"), str) else None
    return Silence(id=f"sil-{secrets.token_hex(4)}", systems=systems, start=start, end=end,
                   reason=reason.strip(), created_by=created_by)
