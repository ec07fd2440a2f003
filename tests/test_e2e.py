"""The real daemon (`hismon run` subprocess) against a real HTTP target and webhook receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
import sys

import httpx
import pytest

from tests.conftest import HttpTarget, Receiver, free_port

pytestmark = pytest.mark.slow


def config(target: HttpTarget, receiver: Receiver, port: int, dept_after: str = "2s",
           leader_after: str = "6s") -> str:
    return f"""
site: {{name: E2E Hospital, timezone: Asia/Shanghai, language: en, campuses: [main]}}
server: {{listen: "127.0.0.1:{port}", api_tokens: [e2e-token]}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 500ms, retry_interval: 250ms, confirm: 2, recover: 2}}
roles: {{it_oncall: [it], leadership: [boss]}}
departments:
  - {{id: er, name: Emergency, campus: main, notify: [er-hook]}}
  - {{id: lab, name: Laboratory, campus: main, notify: [lab-hook]}}
systems:
  - {{id: his, name: Outpatient doctor station, departments: [er], plan: p,
     downtime_procedure: "Switch to paper prescriptions (form B-3)."}}
  - {{id: lis, name: LIS, departments: [lab], plan: p}}
checks:
  - {{id: his-web, system: his, type: http, url: "{target.url}",
     expect: {{status: [200], body_contains: UP}}}}
  - {{id: lis-port, system: lis, type: tcp, host: 127.0.0.1, port: {receiver.port}}}
notifiers:
  - {{id: it, type: webhook, url: "{receiver.url('it')}", secret: s3cret-signing-key}}
  - {{id: boss, type: webhook, url: "{receiver.url('boss')}"}}
  - {{id: er-hook, type: webhook, url: "{receiver.url('er')}"}}
  - {{id: lab-hook, type: webhook, url: "{receiver.url('lab')}"}}
plans:
  - id: p
    steps:
      - {{after: 0s, notify: [role:it_oncall], message: outage_it}}
      - {{after: {dept_after}, notify: [departments], message: department_outage}}
      - {{after: {leader_after}, notify: [role:leadership], message: leadership_report}}
    on_recovery: [role:it_oncall, departments]
