"""Issue 12 end to end on the real daemon: the on-duty person by the rotation at the test's
clock (the second member: the rotation started a day ago) gets the outage by SMS (a local
gateway stand-in) and WeCom (a robot stand-in, with the @-mention); nobody acknowledges,
the reminders come, the daemon is SIGKILLed in the middle and carries on; the backup gets
it after the step's delay, opens the link from the SMS text, GETs (no ack) and POSTs
(acknowledged as the backup); the `unless: acknowledged` steps stop. A department confirms
on paper from its link and back-entry after recovery; the vendor responds from the link in
its escalation; the review shows all of it. Forged, expired and cross-incident tokens are
refused, and no token reaches the log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from monitor.links.tokens import Claim, sign
from tests.conftest import HttpTarget, Receiver, free_port

pytestmark = pytest.mark.slow
ZHANG, LI, WANG = "+8613800000001", "+8613800000002", "+8613800000003"


class WeComRobot(Receiver):
    """A WeCom group robot stand-in: records the JSON, answers errcode 0 like WeCom."""

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        body["_path"], body["_received_at"] = request.path, time.time()
        body["kind"] = "wecom"
        self.messages.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})


@pytest.fixture
async def wecom() -> AsyncIterator[WeComRobot]:
    robot = WeComRobot()
    await robot.start()
    yield robot
    await robot.stop()


def config(target: HttpTarget, sms: Receiver, robot: WeComRobot, dept: Receiver,
           port: int) -> str:
    # One day and two hours into the rotation: member 1 (li) is on duty, wang is the backup.
    start = dt.datetime.fromtimestamp(time.time() - 86400 - 7200,
                                      dt.timezone(dt.timedelta(hours=8)))
    return f"""
site: {{name: Test Hospital, timezone: Asia/Shanghai, language: en}}
server:
  listen: "127.0.0.1:{port}"
  api_tokens: [e2e-token]
  public_url: "http://127.0.0.1:{port}"
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 800ms, retry_interval: 250ms, confirm: 2, recover: 2}}
departments:
  - {{id: er, name: Emergency, notify: [er-hook]}}
people:
  - {{id: zhang, name: Zhang Wei, mobile: "{ZHANG}", notify: [sms-gateway, wecom-it]}}
  - {{id: li, name: Li Na, mobile: "{LI}", notify: [sms-gateway, wecom-it]}}
  - {{id: wang, name: Wang Fang, mobile: "{WANG}", notify: [sms-gateway, wecom-it]}}
  - {{id: chen, name: Chen Jie, mobile: "+8613800000004", notify: [sms-gateway]}}
schedules:
  - id: it-oncall
    start: "{start.isoformat()}"
    every: 1d
    members: [zhang, li, wang, chen]
systems:
  - id: his
    name: Outpatient doctor station
    departments: [er]
    plan: p
    vendor: {{name: Vendor A, notify: [vendor-hook], response_sla: 30m}}
checks:
  - {{id: his-web, system: his, type: http, url: "{target.url}", expect: {{status: [200]}}}}
notifiers:
  - id: sms-gateway
    type: sms
    url: "{sms.url('send')}"
    body: '{{"mobile": {{{{ recipient|tojson }}}}, "content": {{{{ text|tojson }}}}, "kind": {{{{ kind|tojson }}}}, "key": {{{{ idempotency_key|tojson }}}}}}'
    recipients: ["+8613999999999"]
    max_length: 500
  - {{id: wecom-it, type: wecom, webhook_url: "{robot.url('cgi-bin/webhook/send')}?key=robot-key"}}
  - {{id: er-hook, type: webhook, url: "{dept.url('er')}"}}
  - {{id: vendor-hook, type: webhook, url: "{dept.url('vendor')}"}}
plans:
  - id: p
    steps:
      - {{after: 0s, notify: [schedule:it-oncall], message: outage_it}}
      - {{after: 2s, notify: [departments], message: department_outage}}
      - {{after: 5s, every: 5s, times: 2, notify: [schedule:it-oncall], message: outage_it, unless: acknowledged}}
      - {{after: 16s, notify: ["schedule:it-oncall:next"], message: outage_it, unless: acknowledged}}
      - {{after: 22s, every: 2s, notify: [schedule:it-oncall], message: outage_it, unless: acknowledged}}
      - {{after: 3s, notify: [vendor], message: vendor_escalation}}
    on_recovery: [departments]
