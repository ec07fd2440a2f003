"""Grouping end to end (SPEC 6, issue 13 item 6): the real daemon, 30 systems failing within
2 s, real webhook receivers for IT and three departments and a local receiver posing as
Alertmanager v2 (`/api/v2/alerts`). Each receiver's messages are counted: one grouped
message per kind and recipient, ungrouped alerts for Alertmanager, and one grouped recovery.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiohttp import web

from monitor.delivery.grouping import group_key
from tests.conftest import HttpTarget, Receiver, free_port, serve_route

pytestmark = pytest.mark.slow

SYSTEMS = 30
DEPARTMENTS = {"er": range(0, 12), "lab": range(8, 20), "ward": range(18, 30)}
"""Which systems each department uses (overlapping: a system may serve two departments)."""
WINDOW = 8
"""Seconds; generous, so 30 incidents opening on a loaded 2-core machine still fall in one."""


def sid(number: int) -> str:
    return f"s{number:02d}"


def departments_of(number: int) -> list[str]:
    return [d for d, used in DEPARTMENTS.items() if number in used]


def config(target: HttpTarget, receiver: Receiver, am_url: str, port: int,
           count: int = SYSTEMS, window: int = WINDOW) -> str:
    systems = "\n".join(
        f'  - {{id: {sid(n)}, name: "System {n:02d}", departments: {departments_of(n)}, '
        f'plan: p, downtime_procedure: "Paper form {n:02d} for System {n:02d}."}}'
        for n in range(count))
    checks = "\n".join(
        f'  - {{id: c{n:02d}, system: {sid(n)}, type: http, url: "{target.url}?s={n}", '
        'expect: {status: [200]}}' for n in range(count))
    return f"""
site: {{name: Group Hospital, timezone: Asia/Shanghai, language: en, campuses: [main]}}
server: {{listen: "127.0.0.1:{port}", api_tokens: [t0ken], public_url: "http://127.0.0.1:{port}"}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 500ms, retry_interval: 250ms, confirm: 2, recover: 2}}
alerting: {{group_window: {window}s}}
roles: {{it_oncall: [it, am]}}
departments:
  - {{id: er, name: Emergency, campus: main, notify: [er-hook]}}
  - {{id: lab, name: Laboratory, campus: main, notify: [lab-hook]}}
  - {{id: ward, name: 病房, campus: main, notify: [ward-hook], language: zh}}
systems:
{systems}
checks:
{checks}
notifiers:
  - {{id: it, type: webhook, url: "{receiver.url('it')}"}}
  - {{id: am, type: alertmanager, url: "{am_url}"}}
  - {{id: er-hook, type: webhook, url: "{receiver.url('er')}"}}
  - {{id: lab-hook, type: webhook, url: "{receiver.url('lab')}"}}
  - {{id: ward-hook, type: webhook, url: "{receiver.url('ward')}"}}
plans:
  - id: p
    steps:
      - {{after: 0s, notify: [role:it_oncall], message: outage_it}}
      - {{after: 0s, notify: [departments], message: department_outage}}
    on_recovery: [role:it_oncall, departments]
