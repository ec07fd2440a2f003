"""The whole emergency plan on the real daemon, with plan durations of seconds.

Early warning → critical → department notice → leadership report → ack (vendor step
suppressed) → progress note → progress update carrying it → recovery; then a drill and
the report figures.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest

from tests.conftest import HttpTarget, Receiver, free_port

pytestmark = pytest.mark.slow


def config(target: HttpTarget, rec: Receiver, port: int) -> str:
    return f"""
site: {{name: 示例医院, timezone: Asia/Shanghai, language: zh, campuses: [本部, 北院]}}
server: {{listen: "127.0.0.1:{port}", api_tokens: [plan-token]}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 900ms, retry_interval: 250ms, confirm: 2, recover: 2}}
roles: {{it_oncall: [it], leadership: [boss]}}
departments:
  - {{id: er, name: 急诊科, campus: 北院, notify: [er-hook]}}
  - {{id: opd, name: Outpatient, campus: 本部, notify: [opd-hook], language: en}}
systems:
  - id: his
    name: 门诊医生站
    departments: [er, opd]
    plan: standard
    vendor: {{name: 某某软件, notify: [vendor-hook], response_sla: 30m}}
    downtime_procedure: 启用纸质处方（B-3 表），收费处手工收据。
checks:
  - id: his-web
    system: his
    type: http
    url: "{target.url}"
    expect: {{status: [200], latency: {{warn: 300ms}}}}
notifiers:
  - {{id: it, type: webhook, url: "{rec.url('it')}", drill: true}}
  - {{id: boss, type: webhook, url: "{rec.url('boss')}"}}
  - {{id: er-hook, type: webhook, url: "{rec.url('er')}"}}
  - {{id: opd-hook, type: webhook, url: "{rec.url('opd')}"}}
  - {{id: vendor-hook, type: webhook, url: "{rec.url('vendor')}"}}
plans:
  - id: standard
    early_warning: [role:it_oncall]
    steps:
      - {{after: 0s, notify: [role:it_oncall], message: outage_it}}
      - {{after: 2s, notify: [departments], message: department_outage}}
      - {{after: 4s, notify: [role:leadership], message: leadership_report}}
      - {{after: 9s, notify: [vendor], message: vendor_escalation, unless: acknowledged}}
      - {{every: 12s, notify: [role:leadership, departments], message: progress_update}}
    on_recovery: [role:it_oncall, departments, role:leadership]
"""


def of(rec: Receiver, kind: str, path: str) -> dict:
    return next(m for m in rec.messages if m["kind"] == kind and m["_path"] == f"/{path}")


async def test_the_emergency_plan_end_to_end(
    http_target: HttpTarget, receiver: Receiver, daemon_factory
) -> None:
    port = free_port()
    daemon = await daemon_factory(config(http_target, receiver, port), port)
    headers = {"Authorization": "Bearer plan-token"}

    http_target.delay = 0.5  # slow, not down: the early warning
    await receiver.wait_for(lambda: "early_warning" in receiver.kinds("it"), timeout=15)
    warning = of(receiver, "early_warning", "it")
    assert warning["incident"]["severity"] == "warning"
    assert receiver.kinds("er") == [] and receiver.kinds("boss") == []

    http_target.delay, http_target.status = 0.0, 503
    await receiver.wait_for(lambda: "outage_it" in receiver.kinds("it"), timeout=15)
    outage = of(receiver, "outage_it", "it")
    assert outage["incident"]["id"] == warning["incident"]["id"], "same incident, escalated"
    assert outage["incident"]["severity"] == "critical"

    await receiver.wait_for(lambda: "department_outage" in receiver.kinds("opd"), timeout=10)
    er_notice = of(receiver, "department_outage", "er")
    opd_notice = of(receiver, "department_outage", "opd")
    assert "纸质处方" in er_notice["text"] and "门诊医生站" in er_notice["text"]
    assert "his-web" not in er_notice["text"], "no jargon for clinical staff"
    assert "DOWNTIME PROCEDURE" in opd_notice["text"], "the department's own language"

    await receiver.wait_for(lambda: "leadership_report" in receiver.kinds("boss"), timeout=10)
    report = of(receiver, "leadership_report", "boss")
    assert "北院" in report["text"] and "本部" in report["text"]
    assert "某某软件" in report["text"]

    incident_id = outage["incident"]["id"]
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False) as api:
        acked = await api.post(f"/api/v1/incidents/{incident_id}/ack", headers=headers,
                               json={"by": "王工", "note": "应用服务器重启中"})
        assert acked.status_code == 200
    await receiver.wait_for(lambda: "acknowledged" in receiver.kinds("it"), timeout=10)
    assert "王工" in of(receiver, "acknowledged", "it")["text"]

    update = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "monitor", "update", incident_id, "--text",
         "厂商工程师已到场，预计 20 分钟恢复", "--by", "李主任", "--url", daemon.url,
         "--token", "plan-token"], capture_output=True, text=True, timeout=30)
    assert update.returncode == 0, update.stderr
    await receiver.wait_for(lambda: "progress_update" in receiver.kinds("boss"), timeout=20)
    progress = of(receiver, "progress_update", "boss")
    assert "厂商工程师已到场" in progress["text"] and "李主任" in progress["text"]
    assert receiver.kinds("vendor") == [], "acknowledged: the vendor step is suppressed"

    http_target.status = 200
    await receiver.wait_for(lambda: "recovery" in receiver.kinds("er"), timeout=15)
    recovery = of(receiver, "recovery", "er")
    assert recovery["incident"]["status"] == "resolved"
    assert "补录" in recovery["text"]
    assert {m["_path"] for m in receiver.messages if m["kind"] == "recovery"} == {
        "/it", "/er", "/opd", "/boss"}
    keys = [m["idempotency_key"] for m in receiver.messages]
    assert len(keys) == len(set(keys))

    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False) as api:
        detail = (await api.get(f"/api/v1/incidents/{incident_id}")).json()
    kinds = [e["kind"] for e in detail["timeline"]]
    for expected in ("opened", "escalated", "step_sent", "acknowledged", "note", "resolved"):
        assert expected in kinds, (expected, kinds)
    assert any(e["kind"] == "step_skipped" for e in detail["timeline"]) or \
        "vendor_escalation" not in [m["kind"] for m in detail["messages"]]
    assert daemon.terminate() == 0

    receiver.messages.clear()
    drill = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "drill", "-c", str(daemon.config_path),
        "--system", "his", "--speed", "30", cwd=daemon.config_path.parent,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(drill.communicate(), 60)
    assert drill.returncode == 0, out.decode()
    assert {m["_path"] for m in receiver.messages} == {"/it"}, "drill: true notifiers only"
    assert all(m["drill"] for m in receiver.messages)

    figures = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "monitor", "report", "-c", str(daemon.config_path),
         "--format", "json"], capture_output=True, text=True, timeout=30,
        cwd=daemon.config_path.parent)
    assert figures.returncode == 0, figures.stderr
    his = json.loads(figures.stdout)["systems"][0]
    assert his["incidents"] == 1 and his["critical"] == 1 and his["drills"] == 1
    assert his["mtta_seconds"] > 0 and his["mttr_seconds"] > his["mtta_seconds"]
    assert 0 < his["downtime_seconds"] < 120
