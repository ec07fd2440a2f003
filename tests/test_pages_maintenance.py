"""The front page during an announced maintenance window (SPEC §7): a planned banner, not an alarm.

A system inside its announced window is expected to be down, and its departments follow
the procedure that was announced. A red "systems with problems" banner then tells a nurse
something unexpected broke. The page says "planned maintenance" in blue instead, unless
another system really fails at the same time; then the alarm comes back. The daemon is the
real one on a virtual clock over a real SQLite store; pages come through the real app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from monitor.core.result import Result, State
from monitor.probing.state import advance
from monitor.runtime.daemon import Daemon
from tests.conftest import Clock, pages_in

T0 = 1_800_000_000.0  # 2027-01-15 16:00 in Shanghai, inside the window below
CONFIG = """
site: {name: H, timezone: Asia/Shanghai, language: LANG}
state: {url: "sqlite:///STATE"}
defaults: {interval: 10s, timeout: 2s, retry_interval: 2s, confirm: 1, recover: 1}
departments:
  - {id: lab, name: {zh: 检验科, en: Laboratory}}
systems:
  - {id: lis, name: {zh: 检验系统, en: LIS}, departments: [lab],
     downtime_procedure: {zh: 手工登记标本, en: Log samples by hand}}
  - {id: his, name: {zh: 医生站, en: Doctor station}, departments: [lab]}
checks:
  - {id: lis-web, system: lis, type: tcp, host: 127.0.0.1, port: 9}
  - {id: his-web, system: his, type: tcp, host: 127.0.0.1, port: 9}
notifiers:
  - {id: it, type: console}
maintenance:
  - {systems: [lis], start: "2027-01-15T15:00:00+08:00", end: "2027-01-15T18:00:00+08:00",
     reason: {zh: 数据库迁移, en: database migration}}
"""

World = tuple[httpx.AsyncClient, Daemon, Clock]


@pytest.fixture(params=["en", "zh"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    async with pages_in(CONFIG, request.param, tmp_path, T0) as world:
        yield world


async def probe(daemon: Daemon, clock: Clock, check_id: str, state: State) -> None:
    """A result through the real state machine, then the engine's tick as in the daemon."""
    cs = daemon.states[check_id]
    if advance(cs, Result(state, "refused"), clock.now, 1, 1).notable:
        daemon.engine.check_changed(cs)
    clock.now += 2
    await daemon.engine.tick()


def banner(html: str) -> str:
    start = html.index('<div class="banner')
    return html[start:html.index("</div>", start)]


async def test_a_system_down_in_its_window_gets_the_planned_banner_not_the_alarm(
        world: World) -> None:
    client, daemon, clock = world
    en = daemon.config.site.language == "en"
    await probe(daemon, clock, "his-web", State.OK)
    await probe(daemon, clock, "lis-web", State.CRIT)
    html = (await client.get("/")).text
    top = banner(html)
    assert 'class="banner planned"' in top and 'role="alert"' not in top
    assert ("Planned maintenance in progress: LIS" if en else "正在进行计划维护：检验系统") in top
    assert ("systems with problems" if en else "存在问题") not in top
    # the announced procedure is on the same page, under the maintenance windows
    assert ("Log samples by hand" if en else "手工登记标本") in html

    # another system failing outside any window brings the alarm back
    await probe(daemon, clock, "his-web", State.CRIT)
    top = banner((await client.get("/")).text)
    assert 'class="banner bad"' in top and 'role="alert"' in top
    assert ("1 system with problems" if en else "1 个系统存在问题") in top


async def test_a_quiet_window_with_everything_up_still_says_what_is_planned(
        world: World) -> None:
    client, daemon, clock = world
    await probe(daemon, clock, "his-web", State.OK)
    await probe(daemon, clock, "lis-web", State.OK)
    top = banner((await client.get("/")).text)
    # the window is on: the system shows MAINTENANCE whatever its checks say
    assert 'class="banner planned"' in top
