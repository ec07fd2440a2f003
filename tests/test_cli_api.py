"""`hismon status`, `hismon ack`, `hismon silence` against a running daemon, as IT types them.

The daemon is a real `hismon run` subprocess probing a local HTTP target; the commands are
subprocesses too, so exit codes (SPEC §1) and what lands on stdout/stderr are the real ones.
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

from tests.conftest import REPO, HttpTarget, free_port

pytestmark = pytest.mark.slow
TOKEN = "cli-token"


def config(target: HttpTarget, port: int) -> str:
    return f"""
site: {{name: CLI Hospital, timezone: Asia/Shanghai, language: en, campuses: [main]}}
server: {{listen: "127.0.0.1:{port}", api_tokens: [{TOKEN}]}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 500ms, retry_interval: 250ms, confirm: 2, recover: 2}}
roles: {{it_oncall: [it]}}
departments:
  - {{id: er, name: Emergency, campus: main, notify: [it]}}
systems:
  - {{id: his, name: Outpatient doctor station, departments: [er], plan: p}}
  - {{id: pacs, name: PACS, departments: [er], plan: p}}
checks:
  - {{id: his-web, system: his, type: http, url: "{target.url}",
     expect: {{status: [200]}}}}
  - {{id: pacs-port, system: pacs, type: tcp, host: 127.0.0.1, port: {target.port}}}
notifiers:
  - {{id: it, type: console}}
plans:
  - id: p
    steps:
      - {{after: 0s, notify: [role:it_oncall], message: outage_it}}
"""


async def hismon(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI off the event loop: the HTTP target the daemon probes lives on it."""
    env = {k: v for k, v in os.environ.items() if k not in ("HISMON_API_TOKEN", "COLUMNS")}
    if token is not None:
        env["HISMON_API_TOKEN"] = token
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "monitor", *args], capture_output=True,
        text=True, timeout=60, env=env, cwd=REPO)


async def open_incident(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=5) as api:
        for _ in range(150):  # 15 s
            found = (await api.get("/api/v1/incidents", params={"status": "open"})).json()
            if found["incidents"]:
                return dict(found["incidents"][0])
            await asyncio.sleep(0.1)
    raise AssertionError("no incident opened")


async def get(url: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=5) as api:
        answer = await api.get(path)
        assert answer.status_code == 200, answer.text
        return answer.json()


async def test_status_shows_the_failing_check_and_the_open_incident(
    http_target: HttpTarget, daemon_factory
) -> None:
    """The table names the CRIT check with its message and the unacknowledged incident."""
    port = free_port()
    http_target.status = 503
    daemon = await daemon_factory(config(http_target, port), port)
    incident = await open_incident(daemon.url)

    result = await hismon("status", "--url", daemon.url)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "1 CRIT" in out and "1 open incident(s)" in out
    check_line = next(line for line in out.splitlines() if "his-web" in line)
    assert "CRIT" in check_line and "HTTP 503" in check_line
    incident_line = next(line for line in out.splitlines() if incident["id"] in line)
    assert "critical" in incident_line and "NOT ACKNOWLEDGED" in incident_line
    assert "Outpatient doctor station" in incident_line
    pacs_line = next(line for line in out.splitlines() if "pacs-port" in line)
    assert " OK " in pacs_line

    as_json = await hismon("status", "--json", "--url", daemon.url)
    assert as_json.returncode == 0
    data = json.loads(as_json.stdout)
    assert [i["id"] for i in data["incidents"]] == [incident["id"]]


async def test_ack_is_refused_without_the_right_token_and_accepted_with_it(
    http_target: HttpTarget, daemon_factory
) -> None:
    """A wrong token exits 1 and changes nothing; the right one exits 0 and records the name."""
    port = free_port()
    http_target.status = 503
    daemon = await daemon_factory(config(http_target, port), port)
    incident_id = (await open_incident(daemon.url))["id"]

    wrong = await hismon("ack", incident_id, "--by", "Mallory", "--url", daemon.url,
                         "--token", "not-the-token")
    assert wrong.returncode == 1
    assert "401" in wrong.stderr
    missing = await hismon("ack", incident_id, "--by", "Mallory", "--url", daemon.url)
    assert missing.returncode == 1 and "HISMON_API_TOKEN" in missing.stderr
    assert (await get(daemon.url, f"/api/v1/incidents/{incident_id}"))["acknowledged_by"] is None

    right = await hismon("ack", incident_id, "--by", "Dr. Wang", "--note", "restarting app",
                         "--url", daemon.url, token=TOKEN)
    assert right.returncode == 0, right.stderr
    assert f"{incident_id} (Outpatient doctor station) acknowledged by Dr. Wang" in right.stdout
    after = await get(daemon.url, f"/api/v1/incidents/{incident_id}")
    assert after["acknowledged_by"] == "Dr. Wang"
    assert any(e["kind"] == "acknowledged" and "restarting app" in e["text"]
               for e in after["timeline"])

    unknown = await hismon("ack", "inc-999", "--by", "Dr. Wang", "--url", daemon.url,
                           token=TOKEN)
    assert unknown.returncode == 1
    assert "404" in unknown.stderr and "inc-999" in unknown.stderr


async def test_silence_creates_a_maintenance_window_visible_in_the_api(
    http_target: HttpTarget, daemon_factory
) -> None:
    """Exit 0 and the window is listed; a bad token or an unknown system exits 1."""
    port = free_port()
    daemon = await daemon_factory(config(http_target, port), port)

    created = await hismon("silence", "--system", "pacs", "--until", "2h",
                           "--reason", "[planned] PACS storage swap", "--url", daemon.url,
                           "--token", TOKEN)
    assert created.returncode == 0, created.stderr
    assert "[planned] PACS storage swap" in created.stdout, "rich markup must not eat brackets"
    windows = (await get(daemon.url, "/api/v1/silences"))["silences"]
    ours = [w for w in windows if w["reason"] == "[planned] PACS storage swap"]
    assert len(ours) == 1 and ours[0]["systems"] == ["pacs"] and ours[0]["active"]
    assert ours[0]["id"] in created.stdout

    refused = await hismon("silence", "--system", "pacs", "--until", "1h", "--reason", "x",
                           "--url", daemon.url, "--token", "wrong")
    assert refused.returncode == 1 and "401" in refused.stderr
    unknown = await hismon("silence", "--system", "nope", "--until", "1h", "--reason", "x",
                           "--url", daemon.url, token=TOKEN)
    assert unknown.returncode == 1 and "unknown system nope" in unknown.stderr
    windows = (await get(daemon.url, "/api/v1/silences"))["silences"]
    assert [w["reason"] for w in windows] == ["[planned] PACS storage swap"]

    status = await hismon("status", "--url", daemon.url)
    assert status.returncode == 0
    window_line = next(line for line in status.stdout.splitlines() if ours[0]["id"] in line)
    assert "pacs" in window_line and "in progress" in window_line


async def test_commands_exit_1_when_no_daemon_answers() -> None:
    """An operator pointing at the wrong host learns it instead of seeing an empty table."""
    url = f"http://127.0.0.1:{free_port()}"
    result = await hismon("status", "--url", url)
    assert result.returncode == 1 and "cannot reach hismon" in result.stderr
    result = await hismon("ack", "inc-1", "--by", "x", "--url", url, token=TOKEN)
    assert result.returncode == 1
