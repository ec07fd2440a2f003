"""The OpenAPI document matches the API: every route described, and schemathesis agrees.

Schemathesis (a test dependency: `pip install schemathesis`) generates requests from
`/api/v1/openapi.json` and sends them to the real daemon (a `hismon run` subprocess) with
a valid token: no answer may be a 5xx, and every answer must match its documented status,
content type, headers and schema. Write endpoints are also tried without the token.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from monitor.web.app import ROUTE_MODULES, build_app
from monitor.web.bodies import body_schema
from monitor.web.guard import WRITE_BODIES
from monitor.web.openapi import OPENAPI
from tests.conftest import HttpTarget, free_port

TOKEN = "openapi-token"
NEGATIVE_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428",
                     "429", "5XX"]
"""schemathesis' statuses that count as refusing invalid data, plus 413."""
PAGE_PATHS = {"/", "/departments/{id}", "/incidents/{id}", "/incidents/{id}/ack", "/systems/{id}",
              "/a/{token}", "/d/{token}", "/v/{token}",  # the signed-link pages (13.2-13.4)
              "/incidents/{id}/review"}


def config(target: HttpTarget, port: int) -> str:
    return f"""
site: {{name: OpenAPI Hospital, timezone: Asia/Shanghai, language: en, campuses: [main]}}
server: {{listen: "127.0.0.1:{port}", api_tokens: [{TOKEN}]}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 500ms, retry_interval: 250ms, confirm: 2, recover: 2}}
roles: {{it_oncall: [it]}}
departments:
  - {{id: er, name: Emergency, campus: main, notify: [it]}}
systems:
  - {{id: his, name: Outpatient doctor station, departments: [er], plan: p}}
  - {{id: lis, name: LIS, departments: [er], plan: p}}
checks:
  - {{id: his-web, system: his, type: http, url: "{target.url}"}}
  - {{id: lis-port, system: lis, type: tcp, host: 127.0.0.1, port: {target.port}}}
  - {{id: nightly-upload, system: lis, type: heartbeat, expect_every: 1d}}
  - {{id: pacs-export, system: lis, type: heartbeat, expect_every: 1d, token: job-token}}
notifiers:
  - {{id: it, type: console}}
plans:
  - id: p
    steps:
      - {{after: 0s, notify: [role:it_oncall], message: outage_it}}
maintenance:
  - {{systems: [lis], start: "2030-01-01T22:00:00+08:00", end: "2030-01-02T02:00:00+08:00",
     reason: database migration}}
"""


def api_routes() -> set[tuple[str, str]]:
    """(path, method) of every route `monitor/web/api.py` serves, pages left out."""
    app = build_app(None)  # type: ignore[arg-type]  # routes are built without the daemon
    found = set()
    for route in app.routes:
        assert isinstance(route, Route)
        if route.path in PAGE_PATHS:
            continue
        for method in route.methods or {"GET"}:
            if method != "HEAD":
                found.add((route.path, method.lower()))
    return found


def test_every_api_route_is_described_and_nothing_else() -> None:
    """A route added to the API without documentation (or the reverse) fails here."""
    documented = {(path, method) for path, ops in OPENAPI["paths"].items() for method in ops}
    assert documented == api_routes()


def test_write_operations_declare_the_bearer_token_and_a_401() -> None:
    """Clients learn from the document which calls need `Authorization: Bearer`."""
    for path, ops in OPENAPI["paths"].items():
        for method, op in ops.items():
            if method in ("post", "delete", "patch"):
                assert {"bearer": []} in op["security"], (method, path)
                assert "401" in op["responses"], (method, path)
            else:
                assert "security" not in op, (method, path)


def test_every_reference_resolves() -> None:
    """A dangling `$ref` would make code generators and schemathesis give up."""
    schemas = OPENAPI["components"]["schemas"]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(OPENAPI)


LINK_PAGES = {"/a/{token}", "/d/{token}", "/v/{token}"}
"""SPEC 13.2: the signed link is the credential and any instance takes the POST (a standby
queues it for the leader), so these pages do not pass the operator gate."""


