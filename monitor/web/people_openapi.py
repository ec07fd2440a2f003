"""The OpenAPI paths of the SPEC §13 endpoints in `monitor/web/people.py`, merged into the
document by `monitor/web/openapi.py` (kept next to the handlers they describe)."""

from __future__ import annotations

from typing import Any

from monitor.web.bodies import ID_PATTERN, request_body
from monitor.web.guard import MAX_JSON_BODY
from monitor.web.people import ConfirmBody, DeclareBody, PatchBody, ResolveBody, VendorBody


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _id(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": ID_PATTERN, "minLength": 1}}


TEXT = {"type": "string", "minLength": 1}
NULLABLE_TEXT = {"type": "string", "nullable": True}
PERSON = {"type": "object", "required": ["id", "name"],
          "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}

SCHEMAS: dict[str, Any] = {
    "IncidentDetail": {
        "allOf": [_ref("Incident"), {"type": "object", "required": ["timeline"], "properties": {
            "timeline": {"type": "array", "items": _ref("TimelineEntry")}}}],
    },
    "IncidentConflict": {
        "type": "object", "required": ["error", "status", "incident"],
        "properties": {"error": {"type": "string"}, "status": {"type": "integer"},
                       "incident": _ref("IncidentDetail")},
    },
}
"""`Incident` itself gains the §13 fields in `INCIDENT_FIELDS` (none of them required)."""

INCIDENT_FIELDS: dict[str, Any] = {
    "source": {"type": "string", "enum": ["checks", "manual"]},
    "title": NULLABLE_TEXT,
    "declared_by": NULLABLE_TEXT,
    "resolved_by": NULLABLE_TEXT,
    "confirmed_cause": NULLABLE_TEXT,
    "root_cause": NULLABLE_TEXT,
    "actions": {"type": "array", "items": {"type": "string"}},
    "departments_confirmed": {"type": "object", "additionalProperties": {"type": "object"}},
    "vendor_responded_at": {"type": "string", "format": "date-time", "nullable": True},
    "vendor_responded_by": NULLABLE_TEXT,
    "vendor_eta": NULLABLE_TEXT,
}

BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
DETAIL = _json(_ref("IncidentDetail"), "The incident with its timeline")
COMMON = {"401": _error("Missing or invalid Bearer token; nothing was changed"),
          "503": _error("This instance is a standby (SPEC §9); send it to the leader"),
          "413": _error(f"The body is larger than {MAX_JSON_BODY} bytes; nothing was changed"),
          "422": _error("The body or the request is not valid for this incident (invalid "
                        "JSON or Unicode, a field too long)")}


def _write(operation: str, summary: str, body: dict[str, Any], params: list[dict[str, Any]],
           responses: dict[str, Any]) -> dict[str, Any]:
    return {"operationId": operation, "tags": ["write"], "security": BEARER, "summary": summary,
            "parameters": params, "requestBody": body, "responses": {**COMMON, **responses}}


INCIDENT_ID = _id("id", "Incident id, e.g. inc-42")

PATHS: dict[str, Any] = {
    "/api/v1/oncall": {"get": {
        "operationId": "onCall", "tags": ["read"],
        "summary": "Who is on duty in each schedule, the backup and the next handover",
        "parameters": [{"name": "days", "in": "query", "required": False,
                        "schema": {"type": "number", "minimum": 0, "maximum": 90},
                        "description": "also list the handovers this many days ahead"}],
        "responses": {
            "200": _json({"type": "object", "required": ["schedules"], "properties": {
                "schedules": {"type": "array", "items": {
                    "type": "object", "required": ["id", "on_duty", "next", "until"],
                    "properties": {"id": {"type": "string"}, "on_duty": PERSON,
                                   "next": PERSON,
                                   "until": {"type": "string", "format": "date-time"},
                                   "override": {"type": "boolean"},
                                   "handovers": {"type": "array", "items": {
                                       "type": "object"}}}}}}}, "The schedules"),
            "422": _error("`days` is not a number"),
        },
    }},
    "/api/v1/incidents": {"post": _write(
        "declareIncident", "Declare an incident by hand (a help-desk call)",
        request_body(DeclareBody), [],
        {"201": _json(_ref("IncidentDetail"), "Declared; the system's plan runs"),
         "409": _json(_ref("IncidentConflict"), "The system already has an open incident")})},
    "/api/v1/incidents/{id}": {"patch": _write(
        "patchIncident", "Record the confirmed cause, root cause and actions",
        request_body(PatchBody),
        [INCIDENT_ID], {"200": DETAIL, "404": _error("No such incident")})},
    "/api/v1/incidents/{id}/resolve": {"post": _write(
        "resolveIncident", "Resolve by hand (an automatic one only once no check fails)",
        request_body(ResolveBody), [INCIDENT_ID],
        {"200": DETAIL, "404": _error("No such incident"),
         "409": _json(_ref("IncidentConflict"), "Already resolved")})},
    "/api/v1/incidents/{id}/departments/{dept}/confirm": {"post": _write(
        "confirmDepartment", "A department is on paper / done with back-entry (by phone)",
        request_body(ConfirmBody),
        [INCIDENT_ID, _id("dept", "Department id")],
        {"200": DETAIL, "404": _error("No such incident")})},
    "/api/v1/incidents/{id}/vendor-response": {"post": _write(
        "vendorResponse", "The vendor's engineer is responding (taken by phone)",
        request_body(VendorBody), [INCIDENT_ID],
        {"200": DETAIL, "404": _error("No such incident")})},
    "/api/v1/incidents/{id}/review": {"get": {
        "operationId": "incidentReview", "tags": ["read"],
        "summary": "The post-incident review (SPEC 13.6); printable at /incidents/{id}/review",
        "parameters": [INCIDENT_ID],
        "responses": {"200": _json({"type": "object", "required": [
            "incident", "systems", "departments", "window", "detection", "messages",
            "acknowledgement", "cause", "progress_notes", "actions", "timeline"]},
            "The review"), "404": _error("No such incident")},
    }},
}


def merge(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Add these paths and schemas to the document's (methods merge into existing paths)."""
    for path, methods in PATHS.items():
        paths.setdefault(path, {}).update(methods)
    schemas.update(SCHEMAS)
    schemas["Incident"]["properties"].update(INCIDENT_FIELDS)
