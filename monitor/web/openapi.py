"""The OpenAPI 3 description of hismon's HTTP API (SPEC §7), served at /api/v1/openapi.json.

Answers are described by hand as a Python dict next to `monitor/web/api.py`, so the contract
is reviewed like code: a change to a handler's answer must change this file too, and the
schemathesis run in `tests/test_openapi.py` fails when the two disagree. Request bodies are
generated from their pydantic models (`monitor.web.bodies`), the same that validate them, so
a body rule is written once.
"""

from __future__ import annotations

import copy
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from monitor import __version__
from monitor.web import cluster as cluster_routes
from monitor.web import people_openapi
from monitor.web.bodies import ID_PATTERN, AckBody, SilenceBody, UpdateBody, body_schema
from monitor.web.guard import MAX_JSON_BODY
from monitor.web.history import OPENAPI_PATHS as HISTORY_PATHS
from monitor.web.push import OPENAPI_PATHS as PUSH_PATHS

STATES = ["OK", "WARN", "CRIT", "UNKNOWN"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


DATE_TIME = {"type": "string", "format": "date-time",
             "description": "RFC 3339 with the site's UTC offset"}

UNAUTHORIZED = _error("Missing or invalid Bearer token; nothing was changed")
TOO_LARGE = _error(f"The body is larger than {MAX_JSON_BODY} bytes; nothing was changed")
STANDBY = _error("This instance is a standby (SPEC §9); send the request to the leader")

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "status"],
        "properties": {
            "error": {"type": "string", "description": "What is wrong, for a human"},
            "status": {"type": "integer", "description": "The HTTP status, repeated"},
        },
    },
    "Check": {
        "type": "object",
        "required": ["id", "system", "type", "state", "hard", "hard_state", "message",
                     "duration_seconds", "last_run", "flapping", "numbers"],
        "properties": {
            "id": {"type": "string"},
            "system": {"type": "string"},
            "type": {"type": "string", "example": "http"},
            "state": {"type": "string", "enum": STATES,
                      "description": "The last probe's result"},
            "hard": {"type": "boolean",
                     "description": "False while a failure is not yet confirmed"},
            "hard_state": {"type": "string", "enum": STATES,
                           "description": "The confirmed state incidents are made of"},
            "message": {"type": "string", "example": "HTTP 503 in 120ms"},
            "duration_seconds": {"type": "number", "minimum": 0},
            "last_run": _nullable(DATE_TIME),
            "flapping": {"type": "boolean"},
            "stale": {"type": "boolean", "description": "No fresh result for max(3 × interval, "
                      "interval + timeout + 10s): state and hard_state are the last known"},
            "unstable": {"type": "boolean", "description": "7+ of the last 21 results non-OK "
                         "in 3+ runs, never confirm in a row (SPEC 4)"},
            "numbers": {"type": "object", "additionalProperties": {"type": "number"},
                        "description": "Named measurements (latency, rows, lag...)"},
        },
    },
    "FailingCheck": {
        "type": "object",
        "required": ["id", "type", "state", "message"],
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string"},
            "state": {"type": "string", "enum": STATES},
            "message": {"type": "string"},
        },
    },
    "TimelineEntry": {
        "type": "object",
        "required": ["at", "kind", "text", "data"],
        "properties": {
            "at": DATE_TIME,
            "kind": {"type": "string", "example": "step_sent",
                     "description": "opened, escalated, check_failed, check_recovered, "
                                    "check_state, caused_by, caused_by_cleared, "
                                    "departments_added, hold, step_sent, step_skipped, "
                                    "acknowledged, note, resolved; SPEC 13: "
                                    "department_on_paper, department_backfill_done, "
                                    "vendor_escalated, vendor_responded, cause_confirmed, "
                                    "root_cause, actions"},
            "text": {"type": "string"},
            "data": {"type": "object"},
        },
    },
    "Message": {
        "type": "object",
        "description": "One outbox message of the incident and its delivery status",
        "required": ["kind", "notifier", "status", "attempts", "last_error", "sent_at"],
        "properties": {
            "kind": {"type": "string", "example": "department_outage"},
            "notifier": {"type": "string"},
            "status": {"type": "string",
                       "enum": ["pending", "sent", "failed", "undeliverable"]},
            "attempts": {"type": "integer", "minimum": 0},
            "last_error": _nullable({"type": "string"}),
            "sent_at": _nullable(DATE_TIME),
        },
    },
    "Incident": {
        "type": "object",
        "description": "The `incident` object of the webhook payload (SPEC §6)",
        "required": ["id", "system", "system_name", "severity", "status", "started_at",
                     "acknowledged_by", "resolved_at", "suspected_cause", "caused_by",
                     "affected_departments", "failing_checks"],
        "properties": {
            "id": {"type": "string", "example": "inc-42-7f3a"},
            "system": {"type": "string"},
            "system_name": {"type": "string"},
            "severity": {"type": "string", "enum": ["warning", "critical"]},
            "status": {"type": "string", "enum": ["open", "resolved"]},
            "started_at": {**DATE_TIME, "description": "First failed probe of the outage"},
            "acknowledged_by": _nullable({"type": "string"}),
            "acknowledged_at": _nullable(DATE_TIME),
            "resolved_at": _nullable(DATE_TIME),
            "suspected_cause": {"type": "string", "enum": [
                "network", "database", "application", "certificate", "capacity", "unknown"]},
            "cause_evidence": {"type": "array", "items": {"type": "string"}},
            "caused_by": _nullable({"type": "string"}),
            "caused_by_system": _nullable({"type": "string"}),
            "affected_departments": {"type": "array", "items": {"type": "string"}},
            "failing_checks": {"type": "array", "items": _ref("FailingCheck")},
            "held": _nullable({"type": "string",
                               "description": "Why notifications are held right now"}),
            "drill": {"type": "boolean"},
        },
    },
    "IncidentWithTimeline": {
        "allOf": [
            _ref("Incident"),
            {"type": "object", "required": ["timeline", "messages"], "properties": {
                "timeline": {"type": "array", "items": _ref("TimelineEntry")},
                "messages": {"type": "array", "items": _ref("Message")},
            }},
        ],
    },
    "Silence": {
        "type": "object",
        "description": "A maintenance window that has not ended yet (recurring windows "
                       "from the config appear once per occurrence)",
        "required": ["id", "systems", "start", "end", "reason", "source", "active"],
        "properties": {
            "id": {"type": "string", "example": "sil-1a2b3c4d"},
            "systems": {"type": "array", "items": {"type": "string"}},
            "start": DATE_TIME,
            "end": DATE_TIME,
            "reason": {"type": "string"},
            "created_by": _nullable({"type": "string"}),
            "source": {"type": "string", "enum": ["api", "config"],
                       "description": "config windows are changed in the config file"},
            "active": {"type": "boolean", "description": "The window is in progress now"},
        },
    },
    "SilenceCreated": {
        "type": "object",
        "required": ["id", "systems", "start", "end", "reason"],
        "properties": {
            "id": {"type": "string"},
            "systems": {"type": "array", "items": {"type": "string"}},
            "start": DATE_TIME,
            "end": DATE_TIME,
            "reason": {"type": "string"},
        },
    },
}


