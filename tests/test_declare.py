"""Incidents people declare, correct and close (SPEC §13.5), on the engine and the real daemon."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from monitor.core.result import Result, State
from monitor.incidents.engine import Engine
from monitor.people.actions import Refused
from monitor.probing.state import CheckState, advance
from tests.conftest import REPO, Clock, HttpTarget, engine_of, free_port

CONFIG = """\
site: {name: H, timezone: Asia/Shanghai, language: en}
roles: {it: [it]}
departments:
  - {id: er, name: Emergency, notify: [er-hook]}
systems:
  - {id: his, name: HIS, departments: [er], plan: p}
checks:
  - {id: his-web, system: his, type: http, url: "http://127.0.0.1:1/"}
notifiers:
  - {id: it, type: console}
  - {id: er-hook, type: console}
plans:
  - id: p
    steps:
      - {after: 0m, notify: [role:it], message: outage_it}
      - {after: 5m, notify: [departments], message: department_outage}
    on_recovery: [role:it, departments]
"""
T0 = 1_800_000_000.0




@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Engine, Clock, dict[str, CheckState]]]:
    async with engine_of(CONFIG, tmp_path, T0) as world:
        yield world


async def kinds(engine: Engine) -> list[tuple[str, str]]:
    return [(m.kind, m.notifier) for m in reversed(await engine.store.list_messages())]


async def test_a_declared_incident_runs_the_plan_and_only_a_person_closes_it(world) -> None:
    engine, clock, states = world
    inc = f"inc-1-{engine.store.tag}"
    incident = await engine.declare("his", "critical", "Help desk: nobody can log in", "王工",
                                    started_at=T0 - 60)
    assert incident.id == inc and incident.source == "manual"
    assert incident.started_at == T0 - 60
    await engine.tick()
    assert await kinds(engine) == [("outage_it", "it")]
    with pytest.raises(Refused) as twice:
        await engine.declare("his", "warning", "again", "李")
    assert twice.value.status == 409 and twice.value.incident is not None
    assert twice.value.incident.id == inc
    # A check failing later joins it; its recovery does not close it.
    for _ in range(3):
        advance(states["his-web"], Result(State.CRIT, "down"), clock.now, 3, 2)
    engine.system_changed("his")
    await engine.tick()
    assert engine.open["his"].id == inc
    assert [c["id"] for c in engine.open["his"].failing_checks] == ["his-web"]
    for _ in range(2):
        advance(states["his-web"], Result(State.OK, "up"), clock.now, 3, 2)
    engine.system_changed("his")
    clock.now = T0 + 300
    await engine.tick()
    assert engine.open["his"].failing_checks == [], "the check left, the incident stays"
    assert ("department_outage", "er-hook") in await kinds(engine)
    closed = await engine.resolve_by_hand(inc, "王工", "login server restarted")
    assert closed.status == "resolved" and closed.resolved_by == "王工"
    assert "his" not in engine.open
    assert ("recovery", "er-hook") in await kinds(engine), "the recovery notice goes out"
    with pytest.raises(Refused) as again:
        await engine.resolve_by_hand(inc, "王工", None)
    assert again.value.status == 409
    timeline = [(e.kind, e.data.get("by")) for e in await engine.store.timeline(inc)]
    assert ("opened", "王工") in timeline and ("resolved", "王工") in timeline


async def test_an_automatic_incident_resolves_by_hand_only_when_nothing_fails(world) -> None:
    engine, clock, states = world
    for _ in range(3):
        advance(states["his-web"], Result(State.CRIT, "down"), clock.now, 3, 2)
    engine.system_changed("his")
    await engine.tick()
    incident_id = engine.open["his"].id
    with pytest.raises(Refused) as refused:
        await engine.resolve_by_hand(incident_id, "王工", None)
    assert refused.value.status == 422 and "his-web" in str(refused.value)
    assert engine.open["his"].source == "checks"


async def test_patch_records_cause_root_cause_and_actions_with_timeline(world) -> None:
    engine, clock, _ = world
    incident = await engine.declare("his", "critical", "HIS down", "王工")
    patched = await engine.patch(incident.id, "李主任", {
        "confirmed_cause": "hardware", "root_cause": "RAID controller failed",
        "actions": ["replace the controller", "monthly RAID check"]})
    assert patched.confirmed_cause == "hardware"
    assert patched.actions == ["replace the controller", "monthly RAID check"]
    with pytest.raises(Refused) as bad:
        await engine.patch(incident.id, "李主任", {"confirmed_cause": "gremlins"})
    assert bad.value.status == 422
    await engine.resolve_by_hand(incident.id, "王工", None)
    later = await engine.patch(incident.id, "李主任", {"root_cause": "RAID controller firmware"})
    assert later.root_cause == "RAID controller firmware", "a resolved incident is corrected"
    stored = await engine.store.get_incident(incident.id)
    assert stored is not None and stored.root_cause == "RAID controller firmware"
    kinds_ = [(e.kind, e.data.get("by")) for e in await engine.store.timeline(incident.id)]
    assert ("cause_confirmed", "李主任") in kinds_ and ("actions", "李主任") in kinds_
    assert kinds_.count(("root_cause", "李主任")) == 2
    # The engine never changes the confirmed cause.
    clock.now += 60
    await engine.tick()
    assert (await engine.store.get_incident(incident.id)).confirmed_cause == "hardware"


TOKEN = "declare-token"


def daemon_config(target: HttpTarget, port: int) -> str:
    return f"""