def write_routes() -> list[tuple[str, str, object]]:
    """(method, path, endpoint) of every route that can change something, before merging."""
    return [(method, route.path, route.endpoint)
            for module in ROUTE_MODULES for route in module.ROUTES
            for method in sorted((route.methods or set()) - {"GET", "HEAD"})]


def test_every_write_passes_the_one_gate() -> None:
    """Issue 9 item 2: token, standby and body checks are one decorator for the API and the
    page forms alike; a write endpoint written without it would skip one of them."""
    ungated = [f"{method} {path}" for method, path, endpoint in write_routes()
               if endpoint not in WRITE_BODIES and path not in LINK_PAGES]
    assert not ungated, ungated
    assert ("POST", "/incidents/{id}/ack") in {(m, p) for m, p, e in write_routes()
                                               if e in WRITE_BODIES}


def test_every_request_body_is_generated_from_the_model_that_validates_it() -> None:
    """Issue 9 item 3: a body rule is written once, in its pydantic model. The document's
    body of each write is exactly the schema generated from the model its endpoint validates
    with (a description may be added); an endpoint that takes no body documents none."""
    schemas = OPENAPI["components"]["schemas"]

    def resolved(schema: dict[str, object]) -> dict[str, object]:
        while isinstance(ref := schema.get("$ref"), str):
            schema = schemas[ref.rsplit("/", 1)[1]]
        return {k: v for k, v in schema.items() if k != "description"}

    compared = []
    for method, path, endpoint in write_routes():
        operation = OPENAPI["paths"].get(path, {}).get(method.lower())
        if operation is None:  # a page form or a link page: not part of the API document
            continue
        model = WRITE_BODIES[endpoint]  # type: ignore[index]
        if model is None:
            assert "requestBody" not in operation, (method, path)
            continue
        documented = operation["requestBody"]["content"]["application/json"]["schema"]
        assert resolved(documented) == resolved(body_schema(model)), (method, path)
        compared.append(path)
    assert len(compared) >= 9, compared
    assert "/api/v1/checks/{id}/result" in compared and "/api/v1/alertmanager" in compared


def test_the_generated_body_schemas_are_openapi_3_0() -> None:
    """3.0 knows no `$defs` and no `const`: nested models are inlined, a constant is an enum."""
    def walk(node: object) -> None:
        if isinstance(node, dict):
            assert "$defs" not in node and "const" not in node, node
            ref = node.get("$ref")
            assert ref is None or ref.startswith("#/components/schemas/"), ref
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(OPENAPI)
    alertmanager = OPENAPI["paths"]["/api/v1/alertmanager"]["post"]["requestBody"]
    body = alertmanager["content"]["application/json"]["schema"]
    assert body["properties"]["version"]["enum"] == ["4"]
    assert body["properties"]["alerts"]["items"]["required"] == ["status"]