"""


class Alertmanager:
    """Stands in for Alertmanager v2: records every POST to /api/v2/alerts."""

    def __init__(self) -> None:
        self.posts: list[list[dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append(await request.json())
        return web.json_response({})

    def alerts(self, kind: str) -> list[dict[str, Any]]:
        return [a for post in self.posts for a in post if a["labels"].get("kind") == kind]


async def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_thirty_systems_failing_together_give_each_receiver_one_message(
        http_target: HttpTarget, receiver: Receiver, daemon_factory: Any) -> None:
    am = Alertmanager()
    async with serve_route("/api/v2/alerts", am.handle) as am_full_url:
        am_url = am_full_url.removesuffix("/api/v2/alerts")
        port = free_port()
        daemon = await daemon_factory(config(http_target, receiver, am_url, port), port)
        async with httpx.AsyncClient(base_url=daemon.url, trust_env=False) as api:

            async def messages(kind: str) -> list[dict[str, Any]]:
                found = (await api.get("/api/v1/messages")).json()["messages"]
                return [m for m in found if m["kind"] == kind]

            async def open_incidents() -> list[dict[str, Any]]:
                return (await api.get("/api/v1/incidents",
                                      params={"status": "open"})).json()["incidents"]

            async def settled(kind: str, expected: int) -> bool:
                found = await messages(kind)
                return len(found) == expected and all(m["status"] == "sent" for m in found)

            dept_messages = sum(len(used) for used in DEPARTMENTS.values())

            async def outage_settled() -> bool:
                return len(await open_incidents()) == SYSTEMS \
                    and await settled("outage_it", 2 * SYSTEMS) \
                    and await settled("department_outage", dept_messages)

            async def probed() -> bool:
                return http_target.hits >= SYSTEMS

            await wait_until(probed, 10, "the first OK probes")
            assert receiver.messages == []
            http_target.status = 503
            await wait_until(outage_settled, 60, "every outage message sent")

            incidents = await open_incidents()
            started = [dt.datetime.fromisoformat(i["started_at"]).timestamp()
                       for i in incidents]
            # started_at is given to the second: 2 s of failing plus the truncation.
            assert max(started) - min(started) <= 3, "the 30 failures were not within 2 s"
            ids = {i["system"]: i["id"] for i in incidents}

            # IT: exactly one outage_it, listing all 30 incidents, each with its own links.
            (to_it,) = [m for m in receiver.messages if m["_path"] == "/it"]
            assert to_it["kind"] == "outage_it"
            assert to_it["idempotency_key"].startswith("group:")
            assert to_it["incident"]["id"] == to_it["incidents"][0]["id"]
            assert {i["id"] for i in to_it["incidents"]} == set(ids.values())
            for item in to_it["incidents"]:
                assert item["links"]["ack"].startswith(f"{daemon.url}/a/")
                assert item["links"]["ack"] in to_it["text"]
                assert f"{item['system_name']} ({item['system']})" in to_it["text"]
            assert f"{SYSTEMS} systems down at once" in to_it["title"]

            # Each department: exactly one notice naming each of its systems with its
            # procedure.
            for department, used in DEPARTMENTS.items():
                (notice,) = [m for m in receiver.messages if m["_path"] == f"/{department}"]
                assert notice["kind"] == "department_outage"
                assert notice["idempotency_key"].startswith("group:")
                assert {i["system"] for i in notice["incidents"]} == {sid(n) for n in used}
                assert all(i["links"]["department"] in notice["text"]
                           for i in notice["incidents"])
                for n in used:
                    assert f"* System {n:02d}" in notice["text"]
                    assert f"Paper form {n:02d} for System {n:02d}." in notice["text"]
                others = set(range(SYSTEMS)) - set(used)
                assert not any(f"* System {n:02d}" in notice["text"] for n in others)
            assert "各位医护同事" in next(m for m in receiver.messages
                                        if m["_path"] == "/ward")["text"]

            # Alertmanager is never grouped: one post, one alert per incident.
            alerts = am.alerts("outage_it")
            assert len(am.posts) == SYSTEMS
            assert sorted(a["labels"]["incident"] for a in alerts) == sorted(ids.values())

            # Every member stays visible on its own in the API.
            members = await messages("outage_it")
            assert len([m for m in members if m["notifier"] == "it"]) == SYSTEMS
            assert {m["group"] for m in members if m["notifier"] == "it"} == {
                to_it["idempotency_key"]}
            assert {m["group"] for m in members if m["notifier"] == "am"} == {None}

            # Recovery: the same rule, one grouped notice per recipient.
            before = len(receiver.messages)
            http_target.status = 200

            async def recovered() -> bool:
                return await open_incidents() == [] \
                    and await settled("recovery", 2 * SYSTEMS + dept_messages)

            await wait_until(recovered, 60, "every recovery sent")
            later = receiver.messages[before:]
            (it_recovery,) = [m for m in later if m["_path"] == "/it"]
            assert it_recovery["kind"] == "recovery"
            assert it_recovery["idempotency_key"].startswith("group:")
            assert {i["id"] for i in it_recovery["incidents"]} == set(ids.values())
            assert all(i["status"] == "resolved" for i in it_recovery["incidents"])
            for department, used in DEPARTMENTS.items():
                (notice,) = [m for m in later if m["_path"] == f"/{department}"]
                assert notice["kind"] == "recovery"
                assert {i["system"] for i in notice["incidents"]} == {sid(n) for n in used}
            assert len(am.posts) == 2 * SYSTEMS, "each recovery resolves its own alerts"


async def test_a_daemon_killed_while_a_group_is_held_sends_it_once_after_the_restart(
        http_target: HttpTarget, receiver: Receiver, daemon_factory: Any) -> None:
    """The members wait in the persistent outbox: SIGKILL during the window loses none and
    the restarted daemon sends them as one group, once."""
    count = 6
    am = Alertmanager()
    async with serve_route("/api/v2/alerts", am.handle) as am_full_url:
        port = free_port()
        text = config(http_target, receiver, am_full_url.removesuffix("/api/v2/alerts"), port,
                      count=count, window=10)
        daemon = await daemon_factory(text, port)

        async def to_it(url: str) -> list[dict[str, Any]]:
            async with httpx.AsyncClient(base_url=url, trust_env=False) as api:
                found = (await api.get("/api/v1/messages")).json()["messages"]
            return [m for m in found if m["kind"] == "outage_it" and m["notifier"] == "it"]

        async def probed() -> bool:
            return http_target.hits >= count

        await wait_until(probed, 10, "the first OK probes")
        http_target.status = 503

        async def all_held() -> bool:
            found = await to_it(daemon.url)
            return len(found) == count and all(m["status"] == "pending" for m in found)

        await wait_until(all_held, 30, "every outage_it queued and held")
        daemon.kill()  # SIGKILL while the window is still open
        assert [m for m in receiver.messages if m["_path"] == "/it"] == []
        restarted = await daemon_factory(text, port)

        async def all_sent() -> bool:
            found = await to_it(restarted.url)
            return len(found) == count and all(m["status"] == "sent" for m in found)

        await wait_until(all_sent, 40, "the held group sent after the restart")
        (sent,) = [m for m in receiver.messages if m["_path"] == "/it"]
        members = await to_it(restarted.url)
        assert sent["idempotency_key"] == group_key(m["key"] for m in members)
        assert len(sent["incidents"]) == count
        assert {m["group"] for m in members} == {sent["idempotency_key"]}
