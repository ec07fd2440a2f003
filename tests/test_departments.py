"""Departments confirm (SPEC 13.3): on paper and back-entry, the targets that follow who has
not answered, what leadership reads, and the back-fill reminder; engine on a moved clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.core.result import Result, State
from monitor.incidents.engine import Engine
from monitor.people.actions import Refused
from monitor.probing.state import CheckState, advance
from tests.conftest import Clock, engine_of

CONFIG = """\
site: {name: H, timezone: Asia/Shanghai, language: en}
roles: {leadership: [boss]}
departments:
  - {id: er, name: Emergency, notify: [er-hook]}
  - {id: opd, name: Outpatient, notify: [opd-hook]}
  - {id: lab, name: Laboratory, notify: [lab-hook]}
systems:
  - {id: his, name: HIS, departments: [er, opd], plan: p}
checks:
  - {id: his-web, system: his, type: http, url: "http://127.0.0.1:1/"}
notifiers:
  - {id: boss, type: console}
  - {id: er-hook, type: console}
  - {id: opd-hook, type: console}
  - {id: lab-hook, type: console}
plans:
  - id: p
    backfill_reminder: 4h
    steps:
      - {after: 0m, notify: [departments], message: department_outage}
      - {after: 10m, notify: ["departments:unconfirmed"], message: department_outage}
      - {after: 15m, notify: [role:leadership], message: leadership_report}
      - {every: 30m, notify: [role:leadership], message: progress_update}
    on_recovery: [departments]
"""
T0 = 1_800_000_000.0




@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Engine, Clock, dict[str, CheckState]]]:
    async with engine_of(CONFIG, tmp_path, T0) as world:
        yield world


async def test_confirmations_drive_targets_reports_and_the_backfill_reminder(world) -> None:
    engine, clock, states = world

    async def feed(state: State, times: int) -> None:
        for _ in range(times):
            advance(states["his-web"], Result(state, state.name), clock.now, 3, 2)
        engine.system_changed("his")
        await engine.tick()

    async def at(minutes: float) -> None:
        clock.now = T0 + minutes * 60
        await engine.tick()

    async def sent() -> list[tuple[str, str]]:
        return [(m.kind, m.notifier) for m in reversed(await engine.store.list_messages())]

    await feed(State.CRIT, 3)
    incident_id = engine.open["his"].id
    await at(3)
    confirmed = await engine.confirm_department(incident_id, "er", "on_paper", "Nurse Wu")
    assert confirmed.departments_confirmed["er"]["on_paper_by"] == "Nurse Wu"
    again = await engine.confirm_department(incident_id, "er", "on_paper", "someone else")
    assert again.departments_confirmed["er"]["on_paper_by"] == "Nurse Wu", "twice: harmless"
    with pytest.raises(Refused) as refused:
        await engine.confirm_department(incident_id, "lab", "on_paper", None)
    assert refused.value.status == 422, "a department the incident does not affect"
    await at(10)
    assert [s for s in await sent() if s[0] == "department_outage"][-1:] == [
        ("department_outage", "opd-hook")], "departments:unconfirmed: only who has not answered"
    await at(15)
    report = next(m for m in await engine.store.list_messages()
                  if m.kind == "leadership_report")
    assert "Departments on paper: Emergency" in report.payload["text"]
    assert "Departments that have not answered: Outpatient" in report.payload["text"]
    await at(30)
    update = next(m for m in await engine.store.list_messages()
                  if m.kind == "progress_update" and m.notifier == "boss")
    assert "Departments on paper: Emergency" in update.payload["text"]
    assert "Departments that have not answered: Outpatient" in update.payload["text"]

    await feed(State.OK, 2)
    assert "his" not in engine.open
    await engine.confirm_department(incident_id, "er", "backfill_done", "Nurse Wu")
    resolved_at = (await engine.store.get_incident(incident_id)).resolved_at
    clock.now = resolved_at + 4 * 3600 - 1
    await engine.tick()
    assert not any(k == "backfill_reminder" for k, _ in await sent())
    clock.now = resolved_at + 4 * 3600 + 20
    await engine.tick()
    assert [s for s in await sent() if s[0] == "backfill_reminder"] == [
        ("backfill_reminder", "opd-hook")], "only the department that has not back-filled"
    reminder = next(m for m in await engine.store.list_messages()
                    if m.kind == "backfill_reminder")
    assert reminder.payload["title"].startswith("Reminder: back-fill")
    clock.now += 60
    await engine.tick()
    assert [k for k, _ in await sent()].count("backfill_reminder") == 1, "once"
    timeline = [e.kind for e in await engine.store.timeline(incident_id)]
    assert "department_on_paper" in timeline and "department_backfill_done" in timeline


async def test_it_is_never_a_department_for_notes_and_acknowledgements(world) -> None:
    """This plan has no `outage_it` step and starts with the departments: being asked for
    IT's progress note or told of an acknowledgement is not a clinic's business (SPEC 5)."""
    engine, clock, states = world
    for _ in range(3):
        advance(states["his-web"], Result(State.CRIT, "down"), clock.now, 3, 2)
    engine.system_changed("his")
    await engine.tick()
    incident_id = engine.open["his"].id
    clock.now = T0 + 30 * 60  # the progress update falls due with no note: IT is asked
    await engine.tick()
    await engine.acknowledge(incident_id, "Li Na", None)
    await engine.tick()
    sent = [(m.kind, m.notifier) for m in await engine.store.list_messages()]
    assert ("progress_update", "boss") in sent and ("acknowledged", "boss") in sent
    clinics = {"er-hook", "opd-hook", "lab-hook"}
    assert not [s for s in sent if s[0] in ("progress_update", "acknowledged")
                and s[1] in clinics], sent