@pytest.mark.slow
async def test_the_document_is_served_and_error_answers_are_json(
    http_target: HttpTarget, daemon_factory
) -> None:
    """Unknown paths, wrong methods, missing tokens and bad bodies all answer JSON errors."""
    port = free_port()
    daemon = await daemon_factory(config(http_target, port), port)
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False, timeout=5) as api:
        served = await api.get("/api/v1/openapi.json")
        assert served.status_code == 200 and served.json() == OPENAPI

        for path, ops in OPENAPI["paths"].items():
            for method in ops:
                if method not in ("post", "delete"):
                    continue
                url = path.replace("{id}", "inc-1").replace("{check_id}", "his-web")
                answer = await api.request(method.upper(), url, json={"by": "x"})
                # Per-check tokens: an unknown check is a 404 before any token is asked for.
                expected = {401, 404} if path.startswith(("/api/v1/heartbeat", "/api/v1/checks/")) \
                    else {401}
                assert answer.status_code in expected, (method, path, answer.text)
                assert answer.headers["content-type"] == "application/json"
                assert answer.json()["status"] == answer.status_code

        missing = await api.get("/api/v1/no-such-thing")
        assert missing.status_code == 404 and "no API endpoint" in missing.json()["error"]
        wrong = await api.put("/api/v1/silences")
        assert wrong.status_code == 405 and wrong.json()["status"] == 405
        assert set(wrong.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
        bad = await api.get("/api/v1/incidents", params={"status": "maybe"})
        assert bad.status_code == 422 and "open or resolved" in bad.json()["error"]

        beat = await api.post("/api/v1/heartbeat/nightly-upload")
        assert beat.status_code == 200 and beat.json()["check"] == "nightly-upload"
        assert beat.json()["received_at"].endswith("+08:00")
        assert (await api.post("/api/v1/heartbeat/pacs-export")).status_code == 401
        assert (await api.post("/api/v1/heartbeat/pacs-export",
                               headers={"Authorization": "Bearer job-token"})).status_code == 200
        not_heartbeat = await api.post("/api/v1/heartbeat/his-web")
        assert not_heartbeat.status_code == 404 and not_heartbeat.json()["status"] == 404


@pytest.mark.slow
async def test_silence_times_that_cannot_be_shown_are_refused(
    http_target: HttpTarget, daemon_factory
) -> None:
    """Found by schemathesis: such a silence was stored, then every page and API answer 500."""
    port = free_port()
    daemon = await daemon_factory(config(http_target, port), port)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False, timeout=5) as api:
        for body in (
            {"systems": ["lis"], "end": "99999999999d", "reason": "x"},
            {"systems": ["lis"], "end": "9" * 400 + "d", "reason": "x"},
            {"systems": ["lis"], "start": "0001-01-01T00:00:00+14:00", "end": "2h",
             "reason": "x"},
            {"systems": ["lis"], "end": "9999-12-31T23:59:59-12:00", "reason": "x"},
        ):
            answer = await api.post("/api/v1/silences", json=body, headers=auth)
            assert answer.status_code == 422, answer.text
            assert "out of range" in answer.json()["error"]
        assert (await api.get("/api/v1/silences")).status_code == 200
        assert (await api.get("/")).status_code == 200
        for body in ({"by": "x", "note": {"a": 1}}, {"by": 5}):
            answer = await api.post("/api/v1/incidents/inc-1/ack", json=body, headers=auth)
            assert answer.status_code == 422, answer.text


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("schemathesis") is None,
                    reason="schemathesis is not installed (pip install schemathesis)")
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    http_target: HttpTarget, daemon_factory, tmp_path: Path
) -> None:
    """Generated requests against a daemon with an open incident and a maintenance window."""
    port = free_port()
    http_target.status = 503  # an open incident gives the incident endpoints real data
    daemon = await daemon_factory(config(http_target, port), port)
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False, timeout=5) as api:
        for _ in range(100):
            if (await api.get("/api/v1/incidents?status=open")).json()["incidents"]:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("no incident opened")

    checks = ",".join([
        "not_a_server_error", "status_code_conformance", "content_type_conformance",
        "response_headers_conformance", "response_schema_conformance", "ignored_auth",
        "negative_data_rejection", "allow_header_conformance", "unsupported_method",
    ])
    command = [
        str(Path(sys.executable).parent / "schemathesis"), "run",
        f"{daemon.url}/api/v1/openapi.json", "--url", daemon.url,
        "--checks", checks, "-H", f"Authorization: Bearer {TOKEN}",
        # 25 per operation in CI (its 20-minute budget); more: HISMON_SCHEMATHESIS_EXAMPLES.
        "--max-examples", os.environ.get("HISMON_SCHEMATHESIS_EXAMPLES", "25"),
        "--seed", "20261122", "--workers", "1",
        "--request-timeout", "5", "--suppress-health-check", "all",
        "--output-truncate", "false",
    ]
    # A body over the size limit is refused with 413 (SPEC §10): a rejection like any 4xx.
    (tmp_path / "schemathesis.toml").write_text(
        "[checks.negative_data_rejection]\nexpected-statuses = "
        f"{[*NEGATIVE_STATUSES]!r}\n".replace("'", '"'))
    result = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "passed" in output
    assert daemon.proc is not None and daemon.proc.poll() is None, "the daemon survived"
