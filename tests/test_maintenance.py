"""Maintenance windows: recurring expansion, holds, and planned-downtime announcements."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

from monitor.config.loader import load_config_text
from monitor.incidents import maintenance
from monitor.incidents.engine import Engine
from monitor.probing.state import CheckState
from monitor.store.sqlite import SqliteStore

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
CONFIG = """\
site: {name: H, timezone: Asia/Shanghai, language: en}
departments:
  - {id: rad, name: Radiology, notify: [rad-hook], language: zh}
  - {id: er, name: Emergency, notify: [er-hook]}
systems:
  - {id: pacs, name: PACS, departments: [rad], downtime_procedure: "Film on the light box."}
  - {id: his, name: HIS, departments: [er]}
notifiers:
  - {id: rad-hook, type: console}
  - {id: er-hook, type: console}
maintenance:
  - systems: [pacs]
    recurring: {days: [sun], start: "02:00", end: "04:00"}
    reason: weekly archive
  - systems: [his]
    start: "2026-12-01T22:00:00+08:00"
    end: "2026-12-02T02:00:00+08:00"
    reason: database server migration
    announce: [24h, 1h]
"""


def ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp()


def test_a_recurring_window_covers_every_sunday_in_the_site_time_zone() -> None:
    config = load_config_text(CONFIG, "m.yaml", {})
    sunday_3am = ts("2026-11-29T03:00:00")  # 2026-11-29 is a Sunday
    found = [w for w in maintenance.windows(config, [], sunday_3am) if "pacs" in w.systems]
    assert any(w.covers("pacs", sunday_3am) for w in found)
    monday_3am = ts("2026-11-30T03:00:00")
    assert not any(w.covers("pacs", monday_3am)
                   for w in maintenance.windows(config, [], monday_3am))
    assert not any(w.covers("pacs", ts("2026-11-29T04:00:00"))
                   for w in maintenance.windows(config, [], ts("2026-11-29T04:00:00")))


def test_a_window_crossing_midnight_ends_the_next_day() -> None:
    text = CONFIG.replace('start: "02:00", end: "04:00"', 'start: "23:00", end: "01:00"')
    config = load_config_text(text, "m.yaml", {})
    after_midnight = ts("2026-11-30T00:30:00")  # Sunday night into Monday
    assert any(w.covers("pacs", after_midnight)
               for w in maintenance.windows(config, [], after_midnight))


def test_only_the_shortest_due_announcement_is_sent() -> None:
    window = maintenance.Window("w", ("his",), 10_000.0, 20_000.0, "x", (3600.0, 86400.0))
    assert maintenance.notice_due(window, 10_000 - 90_000) is None
    assert maintenance.notice_due(window, 10_000 - 80_000) == 86400.0
    assert maintenance.notice_due(window, 10_000 - 1_800) == 3600.0
    assert maintenance.notice_due(window, 10_001) is None
    assert maintenance.over_due(window, 20_100) and not maintenance.over_due(window, 19_000)


async def test_departments_get_the_notice_ahead_and_the_resume_notice_after(
    tmp_path: Path,
) -> None:
    config = load_config_text(CONFIG, "m.yaml", {})
    store = SqliteStore(f"sqlite:///{tmp_path}/s.db")
    await store.open()
    clock = [ts("2026-11-30T22:30:00")]  # 23.5 h before the migration
    states = {c.id: CheckState(c.id, c.system, c.type) for c in config.checks}
    engine = Engine(config, store, states, lambda: clock[0])
    await engine.tick()
    await engine.tick()
    notices = await store.list_messages()
    assert [(m.kind, m.notifier) for m in notices] == [("maintenance_notice", "er-hook")]
    assert "Film" not in notices[0].payload["text"]
    assert notices[0].payload["maintenance"]["reason"] == "database server migration"
    clock[0] = ts("2026-12-01T21:30:00")
    await engine.tick()
    assert len([m for m in await store.list_messages() if m.kind == "maintenance_notice"]) == 2
    clock[0] = ts("2026-12-01T23:00:00")
    assert engine.in_maintenance("his", clock[0])
    clock[0] = ts("2026-12-02T02:10:00")
    engine.invalidate_windows()
    await engine.tick()
    kinds = [m.kind for m in await store.list_messages()]
    assert kinds.count("maintenance_over") == 1
    restarted = Engine(config, store, states, lambda: clock[0])
    await restarted.tick()
    assert [m.kind for m in await store.list_messages()].count("maintenance_over") == 1
    await store.close()


def test_a_window_needs_start_and_end_or_a_recurrence() -> None:
    import pytest

    from monitor.config.loader import ConfigError

    text = CONFIG.replace('    end: "2026-12-02T02:00:00+08:00"\n', "")
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "m.yaml", {})
    assert "maintenance[1]: a window needs start and end" in str(caught.value)


async def test_maintenance_over_waits_until_the_system_is_back(tmp_path: Path) -> None:
    """Issue 10 item 7: the migration overruns. No "resume electronic work" while the HIS is
    still down at the window's end; it goes out once the HIS is back, saying when."""
    from monitor.core.result import Result, State
    from monitor.probing.state import advance

    text = CONFIG + """checks:
  - {id: his-web, system: his, type: http, url: "http://127.0.0.1:1/"}
"""
    config = load_config_text(text, "m.yaml", {})
    store = SqliteStore(f"sqlite:///{tmp_path}/s.db")
    await store.open()
    clock = [ts("2026-12-01T23:00:00")]
    states = {c.id: CheckState(c.id, c.system, c.type, probed=True) for c in config.checks}
    engine = Engine(config, store, states, lambda: clock[0])
    advance(states["his-web"], Result(State.CRIT, "HTTP 502", cause="application"),
            clock[0], 1, 2)
    engine.check_changed(states["his-web"])
    await engine.tick()
    assert engine.open["his"].held == "maintenance"

    async def over() -> list[str]:
        return [m.payload["text"] for m in await store.list_messages()
                if m.kind == "maintenance_over"]

    for at in ("2026-12-02T02:00:30", "2026-12-02T02:10:00", "2026-12-02T02:40:00"):
        clock[0] = ts(at)
        engine.invalidate_windows()
        await engine.tick()
        assert await over() == [], f"'maintenance over' while the HIS is down ({at})"
    for at in ("2026-12-02T02:45:00", "2026-12-02T02:45:10"):
        clock[0] = ts(at)
        advance(states["his-web"], Result(State.OK, "HTTP 200"), clock[0], 1, 2)
        engine.check_changed(states["his-web"])
        await engine.tick()
    assert "his" not in engine.open
    clock[0] = ts("2026-12-02T02:45:20")
    engine.invalidate_windows()
    await engine.tick()
    texts = await over()
    assert len(texts) == 1, texts
    assert "02:45" in texts[0], texts[0]
    await store.close()