SCHEMAS.update({
    "AckRequest": body_schema(AckBody),
    "UpdateRequest": body_schema(UpdateBody),
    "SilenceRequest": {
        **body_schema(SilenceBody),
        "description": "Give `systems` (or `system`) and `end` (or `until`); every "
                       "system must exist, `end` must come after `start`.",
    },
})


def _path_id(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": ID_PATTERN, "minLength": 1}}


BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
PLAIN_TEXT = {"text/plain": {"schema": {"type": "string"}}}

PATHS: dict[str, Any] = {
    "/healthz": {"get": {
        "operationId": "healthz", "tags": ["operations"], "summary": "Liveness",
        "responses": {"200": {"description": "The process answers", "content": PLAIN_TEXT}},
    }},
    "/readyz": {"get": {
        "operationId": "readyz", "tags": ["operations"],
        "summary": "Readiness: config loaded and store reachable",
        "responses": {
            "200": _json({"type": "object", "required": ["ready"], "properties": {
                "ready": {"type": "boolean", "enum": [True]},
                "leader": {"type": "boolean",
                           "description": "this instance runs incidents and notifications"},
                "leader_instance": {"type": ["string", "null"]}}}, "Ready"),
            "503": _json({"type": "object", "required": ["ready", "problems"], "properties": {
                "ready": {"type": "boolean", "enum": [False]},
                "problems": {"type": "array", "items": {"type": "string"}}}}, "Not ready"),
        },
    }},
    "/metrics": {"get": {
        "operationId": "metrics", "tags": ["operations"],
        "summary": "Prometheus exposition (SPEC §8)",
        "responses": {"200": {"description": "Text exposition format 0.0.4",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }},
    "/api/v1/openapi.json": {"get": {
        "operationId": "openapi", "tags": ["operations"], "summary": "This document",
        "responses": {"200": _json({"type": "object"}, "OpenAPI 3 document")},
    }},
    "/api/v1/checks": {"get": {
        "operationId": "listChecks", "tags": ["read"],
        "summary": "Every check with its live state",
        "parameters": [{"name": "system", "in": "query", "required": False,
                        "description": "Only this system's checks",
                        "schema": {"type": "string"}}],
        "responses": {"200": _json({"type": "object", "required": ["checks"], "properties": {
            "checks": {"type": "array", "items": _ref("Check")}}}, "The checks")},
    }},
    "/api/v1/incidents": {"get": {
        "operationId": "listIncidents", "tags": ["read"],
        "summary": "Incidents, newest first, each with its timeline and messages",
        "parameters": [{"name": "status", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": ["open", "resolved"]}}],
        "responses": {
            "200": _json({"type": "object", "required": ["incidents"], "properties": {
                "incidents": {"type": "array", "items": _ref("IncidentWithTimeline")}}},
                "The incidents"),
            "422": _error("`status` is neither open nor resolved"),
        },
    }},
    "/api/v1/incidents/{id}": {"get": {
        "operationId": "getIncident", "tags": ["read"],
        "summary": "One incident with its timeline (state changes, steps sent, acks, notes)",
        "parameters": [_path_id("id", "Incident id, e.g. inc-42")],
        "responses": {
            "200": _json(_ref("IncidentWithTimeline"), "The incident"),
            "404": _error("No such incident"),
        },
    }},
    "/api/v1/incidents/{id}/ack": {"post": {
        "operationId": "ackIncident", "tags": ["write"], "security": BEARER,
        "summary": "Acknowledge: records who and when, stops steps marked "
                   "`unless: acknowledged`",
        "parameters": [_path_id("id", "Open incident id")],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _ref("AckRequest")}}},
        "responses": {
            "200": _json(_ref("Incident"), "The incident, `acknowledged_by` set"),
            "401": UNAUTHORIZED, "503": STANDBY, "413": TOO_LARGE,
            "404": _error("No open incident with this id"),
            "422": _error("The body is not valid JSON (or not valid Unicode, e.g. a lone "
                          "surrogate), `by` is empty, or a field is too long"),
        },
    }},
    "/api/v1/incidents/{id}/updates": {"post": {
        "operationId": "addIncidentUpdate", "tags": ["write"], "security": BEARER,
        "summary": "The incident lead's progress note, carried by the next progress_update",
        "parameters": [_path_id("id", "Open incident id")],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _ref("UpdateRequest")}}},
        "responses": {
            "200": _json(_ref("Incident"), "The incident"),
            "401": UNAUTHORIZED, "503": STANDBY, "413": TOO_LARGE,
            "404": _error("No open incident with this id"),
            "422": _error("The body is not valid JSON (or not valid Unicode), `text` is "
                          "empty, or a field is too long"),
        },
    }},
    "/api/v1/silences": {
        "get": {
            "operationId": "listSilences", "tags": ["read"],
            "summary": "Maintenance windows: from the config and created at run time",
            "responses": {"200": _json({"type": "object", "required": ["silences"],
                                        "properties": {"silences": {
                                            "type": "array", "items": _ref("Silence")}}},
                                       "The silences")},
        },
        "post": {
            "operationId": "createSilence", "tags": ["write"], "security": BEARER,
            "summary": "Start or plan a maintenance window: incidents are recorded and "
                       "shown, not notified",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("SilenceRequest")}}},
            "responses": {
                "201": _json(_ref("SilenceCreated"), "Created"),
                "401": UNAUTHORIZED, "503": STANDBY, "413": TOO_LARGE,
                "422": _error("Unknown system, bad time, end before start, no reason, "
                              "invalid JSON or Unicode, a field too long"),
            },
        },
    },
    "/api/v1/silences/{id}": {"delete": {
        "operationId": "deleteSilence", "tags": ["write"], "security": BEARER,
        "summary": "End a run-time maintenance window",
        "parameters": [_path_id("id", "Silence id")],
        "responses": {
            "200": _json({"type": "object", "required": ["deleted"], "properties": {
                "deleted": {"type": "string"}}}, "Deleted"),
            "401": UNAUTHORIZED, "503": STANDBY, "413": TOO_LARGE,
            "404": _error("No such silence"),
            "422": _error("Windows from the config file are changed in the config"),
        },
    }},
    "/api/v1/messages": {"get": {
        "operationId": "listMessages", "tags": ["read"],
        "summary": "The outbox: messages by delivery status (nothing is dropped silently)",
        "parameters": [
            {"name": "status", "in": "query", "required": False,
             "schema": {"type": "string",
                        "enum": ["pending", "sent", "failed", "undeliverable"]}},
            {"name": "incident", "in": "query", "required": False,
             "schema": {"type": "string"}},
        ],
        "responses": {
            "200": _json({"type": "object", "required": ["messages"], "properties": {
                "messages": {"type": "array", "items": {
                    "type": "object",
                    "required": ["key", "kind", "notifier", "status", "attempts"],
                    "properties": {
                        "key": {"type": "string"}, "kind": {"type": "string"},
                        "notifier": {"type": "string"},
                        "incident": {"type": ["string", "null"]},
                        "title": {"type": ["string", "null"]},
                        "status": {"type": "string"}, "attempts": {"type": "integer"},
                        "last_error": {"type": ["string", "null"]},
                        "created_at": {"type": ["string", "null"]},
                        "sent_at": {"type": ["string", "null"]},
                        "group": {"type": ["string", "null"],
                                  "description": "The `group:` key of the one send that "
                                                 "carried this message (SPEC 6 grouping)"}}}}}},
                "Messages, newest first"),
            "422": _error("Unknown status"),
        },
    }},
    "/api/v1/heartbeat/{check_id}": {"post": {
        "operationId": "heartbeat", "tags": ["write"],
        "summary": "A job's ping for a `heartbeat` check",
        "description": "Needs `Authorization: Bearer <token>` only when the check sets "
                       "its own `token`.",
        "security": [{}, {"bearer": []}],
        "parameters": [_path_id("check_id", "Id of a check of type heartbeat")],
        "responses": {
            "200": _json({"type": "object", "required": ["check", "received_at"],
                          "properties": {"check": {"type": "string"},
                                         "received_at": DATE_TIME}}, "Recorded"),
            "401": UNAUTHORIZED, "413": TOO_LARGE,
            "404": _error("No heartbeat check with this id"),
        },
    }},
}

people_openapi.merge(PATHS, SCHEMAS)
PATHS.update(cluster_routes.OPENAPI)

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "hismon API",
        "version": __version__,
        "description": "Checks, incidents and maintenance windows of a running hismon "
                       "daemon. Read endpoints are open; write endpoints need "
                       "`Authorization: Bearer <token>` with a token from "
                       "`server.api_tokens`. Errors are JSON: `{\"error\": ..., "
                       "\"status\": ...}`.",
    },
    "tags": [
        {"name": "read", "description": "Live state, no token needed"},
        {"name": "write", "description": "Operator actions, Bearer token"},
        {"name": "operations", "description": "Health, readiness, metrics"},
    ],
    "paths": {**PATHS, **HISTORY_PATHS, **PUSH_PATHS},
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "A token listed in `server.api_tokens`"}},
    },
}


def openapi_document() -> dict[str, Any]:
    """A copy, so a caller adding `servers` cannot change what the next request sees."""
    return copy.deepcopy(OPENAPI)


async def serve(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())


ROUTES = [Route("/api/v1/openapi.json", serve, methods=["GET"])]
