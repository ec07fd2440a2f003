"""HTTP endpoints of SPEC §13 that are not links: on-call, declare/resolve/patch, the
help-desk confirmations and the vendor response taken by phone.

Kept out of `api.py` so the people features live in one module; `monitor.web.app` mounts
`ROUTES`. Writes pass the same `@write` gate as every operator action (token, standby,
validated body) and go through `Operations`; the rules are in `monitor/people/actions.py`,
whose `Refused` becomes the answer's status.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.core.models import Incident, iso
from monitor.core.types import Severity
from monitor.delivery.context import incident_payload
from monitor.people.actions import Refused
from monitor.people.oncall import oncall
from monitor.web.bodies import (
    MAX_ACTION,
    MAX_ACTIONS,
    Body,
    Name,
    Note,
    RequiredName,
    RequiredNote,
    TimeText,
    clean_text,
    parse_time,
)
from monitor.web.guard import side_of, write
from monitor.web.interfaces import ReadView, WebSide

Action = Annotated[str, Field(max_length=MAX_ACTION), AfterValidator(clean_text)]


class DeclareBody(Body):
    """`POST /api/v1/incidents`: an incident declared by hand (a help-desk call)."""

    system: RequiredName
    severity: Literal["critical", "warning"]
    title: RequiredNote
    by: RequiredName
    started_at: TimeText | None = Field(default=None, description="RFC 3339, default now")


class ResolveBody(Body):
    """`POST /api/v1/incidents/{id}/resolve`."""

    by: RequiredName
    note: Note | None = None


class PatchBody(Body):
    """`PATCH /api/v1/incidents/{id}`: only the fields given change (null clears)."""

    by: RequiredName
    confirmed_cause: Name | None = None
    suspected_cause: Name | None = Field(default=None, description=(
        "the name SPEC 7 gives the person's verdict on the cause: recorded as "
        "confirmed_cause (the engine keeps its own suspected_cause)"))
    root_cause: Note | None = None
    actions: list[Action] | None = Field(default=None, max_length=MAX_ACTIONS)


class ConfirmBody(Body):
    """`POST /api/v1/incidents/{id}/departments/{dept}/confirm` (taken by phone)."""

    what: Literal["on_paper", "backfill_done"]
    by: Name | None = None


class VendorBody(Body):
    """`POST /api/v1/incidents/{id}/vendor-response` (taken by phone)."""

    by: Name | None = None
    eta: Name | None = None


def _error(status: int, message: str, incident: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message, "status": status}
    if incident is not None:
        body["incident"] = incident
    return JSONResponse(body, status_code=status)


async def shape(incident: Incident, view: ReadView) -> dict[str, Any]:
    data = incident_payload(incident, view.config)
    tz = view.config.site.tz
    data["timeline"] = [
        {"at": iso(e.at, tz), "kind": e.kind, "text": e.text, "data": e.data}
        for e in await view.timeline(incident.id)]
    return data


async def answer(side: WebSide, action: Awaitable[Incident], status: int = 200) -> Response:
    """The incident after the action, or the rule's refusal (with the incident when known)."""
    try:
        incident = await action
    except Refused as exc:
        found = await shape(exc.incident, side) if exc.incident is not None else None
        return _error(exc.status, str(exc), found)
    return JSONResponse(await shape(incident, side), status_code=status)


async def oncall_now(request: Request) -> Response:
    view = side_of(request)
    try:
        days = float(request.query_params.get("days", "0"))
    except ValueError:
        return _error(422, "days must be a number")
    if not (math.isfinite(days) and 0 <= days <= 90):
        return _error(422, "days must be 0 to 90")
    return JSONResponse({"schedules": oncall(view.config, view.clock(), days)})


@write(DeclareBody)
async def declare(request: Request, side: WebSide, body: DeclareBody) -> Response:
    started_at = None
    if body.started_at is not None:
        try:
            started_at = parse_time(body.started_at, side.clock())
        except ValueError as exc:
            return _error(422, f"started_at: {exc}")
    return await answer(side, side.declare(body.system, Severity(body.severity), body.title,
                                           body.by, started_at), status=201)


@write(ResolveBody)
async def resolve(request: Request, side: WebSide, body: ResolveBody) -> Response:
    return await answer(side, side.resolve(request.path_params["id"], body.by,
                                           body.note or None))


@write(PatchBody)
async def patch(request: Request, side: WebSide, body: PatchBody) -> Response:
    changes: dict[str, Any] = {k: getattr(body, k) for k in (
        "confirmed_cause", "root_cause", "actions") if k in body.model_fields_set}
    if "suspected_cause" in body.model_fields_set:
        # SPEC 7 names the field `suspected_cause`, 13.5 `confirmed_cause`: both record what a
        # person found; silently ignoring one of them would answer 200 and change nothing.
        if "confirmed_cause" in changes and changes["confirmed_cause"] != body.suspected_cause:
            return _error(422, "suspected_cause and confirmed_cause differ: give one")
        changes["confirmed_cause"] = body.suspected_cause
    if "actions" in changes and changes["actions"] is None:
        return _error(422, "actions must be a list of texts")
    return await answer(side, side.patch(request.path_params["id"], body.by, changes))


@write(ConfirmBody)
async def confirm(request: Request, side: WebSide, body: ConfirmBody) -> Response:
    return await answer(side, side.confirm_department(
        request.path_params["id"], request.path_params["dept"], body.what, body.by or None))


@write(VendorBody)
async def vendor(request: Request, side: WebSide, body: VendorBody) -> Response:
    return await answer(side, side.vendor_response(request.path_params["id"], body.by or None,
                                                   body.eta or None))

ROUTES = [
    Route("/api/v1/oncall", oncall_now, methods=["GET"]),
    Route("/api/v1/incidents", declare, methods=["POST"]),
    Route("/api/v1/incidents/{id}", patch, methods=["PATCH"]),
    Route("/api/v1/incidents/{id}/resolve", resolve, methods=["POST"]),
    Route("/api/v1/incidents/{id}/departments/{dept}/confirm", confirm, methods=["POST"]),
    Route("/api/v1/incidents/{id}/vendor-response", vendor, methods=["POST"]),
]
