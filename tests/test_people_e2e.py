"""Issue 12 end to end on the real daemon: the on-duty person by the rotation at the test's
clock gets the outage by SMS (a local gateway stand-in) and WeCom (a robot stand-in, with
the @-mention); nobody acknowledges, the reminders come, the daemon is SIGKILLed in the
middle and carries on; the backup gets it after the step's delay, opens the link from the
SMS text, GETs (no ack) and POSTs (acknowledged as the backup); the `unless: acknowledged`
steps stop. A department confirms on paper from its link and back-entry after recovery.
Forged, expired and cross-incident tokens are refused, and no token reaches the log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
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
ZHANG, LI = "+8613800000001", "+8613800000002"


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
    start = dt.datetime.fromtimestamp(time.time() - 7200, dt.timezone(dt.timedelta(hours=8)))
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
  - {{id: wang, name: Wang Fang, mobile: "+8613800000003", notify: [sms-gateway]}}
  - {{id: chen, name: Chen Jie, mobile: "+8613800000004", notify: [sms-gateway]}}
schedules:
  - id: it-oncall
    start: "{start.isoformat()}"
    every: 1d
    members: [zhang, li, wang, chen]
systems:
  - {{id: his, name: Outpatient doctor station, departments: [er], plan: p}}
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
plans:
  - id: p
    steps:
      - {{after: 0s, notify: [schedule:it-oncall], message: outage_it}}
      - {{after: 2s, notify: [departments], message: department_outage}}
      - {{after: 5s, every: 5s, times: 2, notify: [schedule:it-oncall], message: outage_it, unless: acknowledged}}
      - {{after: 16s, notify: ["schedule:it-oncall:next"], message: outage_it, unless: acknowledged}}
      - {{after: 22s, every: 2s, notify: [schedule:it-oncall], message: outage_it, unless: acknowledged}}
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
    await sms.wait_for(lambda: len(sms_to(sms, ZHANG)) >= 1, timeout=15)
    first = sms_to(sms, ZHANG)[0]
    assert first["key"].endswith(":step-0:person:zhang/sms-gateway:0")
    assert "/a/" in first["content"], "the on-duty person's SMS carries the ack link"
    await robot.wait_for(lambda: robot.messages, timeout=10)
    assert robot.messages[0]["text"]["mentioned_mobile_list"] == [ZHANG]
    assert sms_to(sms, LI) == [], "the backup is not paged yet"

    # The first reminder arrives, then the daemon dies mid-rotation and comes back.
    await sms.wait_for(lambda: len(sms_to(sms, ZHANG)) >= 2, timeout=15)
    assert daemon.terminate(signal.SIGKILL) == -signal.SIGKILL
    await daemon.start()

    await sms.wait_for(lambda: len(sms_to(sms, LI)) >= 1, timeout=25)
    backup = sms_to(sms, LI)[0]
    assert backup["key"].endswith(":step-3:person:li/sms-gateway:0")
    # SIGKILL may land between a receiver's 200 and the outbox marking the message sent: that
    # one comes again after the restart under the same idempotency key (at-least-once, SPEC 6;
    # receivers de-duplicate by key). What must hold: 0s + two reminders, no other key.
    zhang_keys = {m["key"] for m in sms_to(sms, ZHANG)}
    assert len(zhang_keys) == 3, f"0s + two reminders: {sorted(zhang_keys)}"
    assert len(sms_to(sms, ZHANG)) <= 4, "at most the one in flight at the kill comes twice"
    incident_id = first["key"].split(":")[0]

    found = re.search(r"http://127\.0\.0\.1:\d+/a/\S+", backup["content"])
    assert found, backup["content"]
    url = found.group(0)
    async with httpx.AsyncClient(trust_env=False) as client:
        page = await client.get(url)
        assert page.status_code == 200 and "Acknowledge as Li Na" in page.text
        api = f"{daemon.url}/api/v1/incidents/{incident_id}"
        assert (await client.get(api)).json()["acknowledged_by"] is None, "GET changed nothing"
        acked = await client.post(url)
        assert acked.status_code == 200 and "Acknowledged by Li Na" in acked.text
        detail = (await client.get(api)).json()
        assert detail["acknowledged_by"] == "Li Na"
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
        expired = sign(key, Claim("ack", incident_id, "li", int(time.time()) - 1))
        assert (await client.get(f"{daemon.url}/a/{expired}")).status_code == 403
        other = sign(key, Claim("ack", "inc-999", "li", int(time.time()) + 3600))
        assert (await client.post(f"{daemon.url}/a/{other}")).status_code == 403

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
        await client.post(recovery["links"]["department"], data={"what": "backfill_done"})
        confirmed = (await client.get(api)).json()["departments_confirmed"]["er"]
        assert confirmed["backfill_done_at"] is not None
    review = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "monitor", "review", incident_id, "--url",
                         daemon.url], capture_output=True, text=True, timeout=60)
    assert review.returncode == 0, review.stderr
    for shown in ("Acknowledged: Li Na", "Emergency", "Nurse Wu", "person:li", "outage_it"):
        assert shown in review.stdout, shown
    assert token not in daemon.log() and forged not in daemon.log(), "tokens are never logged"
    assert daemon.terminate() == 0


def _store_key(daemon: Any) -> bytes:
    with sqlite3.connect(daemon.config_path.parent / "state.db") as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'link_key'").fetchone()
    return bytes.fromhex(row[0])