site: {{name: H, timezone: Asia/Shanghai, language: en}}
server: {{listen: "127.0.0.1:{port}", api_tokens: [{TOKEN}]}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 500ms, retry_interval: 250ms, confirm: 2, recover: 2}}
roles: {{it: [it]}}
departments:
  - {{id: er, name: Emergency, notify: [it]}}
systems:
  - {{id: his, name: HIS, departments: [er], plan: p}}
checks:
  - {{id: his-web, system: his, type: http, url: "{target.url}", expect: {{status: [200]}}}}
notifiers:
  - {{id: it, type: console}}
plans:
  - id: p
    steps:
      - {{after: 0s, notify: [role:it], message: outage_it}}
"""


async def hismon(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HISMON_API_TOKEN": TOKEN}
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "monitor", *args], capture_output=True,
        text=True, timeout=60, env=env, cwd=REPO)


@pytest.mark.slow
async def test_declare_patch_resolve_through_the_api_and_cli(
        http_target: HttpTarget, daemon_factory) -> None:
    port = free_port()
    daemon = await daemon_factory(daemon_config(http_target, port), port)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False) as api:
        body = {"system": "his", "severity": "critical", "title": "help desk call", "by": "王工"}
        assert (await api.post("/api/v1/incidents", json=body)).status_code == 401
        bad = await api.post("/api/v1/incidents", headers=auth, json={**body, "system": "x"})
        assert bad.status_code == 422
        made = await api.post("/api/v1/incidents", headers=auth, json=body)
        assert made.status_code == 201, made.text
        incident = made.json()
        assert incident["source"] == "manual" and incident["title"] == "help desk call"
        again = await api.post("/api/v1/incidents", headers=auth, json=body)
        assert again.status_code == 409 and again.json()["incident"]["id"] == incident["id"]
        cli = await hismon("declare", "--system", "his", "--severity", "warning", "--title",
                           "t", "--by", "me", "--url", daemon.url)
        assert cli.returncode == 1 and incident["id"] in cli.stderr
        patched = await api.patch(f"/api/v1/incidents/{incident['id']}", headers=auth,
                                  json={"by": "李", "confirmed_cause": "network",
                                        "actions": ["add a second uplink"]})
        assert patched.status_code == 200, patched.text
        assert patched.json()["confirmed_cause"] == "network"
        assert (await api.patch(f"/api/v1/incidents/{incident['id']}", headers=auth,
                                json={"by": "李", "confirmed_cause": "bad"})).status_code == 422
        # SPEC 7's name for the same field: recorded as the confirmed cause, not ignored.
        named = await api.patch(f"/api/v1/incidents/{incident['id']}", headers=auth,
                                json={"by": "李", "suspected_cause": "database"})
        assert named.status_code == 200 and named.json()["confirmed_cause"] == "database"
        assert any(e["kind"] == "cause_confirmed" and e["data"]["confirmed_cause"] == "database"
                   for e in named.json()["timeline"])
        both = await api.patch(f"/api/v1/incidents/{incident['id']}", headers=auth,
                               json={"by": "李", "suspected_cause": "database",
                                     "confirmed_cause": "network"})
        assert both.status_code == 422
    done = await hismon("resolve", incident["id"], "--by", "王工", "--note", "fixed",
                        "--url", daemon.url)
    assert done.returncode == 0, done.stderr
    assert f"{incident['id']} (HIS) resolved by 王工" in done.stdout
    twice = await hismon("resolve", incident["id"], "--by", "王工", "--url", daemon.url)
    assert twice.returncode == 1 and "409" in twice.stderr
    fresh = await hismon("declare", "--system", "his", "--severity", "warning", "--title",
                         "slow logins", "--by", "me", "--url", daemon.url)
    assert fresh.returncode == 0, fresh.stderr
    assert "declared: HIS warning" in fresh.stdout
