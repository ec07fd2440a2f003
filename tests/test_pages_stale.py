"""Stale checks on the pages (SPEC 9, issue 10 item 10): UNKNOWN "not probed since T".

A check with no fresh result (a dead `--shard` instance, a stuck scheduler) must never read
"OK – Working normally", nor keep showing its old failing text as if it were seen now. The
daemon here is the real one (real engine and rules over a real SQLite store) on a virtual
clock; only the probing is replaced by feeding results to the real state machine, because
going stale means *no* probe ran. Its own housekeeping step (`_mark_stale`) marks the checks.
Pages are fetched through the real Starlette app; assertions read the HTML.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from monitor.core.result import Result, State
from monitor.probing.state import advance
from monitor.runtime.daemon import Daemon
from tests.conftest import Clock, pages_in

T0 = 1_800_000_000.0  # 2027-01-15 16:00 in Shanghai
CONFIG = """
site: {name: H, timezone: Asia/Shanghai, language: LANG}
state: {url: "sqlite:///STATE"}
defaults: {interval: 10s, timeout: 2s, retry_interval: 2s, confirm: 3, recover: 2}
roles: {it_oncall: [it]}
departments:
  - {id: opd, name: Outpatient, notify: [opd-hook]}
systems:
  - {id: his, name: Doctor station, departments: [opd], plan: p,
     downtime_procedure: Paper prescriptions (form B-3).}
  - {id: lis, name: LIS, departments: [opd], plan: p}
checks:
  - {id: his-web, system: his, type: tcp, host: 127.0.0.1, port: 9}
  - {id: lis-web, system: lis, type: tcp, host: 127.0.0.1, port: 9}
notifiers:
  - {id: it, type: console}
  - {id: opd-hook, type: console}
plans:
  - id: p
    steps:
      - {after: 0m, notify: [role:it_oncall], message: outage_it}
      - {every: 10m, notify: [departments], message: progress_update}
"""




World = tuple[httpx.AsyncClient, Daemon, Clock]


@pytest.fixture(params=["en", "zh"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    async with pages_in(CONFIG, request.param, tmp_path, T0) as world:
        yield world


async def probe(daemon: Daemon, clock: Clock, check_id: str, state: State, message: str,
                times: int = 1) -> None:
    """Results through the real state machine, and the engine told as the scheduler does."""
    for _ in range(times):
        cs = daemon.states[check_id]
        if advance(cs, Result(state, message), clock.now, 3, 2).notable:
            daemon.engine.check_changed(cs)
        clock.now += 2
    await daemon.engine.tick()


async def go_stale(daemon: Daemon, clock: Clock, seconds: float) -> None:
    """Nothing probes for `seconds`; the daemon's housekeeping marks what is stale."""
    clock.now += seconds
    daemon._mark_stale()
    await daemon.engine.tick()


def card(html: str, system: str) -> str:
    found = re.search(rf'<li class="card [^"]*system-{system}">(.*?)</li>', html, re.S)
    assert found, f"no card for {system}"
    return found.group(1)


WORDS = {
    "en": {"unknown": "UNKNOWN", "since": "Not probed since 2027-01-15 16:00",
           "check": "not probed since 2027-01-15 16:00", "ok": "Working normally",
           "all_ok": "All systems are working", "last_down": "When last seen it was not "
           "working", "banner": "Doctor station not probed since 2027-01-15 16:00",
           "unseen": "have not been probed since 2027-01-15 16:00. The cause below is what "
           "it saw last"},
    "zh": {"unknown": "状态未知", "since": "自 2027-01-15 16:00 起未能检测",
           "check": "自 2027-01-15 16:00 起未能检测", "ok": "运行正常",
           "all_ok": "所有系统运行正常", "last_down": "最后一次检测时无法使用",
           "banner": "Doctor station自 2027-01-15 16:00 起未能检测",
           "unseen": "异常检测项自 2027-01-15 16:00 起未能检测。以下原因为最后一次检测时的判断"},
}


async def test_a_stale_ok_check_is_unknown_not_probed_since_never_ok(world: World) -> None:
    client, daemon, clock = world
    language = daemon.config.site.language
    w = WORDS[language]
    await probe(daemon, clock, "his-web", State.OK, "connected in 1 ms")
    await probe(daemon, clock, "lis-web", State.OK, "connected in 1 ms")
    before = (await client.get("/")).text
    assert w["ok"] in card(before, "his"), "fresh: working normally"
    # his-web is probed no more (its shard died); lis-web keeps answering.
    await go_stale(daemon, clock, 20)
    await probe(daemon, clock, "lis-web", State.OK, "connected in 1 ms")
    await go_stale(daemon, clock, 20)
    await probe(daemon, clock, "lis-web", State.OK, "connected in 1 ms")
    assert daemon.states["his-web"].stale and not daemon.states["lis-web"].stale
    html = (await client.get("/")).text
    his = card(html, "his")
    assert w["unknown"] in his and w["since"] in his
    assert w["ok"] not in his and ">OK<" not in his
    assert w["ok"] in card(html, "lis")
    assert w["all_ok"] not in html, "the banner must not say everything works"
    system = (await client.get("/systems/his")).text
    assert w["check"] in system and "connected in 1 ms" not in system.split('check-his-web')[1]
    department = (await client.get("/departments/opd")).text
    assert w["since"] in card(department, "his")


async def test_an_outage_whose_checks_went_stale_never_shows_its_old_failing_text(
        world: World) -> None:
    client, daemon, clock = world
    w = WORDS[daemon.config.site.language]
    await probe(daemon, clock, "lis-web", State.OK, "connected in 1 ms")
    clock.now = T0 - 4  # the last of three failures at 16:00 exactly
    await probe(daemon, clock, "his-web", State.CRIT, "connection refused 127.0.0.1:9", 3)
    [incident] = daemon.engine.open.values()
    fresh = (await client.get(f"/incidents/{incident.id}")).text
    assert "connection refused 127.0.0.1:9" in fresh, "seen failing: its message is shown"
    await go_stale(daemon, clock, 31)
    assert daemon.states["his-web"].stale
    assert daemon.engine.open["his"].failing_checks[0].get("stale") is True
    html = (await client.get("/")).text
    his = card(html, "his")
    assert w["unknown"] in his and w["since"] in his and w["last_down"] in his
    assert w["banner"] in html, "the banner says hismon cannot see it, not that it is down"
    page = (await client.get(f"/incidents/{incident.id}")).text
    checks = page.split('<table class="checks">')[1].split("</table>")[0]
    assert "connection refused" not in checks and w["check"] in checks and "UNKNOWN" in checks
    assert w["unseen"] in page, "the cause is labelled as what hismon saw last"
    system = (await client.get("/systems/his")).text
    assert "connection refused" not in system.split('check-his-web')[1]
    assert w["check"] in system
    department = (await client.get("/departments/opd")).text
    # Last seen down: staff stay on paper until hismon sees the system again.
    assert "Paper prescriptions (form B-3)." in department and w["since"] in department
    # A fresh result again: the page shows what it sees.
    await probe(daemon, clock, "his-web", State.CRIT, "connection refused 127.0.0.1:9")
    daemon._mark_stale()
    assert not daemon.states["his-web"].stale
    assert "connection refused 127.0.0.1:9" in (await client.get("/systems/his")).text
