"""The JSON API, metrics and health (SPEC §7). Pages live in `monitor/web/pages.py`.

Handlers read the daemon through its `ReadView`; the only writes are operator actions (ack,
notes, silences) and heartbeats, which go through `Operations` behind `@write` (token,
standby, validated body: `monitor.web.guard`). Without a valid token a write answers 401 and
changes nothing. `ROUTES` lists what this module serves (`monitor.web.app` mounts it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from monitor.core.models import Incident, iso
from monitor.delivery.context import incident_payload
from monitor.delivery.grouping import binding
from monitor.probing.state import CheckState
from monitor.web.bodies import AckBody, SilenceBody, UpdateBody
from monitor.web.guard import Refusal, error, side_of, write
from monitor.web.interfaces import ReadView, WebSide

if TYPE_CHECKING:
    from monitor.store.buffered import Unrecorded


class PartsResponse(Response):
    """A body sent as the pieces it was rendered in, with its whole Content-Length.

    `/metrics` is 24 MB at 50,000 checks: joining its ~460 pieces first would be one more
    copy (a pause of the loop, and 24 MB of fresh pages to fault in at every scrape); each
    piece goes to the transport as it is, and uvicorn's flow control lets the loop run while
    the scraper reads."""

    def __init__(self, parts: list[bytes], media_type: str) -> None:
        self.parts = parts
        super().__init__(None, headers={"content-length": str(sum(map(len, parts)))},
                         media_type=media_type)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        last = len(self.parts) - 1
        for i, part in enumerate(self.parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < last})
        if last < 0:
            await send({"type": "http.response.body", "body": b""})


async def metrics(request: Request) -> Response:
    return PartsResponse(await side_of(request).metrics(), CONTENT_TYPE_LATEST)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    side = side_of(request)
    problems = await side.problems()
    if problems:
        return JSONResponse({"ready": False, "problems": problems}, status_code=503)
    return JSONResponse({"ready": True, "leader": side.leading, "leader_instance": side.leader})


def check_json(state: CheckState, view: ReadView) -> dict[str, Any]:
    return {
        "id": state.check_id, "system": state.system, "type": state.type,
        "state": state.state.name, "hard": state.hard, "hard_state": state.hard_state.name,
        "message": state.message, "duration_seconds": round(state.duration, 6),
        "last_run": iso(state.last_run, view.config.site.tz), "flapping": state.flapping,
        "stale": state.stale, "unstable": state.unstable,
        "numbers": state.numbers,
    }


async def incident_json(incident: Incident, view: ReadView, with_timeline: bool
                        ) -> dict[str, Any]:
    data = incident_payload(incident, view.config)
    unrecorded = view.recording()
    if unrecorded is not None and incident.id in unrecorded.incidents:
        data["recorded"] = False  # only in memory until the store takes writes again
    if with_timeline:
        tz = view.config.site.tz
        data["timeline"] = [
            {"at": iso(e.at, tz), "kind": e.kind, "text": e.text, "data": e.data}
            for e in await view.timeline(incident.id)]
        data["messages"] = [
            {"kind": m.kind, "notifier": m.notifier, "status": m.status,
             "attempts": m.attempts, "last_error": m.last_error,
             "sent_at": iso(m.sent_at, tz)}
            for m in reversed(await view.list_messages(incident_id=incident.id))]
    return data


async def checks(request: Request) -> Response:
    view = side_of(request)
    system = request.query_params.get("system")
    items = [check_json(s, view) for s in view.states.values()
             if system is None or s.system == system]
    return JSONResponse({"checks": items})


async def incidents(request: Request) -> Response:
    view = side_of(request)
    status = request.query_params.get("status")
    if status not in (None, "open", "resolved"):
        return error(422, "status must be open or resolved")
    found = await view.list_incidents(status=status)
    body: dict[str, Any] = {"incidents": [await incident_json(i, view, True) for i in found]}
    unrecorded = view.recording()
    if unrecorded is not None:  # the store refuses writes: this answer is memory's
        body["recording"] = recording_json(unrecorded, view)
    return JSONResponse(body)


def recording_json(unrecorded: Unrecorded, view: ReadView) -> dict[str, Any]:
    """`recording` in the incident answers while hismon cannot record (docs/operations.md)."""
    return {"ok": False, "since": iso(unrecorded.since, view.config.site.tz),
            "waiting": unrecorded.waiting, "error": unrecorded.error,
            "refused": unrecorded.refused, "incidents": list(unrecorded.incidents)}


async def incident(request: Request) -> Response:
    view = side_of(request)
    found = await view.get_incident(request.path_params["id"])
    if found is None:
        return error(404, f"no incident {request.path_params['id']}")
    body = await incident_json(found, view, True)
    unrecorded = view.recording()
    if unrecorded is not None:
        body["recording"] = recording_json(unrecorded, view)
    return JSONResponse(body)


@write(AckBody)
async def ack(request: Request, side: WebSide, body: AckBody) -> Response:
    found = await side.acknowledge(request.path_params["id"], body.by, body.note or None)
    if found is None:
        return error(404, f"no open incident {request.path_params['id']}")
    return JSONResponse(await incident_json(found, side, False))


@write(UpdateBody)
async def update(request: Request, side: WebSide, body: UpdateBody) -> Response:
    found = await side.add_note(request.path_params["id"], body.by or "incident lead",
                                body.text)
    if found is None:
        return error(404, f"no open incident {request.path_params['id']}")
    return JSONResponse(await incident_json(found, side, False))


async def messages(request: Request) -> Response:
    view = side_of(request)
    status = request.query_params.get("status")
    if status not in (None, "pending", "sent", "failed", "undeliverable"):
        return error(422, "status must be pending, sent, failed or undeliverable")
    tz = view.config.site.tz
    found = await view.list_messages(
        status=status, incident_id=request.query_params.get("incident"), limit=500)
    return JSONResponse({"messages": [
        {"key": m.idempotency_key, "kind": m.kind, "notifier": m.notifier,
         "incident": m.incident_id, "title": m.payload.get("title"), "status": m.status,
         "attempts": m.attempts, "last_error": m.last_error,
         "created_at": iso(m.created_at, tz), "sent_at": iso(m.sent_at, tz),
         "group": group[0] if (group := binding(m)) else None}
        for m in found]})


async def list_silences(request: Request) -> Response:
    view = side_of(request)
    tz = view.config.site.tz
    now = view.clock()
    return JSONResponse({"silences": [
        {"id": w.key, "systems": list(w.systems), "start": iso(w.start, tz),
         "end": iso(w.end, tz), "reason": w.reason,
         "source": "config" if w.key.startswith("config-") else "api",
         "active": w.start <= now < w.end}
        for w in view.windows(now) if w.end > now]})


@write(SilenceBody)
async def add_silence(request: Request, side: WebSide, body: SilenceBody) -> Response:
    silence = await side.add_silence(body.silence())
    tz = side.config.site.tz
    return JSONResponse({"id": silence.id, "systems": silence.systems,
                         "start": iso(silence.start, tz), "end": iso(silence.end, tz),
                         "reason": silence.reason}, status_code=201)


@write()
async def delete_silence(request: Request, side: WebSide, body: None) -> Response:
    silence_id = request.path_params["id"]
    if silence_id.startswith("config-"):
        return error(422, "maintenance windows from the config are changed in the config")
    if not await side.remove_silence(silence_id):
        return error(404, f"no silence {silence_id}")
    return JSONResponse({"deleted": silence_id})


def heartbeat_tokens(request: Request, view: ReadView) -> Sequence[str] | None:
    """A heartbeat check's own `token`, if it sets one; 404 for anything else."""
    check_id = request.path_params["check_id"]
    check = next((c for c in view.config.checks if c.id == check_id), None)
    if check is None or check.type != "heartbeat":
        raise Refusal(404, "not_found", f"no heartbeat check {check_id}")
    wanted = getattr(check, "token", None)
    return [wanted] if wanted else None


@write(tokens=heartbeat_tokens, leader_only=False)
async def heartbeat(request: Request, side: WebSide, body: None) -> Response:
    """Every instance records a ping: the store is shared and followers read it back."""
    check_id = request.path_params["check_id"]
    received = await side.record_heartbeat(check_id)
    return JSONResponse({"check": check_id, "received_at": iso(received, side.config.site.tz)})


ROUTES = [
    Route("/metrics", metrics),
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/api/v1/checks", checks),
    Route("/api/v1/incidents", incidents),
    Route("/api/v1/incidents/{id}", incident),
    Route("/api/v1/incidents/{id}/ack", ack, methods=["POST"]),
    Route("/api/v1/incidents/{id}/updates", update, methods=["POST"]),
    Route("/api/v1/silences", list_silences, methods=["GET"]),  # one route for both methods
    Route("/api/v1/silences", add_silence, methods=["POST"]),  # (app.merge_routes: Allow)
    Route("/api/v1/silences/{id}", delete_silence, methods=["DELETE"]),
    Route("/api/v1/heartbeat/{check_id}", heartbeat, methods=["POST"]),
    Route("/api/v1/messages", messages, methods=["GET"]),
]