"""  # noqa: E501


def sms_to(sms: Receiver, mobile: str) -> list[dict[str, Any]]:
    return [m for m in sms.messages if m.get("mobile") == mobile and m["kind"] == "outage_it"]


async def test_on_call_rotation_reminders_backup_link_ack_and_departments(
        http_target: HttpTarget, wecom: WeComRobot, daemon_factory) -> None:
    sms, dept = await Receiver().start(), await Receiver().start()
    try:
        await _scenario(http_target, sms, wecom, dept, daemon_factory)
    finally:
        await sms.stop()
        await dept.stop()


async def _scenario(target: HttpTarget, sms: Receiver, robot: WeComRobot, dept: Receiver,
                    daemon_factory: Any) -> None:
    port = free_port()
    daemon = await daemon_factory(config(target, sms, robot, dept, port), port)
    target.status = 503
    await sms.wait_for(lambda: len(sms_to(sms, LI)) >= 1, timeout=15)
    first = sms_to(sms, LI)[0]
    assert first["key"].endswith(":step-0:person:li/sms-gateway:0"), "li is on duty today"
    assert "/a/" in first["content"], "the on-duty person's SMS carries the ack link"
    await robot.wait_for(lambda: robot.messages, timeout=10)
    assert robot.messages[0]["text"]["mentioned_mobile_list"] == [LI]
    assert sms_to(sms, WANG) == [], "the backup is not paged yet"
    assert sms_to(sms, ZHANG) == [], "yesterday's person is not paged"

    # The first reminder arrives, then the daemon dies mid-rotation and comes back.
    await sms.wait_for(lambda: len(sms_to(sms, LI)) >= 2, timeout=15)
    assert daemon.terminate(signal.SIGKILL) == -signal.SIGKILL
    await daemon.start()

    await sms.wait_for(lambda: len(sms_to(sms, WANG)) >= 1, timeout=25)
    backup = sms_to(sms, WANG)[0]
    assert backup["key"].endswith(":step-3:person:wang/sms-gateway:0")
    # SIGKILL may land between a receiver's 200 and the outbox marking the message sent: that
    # one comes again after the restart under the same idempotency key (at-least-once, SPEC 6;
    # receivers de-duplicate by key). What must hold: 0s + two reminders, no other key.
    on_duty_keys = {m["key"] for m in sms_to(sms, LI)}
    assert len(on_duty_keys) == 3, f"0s + two reminders: {sorted(on_duty_keys)}"
    assert len(sms_to(sms, LI)) <= 4, "at most the one in flight at the kill comes twice"
    assert sms_to(sms, ZHANG) == []
    incident_id = first["key"].split(":")[0]
    await robot.wait_for(lambda: [WANG] in [m["text"]["mentioned_mobile_list"]
                                            for m in robot.messages], timeout=10)

    found = re.search(r"http://127\.0\.0\.1:\d+/a/\S+", backup["content"])
    assert found, backup["content"]
    url = found.group(0)
    async with httpx.AsyncClient(trust_env=False) as client:
        api = f"{daemon.url}/api/v1/incidents/{incident_id}"
        started = dt.datetime.fromisoformat((await client.get(api)).json()["started_at"])
        # The backup step is `after: 16s` from the first failed probe (the receiver's clock
        # and the daemon's are this machine's; 0.5 s for the sub-second ISO truncation).
        assert backup["_received_at"] >= started.timestamp() + 16 - 0.5
        page = await client.get(url)
        assert page.status_code == 200 and "Acknowledge as Wang Fang" in page.text
        assert (await client.get(api)).json()["acknowledged_by"] is None, "GET changed nothing"
        acked = await client.post(url)
        assert acked.status_code == 200 and "Acknowledged by Wang Fang" in acked.text
        detail = (await client.get(api)).json()
        assert detail["acknowledged_by"] == "Wang Fang"
        ack = next(e for e in detail["timeline"] if e["kind"] == "acknowledged")
        assert ack["data"]["via"] == "link"

        # Tokens that must not work: forged, expired, another incident's.
        token = url.rsplit("/", 1)[1]
        # Alter a character in the middle: the last base64 character may carry only padding
        # bits, so changing it can leave the decoded signature as it was.
        mid = len(token) // 2
        forged = token[:mid] + ("A" if token[mid] != "A" else "B") + token[mid + 1:]
        assert (await client.post(f"{daemon.url}/a/{forged}")).status_code == 403
        key = _store_key(daemon)
        expired = sign(key, Claim("ack", incident_id, "wang", int(time.time()) - 1))
        assert (await client.get(f"{daemon.url}/a/{expired}")).status_code == 403
        other = sign(key, Claim("ack", "inc-999", "wang", int(time.time()) + 3600))
        assert (await client.post(f"{daemon.url}/a/{other}")).status_code == 403
        assert (await client.get(api)).json()["acknowledged_by"] == "Wang Fang"

        # `unless: acknowledged` steps stop: the every-2s step from 22s is skipped.
        sent_before = len([m for m in sms.messages if m["kind"] == "outage_it"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            timeline = (await client.get(api)).json()["timeline"]
            if any(e["kind"] == "step_skipped" and e["data"].get("step") == "step-4"
                   for e in timeline):
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError("step-4 was never decided")
        await asyncio.sleep(2.5)
        assert len([m for m in sms.messages if m["kind"] == "outage_it"]) == sent_before

        # The vendor responds from the link in its escalation.
        escalation = next(m for m in dept.messages if m["kind"] == "vendor_escalation")
        vendor_url = escalation["links"]["vendor"]
        assert vendor_url in escalation["text"] and "/v/" in vendor_url
        page = await client.get(vendor_url)
        assert page.status_code == 200 and "Engineer responding" in page.text
        assert (await client.get(api)).json()["vendor_responded_at"] is None, "GET: nothing"
        answered = await client.post(vendor_url, data={"by": "Engineer Zhou", "eta": "40m"})
        assert answered.status_code == 200
        detail = (await client.get(api)).json()
        assert detail["vendor_responded_by"] == "Engineer Zhou"
        assert detail["vendor_eta"] == "40m"

        # The department confirms on paper from its link.
        notice = next(m for m in dept.messages if m["kind"] == "department_outage")
        dept_url = notice["links"]["department"]
        assert dept_url in notice["text"]
        page = await client.get(dept_url)
        assert page.status_code == 200 and "We are on paper" in page.text
        done = await client.post(dept_url, data={"what": "on_paper", "by": "Nurse Wu"})
        assert done.status_code == 200
        confirmed = (await client.get(api)).json()["departments_confirmed"]["er"]
        assert confirmed["on_paper_by"] == "Nurse Wu"

        # Recovery, then back-entry from the recovery notice's link.
        target.status = 200
        await dept.wait_for(lambda: "recovery" in dept.kinds("er"), timeout=20)
        recovery = next(m for m in dept.messages if m["kind"] == "recovery")
        page = await client.get(recovery["links"]["department"])
        assert "Back-entry done" in page.text
        await client.post(recovery["links"]["department"],
                          data={"what": "backfill_done", "by": "Nurse Wu"})
        confirmed = (await client.get(api)).json()["departments_confirmed"]["er"]
        assert confirmed["backfill_done_at"] is not None
        assert (await client.post(url)).status_code == 403, "resolved: the ack link is spent"

    review = await _hismon("review", incident_id, "--url", daemon.url)
    assert review.returncode == 0, review.stderr
    # The Markdown names people and kinds as the reader says them; the JSON keeps the ids.
    for shown in ("Acknowledged: Wang Fang", "Emergency", "Nurse Wu", "| outage (IT) | Wang Fang |",
                  "| outage (IT) | Li Na |", "| vendor escalation |", "Engineer Zhou"):
        assert shown in review.stdout, shown
    data = json.loads((await _hismon("review", incident_id, "--format", "json", "--url",
                                     daemon.url)).stdout)
    er = data["departments"][0]
    assert er["on_paper_by"] == "Nurse Wu" and er["backfill_done_by"] == "Nurse Wu"
    assert data["departments_unanswered"] == [] and data["departments_backfill_pending"] == []
    assert data["vendor"]["responded_by"] == "Engineer Zhou" and data["vendor"]["sla"] == "kept"
    assert data["vendor"]["escalated_at"] is not None, "the delivery started the clock"
    assert data["acknowledgement"]["by"] == "Wang Fang"
    assert data["detection"]["first_it_message_delivered"] is not None
    assert data["window"]["end"] is not None
    recipients = {(m["kind"], m["recipient"]) for m in data["messages"]}
    assert {("outage_it", "person:li"), ("outage_it", "person:wang"),
            ("vendor_escalation", "vendor-hook"), ("recovery", "er-hook")} <= recipients
    skipped = [e for e in data["timeline"] if e["kind"] == "step_skipped"]
    assert skipped, "the review shows the steps the acknowledgement stopped"
    assert token not in daemon.log() and forged not in daemon.log(), "tokens are never logged"
    assert daemon.terminate() == 0


async def _hismon(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "monitor", *args],
                                   capture_output=True, text=True, timeout=60)


def _store_key(daemon: Any) -> bytes:
    with sqlite3.connect(daemon.config_path.parent / "state.db") as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'link_key'").fetchone()
    return bytes.fromhex(row[0])
