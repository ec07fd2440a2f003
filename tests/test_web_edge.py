"""Hostile input at the HTTP edge and the CLI (issue 11 items 1, 2, 10; SPEC §10).

A real `hismon run` with an open incident is sent what an attacker (or a cut-off emoji in a
browser) sends: lone surrogates, invalid UTF-8, NUL, oversized fields and bodies, JSON nested
100,000 deep. Each is refused with 4xx, nothing is stored, and afterwards every page and API
answer still works and the engine still runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from monitor.config.model import Server
from monitor.web.exposure import insecure_listen, is_loopback
from tests.conftest import REPO, HttpTarget, free_port, one_check_hospital

TOKEN = "edge-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}


def config(target: HttpTarget, port: int) -> str:
    return one_check_hospital("Edge Hospital", target, port, server=f", api_tokens: [{TOKEN}]",
                              systems=("his", "lis"))


async def open_incident(api: httpx.AsyncClient) -> dict[str, Any]:
    for _ in range(200):
        found = (await api.get("/api/v1/incidents", params={"status": "open"})).json()
        if found["incidents"]:
            return dict(found["incidents"][0])
        await asyncio.sleep(0.1)
    raise AssertionError("no incident opened")


@pytest.fixture
async def outage(http_target: HttpTarget, daemon_factory: Any) -> Any:
    port = free_port()
    http_target.status = 503
    daemon = await daemon_factory(config(http_target, port), port)
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False, timeout=10) as api:
        incident = await open_incident(api)
        yield daemon, api, incident


async def assert_everything_still_answers(api: httpx.AsyncClient, incident_id: str) -> None:
    for path in ("/", f"/incidents/{incident_id}", "/api/v1/incidents",
                 f"/api/v1/incidents/{incident_id}", "/api/v1/silences", "/departments/er"):
        answer = await api.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
    ready = await api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"], ready.text


@pytest.mark.slow
async def test_text_that_is_not_unicode_is_refused_and_never_stored(outage: Any) -> None:
    """A lone surrogate once answered 500, saved the ack, and stopped the engine for good."""
    daemon, api, incident = outage
    ack = f"/api/v1/incidents/{incident['id']}/ack"
    update = f"/api/v1/incidents/{incident['id']}/updates"
    for path, raw in (
        (ack, b'{"by": "eve \\ud83d"}'),                  # JSON escape of a lone surrogate
        (ack, b'{"by": "eve", "note": "cut \\udc00 off"}'),
        (ack, b'{"by": "eve \xff\xfe"}'),                 # bytes that are not UTF-8
        (ack, b'{"by": "eve\\u0000"}'),                   # NUL: PostgreSQL cannot store it
        (update, b'{"text": "emoji \\ud83d cut"}'),
        (update, b'{"text": "ok", "by": "\\udfff"}'),
        ("/api/v1/silences", b'{"systems": ["lis"], "end": "2h", "reason": "x \\ud800"}'),
    ):
        answer = await api.post(path, content=raw, headers=AUTH)
        assert answer.status_code == 422, (raw, answer.status_code, answer.text)
        assert answer.json()["status"] == 422 and answer.json()["error"]

    form = f"/incidents/{incident['id']}/ack"
    for raw in (b"by=eve%ff&token=" + TOKEN.encode(), b"by=eve\xff&token=" + TOKEN.encode(),
                b"by=%ed%a0%bd&token=" + TOKEN.encode()):   # UTF-8 of a surrogate
        answer = await api.post(form, content=raw, headers={
            "content-type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 422, (raw, answer.text[:300])
        assert "text/html" in answer.headers["content-type"]

    current = (await api.get(f"/api/v1/incidents/{incident['id']}")).json()
    assert current["acknowledged_by"] is None
    assert [e for e in current["timeline"] if e["kind"] in ("acknowledged", "note")] == []
    assert (await api.get("/api/v1/silences")).json()["silences"] == []
    await assert_everything_still_answers(api, incident["id"])

    # A valid emoji is text like any other and is kept as sent.
    fine = await api.post(ack, json={"by": "Dr. Wang 😀"}, headers=AUTH)
    assert fine.status_code == 200 and fine.json()["acknowledged_by"] == "Dr. Wang 😀"
    await assert_everything_still_answers(api, incident["id"])
    assert "engine_tick_failed" not in daemon.log()


@pytest.mark.slow
async def test_fields_and_bodies_have_size_limits(outage: Any) -> None:
    """A 12 MB note was once accepted (incident page 12.6 MB); 100k-deep JSON answered 500."""
    daemon, api, incident = outage
    ack = f"/api/v1/incidents/{incident['id']}/ack"
    update = f"/api/v1/incidents/{incident['id']}/updates"
    too_long = [
        (ack, {"by": "x" * 201}),
        (ack, {"by": "x", "note": "n" * 4001}),
        (update, {"text": "t" * 4001}),
        (update, {"text": "t", "by": "b" * 201}),
        ("/api/v1/silences", {"systems": ["lis"], "end": "2h", "reason": "r" * 501}),
        ("/api/v1/silences", {"systems": ["lis"], "end": "2h", "reason": "r",
                              "created_by": "c" * 201}),
    ]
    for path, body in too_long:
        answer = await api.post(path, json=body, headers=AUTH)
        assert answer.status_code == 422, (path, answer.text)
        assert "at most" in answer.json()["error"], answer.text

    big = b'{"by": "x", "note": "' + b"n" * 300_000 + b'"}'
    for path in (ack, update, "/api/v1/silences", "/api/v1/heartbeat/his-web",
                 "/api/v1/incidents"):
        answer = await api.post(path, content=big, headers=AUTH)
        assert answer.status_code == 413, (path, answer.status_code)
        assert answer.json()["status"] == 413
    # Every endpoint, even one that never reads a body, refuses one over the edge's limit.
    try:
        huge = await api.post("/api/v1/checks", content=b"x" * (4 * 1024 * 1024 + 1),
                              headers=AUTH)
    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
        pass  # answered 413 and closed while the client was still sending
    else:
        assert huge.status_code == 413 and huge.json()["status"] == 413

    async def chunks() -> Any:  # no Content-Length: the limit counts what arrives
        for _ in range(300):
            yield b"n" * 1000

    try:
        chunked = await api.post(ack, content=chunks(), headers=AUTH)
    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
        pass  # the server answered 413 and closed while the client was still sending
    else:
        assert chunked.status_code == 413

    for depth in (200_000, 100_000, 20_000):  # over the body limit, and within it
        deep = await api.post(ack, content=b"[" * depth + b"]" * depth, headers=AUTH)
        assert 400 <= deep.status_code < 500, (depth, deep.status_code)
        deep = await api.post(ack, content=b'{"by": ' + b"[" * depth, headers=AUTH)
        assert 400 <= deep.status_code < 500, (depth, deep.status_code)

    current = (await api.get(f"/api/v1/incidents/{incident['id']}")).json()
    assert current["acknowledged_by"] is None
    await assert_everything_still_answers(api, incident["id"])
    assert "Traceback" not in daemon.log()


@pytest.mark.slow
async def test_pages_cannot_be_framed_and_load_nothing(outage: Any) -> None:
    """The ack form must not be clickjacked; a strict CSP is possible as pages have no JS."""
    _, api, incident = outage
    for path in ("/", f"/incidents/{incident['id']}", "/departments/er", "/api/v1/checks"):
        answer = await api.get(path)
        assert answer.headers["x-frame-options"] == "DENY", path
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, csp
        assert "script-src" not in csp, "no script may run on our pages"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"


def test_every_body_within_its_field_limits_fits_the_body_limit() -> None:
    """The worst case: every field at its limit, every character an escaped astral one."""
    from monitor.web import bodies, people
    from monitor.web.guard import MAX_JSON_BODY

    astral = "😀"  # 12 bytes as a JSON escape pair
    worst = {
        bodies.AckBody: {"by": astral * bodies.MAX_NAME, "note": astral * bodies.MAX_TEXT},
        bodies.UpdateBody: {"text": astral * bodies.MAX_TEXT, "by": astral * bodies.MAX_NAME},
        bodies.SilenceBody: {"systems": ["s" * bodies.MAX_NAME] * bodies.MAX_SYSTEMS,
                             "system": "s" * bodies.MAX_NAME, "start": astral * 500,
                             "end": astral * 500, "until": astral * 500,
                             "reason": astral * bodies.MAX_REASON,
                             "created_by": astral * bodies.MAX_NAME},
        people.DeclareBody: {"system": astral * 200, "severity": "critical",
                             "title": astral * bodies.MAX_TEXT, "by": astral * 200,
                             "started_at": astral * 500},
        people.PatchBody: {"by": astral * 200, "confirmed_cause": astral * 200,
                           "suspected_cause": astral * 200,
                           "root_cause": astral * bodies.MAX_TEXT,
                           "actions": [astral * bodies.MAX_ACTION] * bodies.MAX_ACTIONS},
    }
    for model, body in worst.items():
        fields = set(model.model_fields)
        assert set(body) == fields, (model, fields - set(body))
        size = len(json.dumps(body).encode())
        assert size < MAX_JSON_BODY, (model.__name__, size)


def hismon(*args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "HISMON_API_TOKEN"}
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True,
                          timeout=60, env=env, cwd=REPO)


@pytest.mark.slow
async def test_cli_arguments_that_are_not_utf8_are_refused_without_a_traceback(
        outage: Any) -> None:
    daemon, api, incident = outage
    for args in ((incident["id"], "--by", b"eve \xff"),
                 (incident["id"], "--by", "eve", "--note", b"\xc3("),
                 (b"inc-\xff", "--by", "eve")):
        result = await asyncio.to_thread(hismon, "ack", *args, "--url", daemon.url,
                                         "--token", TOKEN)
        assert result.returncode == 1, result.stderr
        assert b"not valid UTF-8" in result.stderr and b"Traceback" not in result.stderr
    result = await asyncio.to_thread(hismon, "update", incident["id"], "--text", b"\xff",
                                     "--url", daemon.url, "--token", TOKEN)
    assert result.returncode == 1 and b"--text is not valid UTF-8" in result.stderr
    assert (await api.get(f"/api/v1/incidents/{incident['id']}")).json()[
        "acknowledged_by"] is None


def test_loopback_addresses_are_told_from_open_ones() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.1.2.3", "his.example.org", "[::]"):
        assert not is_loopback(host), host
    assert insecure_listen(Server(listen="127.0.0.1:9464")) is None
    assert insecure_listen(Server(listen="0.0.0.0:9464", api_tokens=["t"])) is None
    line = insecure_listen(Server(listen="0.0.0.0:9464"))
    assert line is not None and "--insecure" in line and "\n" not in line


def test_run_refuses_an_open_listen_address_without_a_token(tmp_path: Any) -> None:
    """Nothing is bound (the check comes before the daemon starts): exit 2 and one line."""
    port = free_port()
    path = tmp_path / "open.yaml"
    path.write_text(f"""
site: {{name: Open Hospital, timezone: Asia/Shanghai}}
server: {{listen: "0.0.0.0:{port}"}}
state: {{url: "sqlite:///{tmp_path}/state.db"}}
systems: [{{id: his, name: HIS}}]
checks: [{{id: his-tcp, system: his, type: tcp, host: 127.0.0.1, port: {port}}}]
notifiers: [{{id: it, type: console}}]
""")
    result = hismon("run", "-c", str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "--insecure" in lines[0] and "api_tokens" in lines[0]