"""


def assert_spec_payload(message: dict, kind: str) -> None:
    assert message["version"] == 1 and message["kind"] == kind
    assert message["title"] and message["text"]
    assert message["idempotency_key"].endswith(f":{message['recipient']}:0")
    incident = message["incident"]
    for key in ("id", "system", "system_name", "severity", "status", "started_at",
                "acknowledged_by", "resolved_at", "suspected_cause", "caused_by",
                "affected_departments", "failing_checks"):
        assert key in incident, key
    assert incident["system"] == "his" and incident["system_name"] == "Outpatient doctor station"
    assert incident["started_at"].endswith("+08:00")


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_an_outage_flows_from_probe_to_department_notice_and_recovery(
    http_target: HttpTarget, receiver: Receiver, daemon_factory, loop: str
) -> None:
    """The whole path on both event loops the daemon runs on (monitor/runtime/loop.py)."""
    port = free_port()
    daemon = await daemon_factory(config(http_target, receiver, port), port,
                                  env={"HISMON_LOOP": loop})
    for _ in range(50):  # /readyz answers a moment before the line is written
        started = [json.loads(line) for line in daemon.log().splitlines()
                   if '"daemon_started"' in line]
        if started:
            break
        await asyncio.sleep(0.1)
    assert started and started[0]["loop"] == loop
    await asyncio.sleep(1.5)
    assert receiver.messages == []

    http_target.status = 503
    await receiver.wait_for(lambda: "outage_it" in receiver.kinds("it"), timeout=15)
    outage = next(m for m in receiver.messages if m["kind"] == "outage_it")
    assert_spec_payload(outage, "outage_it")
    # SPEC §12: first IT notification within retry_interval × (confirm − 1) + timeout + 1 s
    # of the first failed probe (the incident's start).
    import datetime as dt

    # started_at is given to the second (truncated), hence the extra second.
    first_failure = dt.datetime.fromisoformat(outage["incident"]["started_at"]).timestamp()
    assert outage["_received_at"] - first_failure <= 0.25 * (2 - 1) + 0.5 + 1.0 + 1.0
    assert outage["incident"]["severity"] == "critical"
    assert outage["incident"]["failing_checks"][0]["id"] == "his-web"
    assert "HTTP 503" in outage["incident"]["failing_checks"][0]["message"]
    raw = json.dumps({k: v for k, v in outage.items() if k != "_path"}, ensure_ascii=False)
    headers = receiver.headers[receiver.messages.index(outage)]
    assert headers["X-Hismon-Signature"].startswith("sha256=")
    assert len(headers["X-Hismon-Signature"]) == 7 + 64
    del raw  # the signature is verified byte-exactly in the webhook notifier's own tests

    await receiver.wait_for(lambda: "department_outage" in receiver.kinds("er"), timeout=15)
    notice = next(m for m in receiver.messages if m["kind"] == "department_outage")
    assert_spec_payload(notice, "department_outage")
    assert "paper prescriptions" in notice["text"]
    assert receiver.kinds("lab") == [], "unaffected departments hear nothing"

    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False) as api:
        incidents = (await api.get("/api/v1/incidents", params={"status": "open"})).json()
        assert [i["system"] for i in incidents["incidents"]] == ["his"]
        incident_id = incidents["incidents"][0]["id"]
        denied = await api.post(f"/api/v1/incidents/{incident_id}/ack", json={"by": "x"})
        assert denied.status_code == 401
        assert (await api.get(f"/api/v1/incidents/{incident_id}")).json()[
            "acknowledged_by"] is None
        acked = await api.post(f"/api/v1/incidents/{incident_id}/ack",
                               json={"by": "Dr. Wang", "note": "restarting app server"},
                               headers={"Authorization": "Bearer e2e-token"})
        assert acked.status_code == 200 and acked.json()["acknowledged_by"] == "Dr. Wang"
        await receiver.wait_for(lambda: "acknowledged" in receiver.kinds("it"), timeout=10)

    http_target.status = 200
    await receiver.wait_for(lambda: "recovery" in receiver.kinds("er"), timeout=15)
    recovery = next(m for m in receiver.messages if m["kind"] == "recovery")
    assert_spec_payload(recovery, "recovery")
    assert recovery["incident"]["status"] == "resolved"
    assert recovery["incident"]["resolved_at"] is not None
    assert receiver.kinds("er") == ["department_outage", "recovery"]
    assert daemon.terminate(signal.SIGTERM) == 0


async def test_a_killed_daemon_resumes_without_repeating_or_skipping_steps(
    http_target: HttpTarget, receiver: Receiver, daemon_factory
) -> None:
    port = free_port()
    text = config(http_target, receiver, port, dept_after="4s", leader_after="9s")
    daemon = await daemon_factory(text, port)
    http_target.status = 500
    await receiver.wait_for(lambda: "outage_it" in receiver.kinds("it"), timeout=15)
    # Delivery is at least once: a kill between the channel's answer and the outbox
    # recording it would resend (with the same idempotency key). Let the record land.
    await asyncio.sleep(0.5)
    daemon.kill()  # SIGKILL: no chance to clean up
    await asyncio.sleep(5)  # the department step falls due while the daemon is down
    restarted = await daemon_factory(text, port)
    await receiver.wait_for(lambda: "leadership_report" in receiver.kinds("boss"), timeout=20)
    keys = [m["idempotency_key"] for m in receiver.messages]
    assert len(keys) == len(set(keys)), f"a message was sent twice: {keys}"
    assert receiver.kinds("it") == ["outage_it"]
    assert receiver.kinds("er") == ["department_outage"]
    ids = {m["incident"]["id"] for m in receiver.messages}
    assert len(ids) == 1, "the restarted daemon carried on the same incident"
    assert restarted.terminate() == 0


async def test_metrics_and_checks_endpoints_report_live_state(
    http_target: HttpTarget, receiver: Receiver, daemon_factory
) -> None:
    port = free_port()
    daemon = await daemon_factory(config(http_target, receiver, port), port)
    await asyncio.sleep(2.5)
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False) as api:
        checks = (await api.get("/api/v1/checks")).json()["checks"]
        web = next(c for c in checks if c["id"] == "his-web")
        assert web["state"] == "OK" and web["hard"] and web["last_run"]
        assert set(web) >= {"id", "system", "type", "state", "hard", "message",
                            "duration_seconds", "last_run", "flapping"}
        metrics = (await api.get("/metrics")).text
        assert 'hismon_check_up{check="his-web",system="his",type="http"} 1.0' in metrics
        assert 'hismon_check_state{check="his-web",system="his",type="http"} 0.0' in metrics
        assert 'hismon_probe_duration_seconds_count{type="http"}' in metrics
        assert "hismon_scheduler_lag_seconds_bucket" in metrics
        assert 'hismon_build_info{version="' in metrics
        assert "hismon_config_last_reload_successful 1.0" in metrics
        assert 'hismon_system_up{system="his"} 1.0' in metrics
        assert "hismon_outbox_pending 0.0" in metrics
        assert "hismon_check_missed_runs_total" in metrics
        assert (await api.get("/healthz")).status_code == 200
        ready = (await api.get("/readyz")).json()
        assert ready["ready"] is True and ready["leader"] is True
        assert "hismon_leader 1.0" in metrics


def test_signature_helper_matches_the_header_format() -> None:
    from notifiers.webhook import signature

    body = b'{"a":1}'
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert signature("k", body) == f"sha256={expected}"


async def test_a_message_that_cannot_be_delivered_stays_visible(
    http_target: HttpTarget, receiver: Receiver, daemon_factory
) -> None:
    receiver.fail_with, receiver.fail_paths = 400, {"/it"}
    port = free_port()
    daemon = await daemon_factory(config(http_target, receiver, port), port)
    http_target.status = 503
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False) as api:
        deadline = asyncio.get_running_loop().time() + 20
        failed: list = []
        while not failed and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.3)
            failed = (await api.get("/api/v1/messages", params={"status": "failed"})).json()[
                "messages"]
        assert failed and failed[0]["kind"] == "outage_it" and failed[0]["notifier"] == "it"
        assert "HTTP 400" in failed[0]["last_error"]
        await asyncio.sleep(1.5)
        metrics = (await api.get("/metrics")).text
        assert "hismon_outbox_undelivered 1.0" in metrics
        assert 'hismon_notifications_total{kind="outage_it",notifier="it",result="failed"} 1.0' \
            in metrics
    status = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "status", "--url", daemon.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(status.communicate(), 30)
    assert status.returncode == 0
    assert "Messages NOT delivered" in out.decode() and "outage_it" in out.decode()
