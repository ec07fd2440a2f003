"""Incidents and plan timing, with an injectable clock and the real SQLite store.

No test sleeps: the clock is a number the test moves, as Alertmanager's dispatch tests do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.config.loader import load_config_text
from monitor.config.model import Config
from monitor.core.models import Silence
from monitor.core.result import Result, State
from monitor.incidents.engine import Engine
from monitor.probing.state import CheckState, advance
from monitor.store.sqlite import SqliteStore
from tests.conftest import Clock

CONFIG = """\
site: {name: Test Hospital, timezone: Asia/Shanghai, language: en, campuses: [main, north]}
# These tests time the plan of a dependent (his) from its own confirmation; the settle wait of
# SPEC 4 has its own tests (tests/test_simulator.py, test_dependency_settle_* below).
defaults: {dependency_settle: 0s}
roles:
  it_oncall: [it]
  leadership: [boss]
departments:
  - {id: er, name: Emergency, campus: north, notify: [er-hook]}
  - {id: opd, name: Outpatient, campus: main, notify: [opd-hook]}
  - {id: lab, name: Laboratory, campus: main, notify: [lab-hook]}
systems:
  - id: his-db
    name: HIS database
    departments: [er]
    plan: standard
  - id: his
    name: Outpatient doctor station
    departments: [opd]
    depends_on: [his-db]
    plan: standard
    vendor: {name: Vendor A, notify: [vendor-hook], response_sla: 30m}
    downtime_procedure: Use paper prescriptions (form B-3).
  - id: lis
    name: LIS
    departments: [lab]
    plan: standard
checks:
  - {id: db-tcp, system: his-db, type: tcp, host: 127.0.0.1, port: 1}
  - {id: his-web, system: his, type: http, url: "http://127.0.0.1:1/"}
  - {id: his-tcp, system: his, type: tcp, host: 127.0.0.1, port: 1}
  - {id: lis-web, system: lis, type: http, url: "http://127.0.0.1:1/"}
notifiers:
  - {id: it, type: console}
  - {id: boss, type: console}
  - {id: er-hook, type: console}
  - {id: opd-hook, type: console}
  - {id: lab-hook, type: console}
  - {id: vendor-hook, type: console}
plans:
  - id: standard
    early_warning: [role:it_oncall]
    steps:
      - {after: 0m,  notify: [role:it_oncall],  message: outage_it}
      - {after: 5m,  notify: [departments],     message: department_outage}
      - {after: 15m, notify: [role:leadership], message: leadership_report}
      - {after: 30m, notify: [vendor],          message: vendor_escalation, unless: acknowledged}
      - {every: 30m, notify: [role:leadership, departments], message: progress_update}
    on_recovery: [role:it_oncall, departments, role:leadership]
"""

T0 = 1_800_000_000.0




class World:
    """An engine over a real store, with check states the test sets by feeding results."""

    def __init__(self, config: Config, store: SqliteStore, clock: Clock) -> None:
        self.config, self.store, self.clock = config, store, clock
        # A running daemon has probed every check at least once.
        self.states = {c.id: CheckState(c.id, c.system, c.type, probed=True)
                       for c in config.checks}
        self.engine = Engine(config, store, self.states, clock)

    async def fail(self, check_id: str, state: State = State.CRIT, times: int = 3) -> None:
        for _ in range(times):
            change = advance(self.states[check_id], Result(state, f"{check_id} {state.name}"),
                             self.clock.now, 3, 2)
            if change.hard_changed:
                self.engine.system_changed(self.states[check_id].system)
        await self.engine.tick()

    async def heal(self, check_id: str) -> None:
        await self.fail(check_id, State.OK, times=2)

    async def at(self, minutes: float) -> None:
        self.clock.now = T0 + minutes * 60
        await self.engine.tick()

    async def sent(self) -> list[tuple[str, str]]:
        """(kind, notifier) of every enqueued message, oldest first."""
        return [(m.kind, m.notifier) for m in reversed(await self.store.list_messages())]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = SqliteStore(f"sqlite:///{tmp_path}/state.db")
    await store.open()
    yield World(load_config_text(CONFIG, "t.yaml", {}), store, Clock(T0))
    await store.close()


async def test_a_critical_outage_walks_the_plan_on_time(world: World) -> None:
    await world.fail("his-web")
    incident = world.engine.open["his"]
    assert incident.severity == "critical"
    assert await world.sent() == [("outage_it", "it")]
    await world.at(4.9)
    assert len(await world.sent()) == 1
    await world.at(5)
    assert ("department_outage", "opd-hook") in await world.sent()
    assert not any(n == "er-hook" for _, n in await world.sent()), "only affected departments"
    await world.at(15)
    assert (await world.sent())[-1] == ("leadership_report", "boss")
    await world.at(30)
    kinds = [k for k, _ in await world.sent()]
    assert kinds.count("vendor_escalation") == 1 and kinds.count("progress_update") >= 1
    await world.at(31)
    await world.at(59)
    # boss + opd, and IT on-call because no progress note came yet
    assert [k for k, _ in await world.sent()].count("progress_update") == 3
    await world.at(60)
    assert [k for k, _ in await world.sent()].count("progress_update") == 6


async def test_the_incident_starts_at_the_first_failed_probe(world: World) -> None:
    advance(world.states["his-web"], Result(State.CRIT, "down"), T0 - 10, 3, 2)
    world.clock.now = T0
    await world.fail("his-web", times=2)
    assert world.engine.open["his"].started_at == T0 - 10


async def test_a_warning_sends_only_the_early_warning_then_escalates(world: World) -> None:
    await world.fail("his-web", State.WARN)
    assert world.engine.open["his"].severity == "warning"
    assert await world.sent() == [("early_warning", "it")]
    await world.at(20)
    assert await world.sent() == [("early_warning", "it")]
    await world.fail("his-web", State.CRIT)
    incident = world.engine.open["his"]
    assert incident.severity == "critical"
    assert (await world.sent())[-1] == ("outage_it", "it")
    timeline = [e.kind for e in await world.store.timeline(incident.id)]
    assert "escalated" in timeline


async def test_acknowledgement_suppresses_unless_acknowledged_steps(world: World) -> None:
    await world.fail("his-web")
    await world.at(10)
    incident = await world.engine.acknowledge(world.engine.open["his"].id, "Dr. Wang", "on it")
    assert incident is not None and incident.acknowledged_by == "Dr. Wang"
    assert (await world.sent())[-1] == ("acknowledged", "it")
    await world.at(31)
    assert "vendor_escalation" not in [k for k, _ in await world.sent()]
    steps = await world.store.steps_recorded(incident.id)
    assert steps[("step-3", 0)] == "skipped"


async def test_recovery_notifies_with_the_outage_window(world: World) -> None:
    await world.fail("his-web")
    await world.at(6)
    await world.heal("his-web")
    assert "his" not in world.engine.open
    messages = await world.store.list_messages()
    recovery = [m for m in messages if m.kind == "recovery"]
    # Leadership (15-minute step) never heard of this 6-minute outage: no recovery for them.
    assert {m.notifier for m in recovery} == {"it", "opd-hook"}
    assert recovery[0].payload["incident"]["status"] == "resolved"
    assert recovery[0].payload["incident"]["resolved_at"] is not None


async def test_a_dependency_outage_silences_dependents_and_adds_their_departments(
    world: World,
) -> None:
    await world.fail("db-tcp")
    root = world.engine.open["his-db"]
    await world.fail("his-web")
    dependent = world.engine.open["his"]
    assert dependent.caused_by == root.id and dependent.caused_by_system == "his-db"
    assert "opd" in root.affected_departments
    await world.at(6)
    sent = await world.sent()
    assert ("department_outage", "opd-hook") in sent and ("department_outage", "er-hook") in sent
    assert all(m.incident_id == root.id for m in await world.store.list_messages())


async def test_when_the_root_recovers_first_the_dependent_starts_its_own_plan(
    world: World,
) -> None:
    await world.fail("db-tcp")
    await world.fail("his-web")
    dependent = world.engine.open["his"]
    await world.at(20)
    world.clock.now = T0 + 20 * 60
    await world.heal("db-tcp")
    assert dependent.caused_by is None
    own = [m.kind for m in await world.store.list_messages(incident_id=dependent.id)]
    assert own == ["outage_it"]
    await world.at(25)
    own = [m.kind for m in await world.store.list_messages(incident_id=dependent.id)]
    assert "department_outage" in own and "leadership_report" not in own


async def test_maintenance_holds_notifications_and_the_plan_starts_when_it_ends(
    world: World,
) -> None:
    world.engine.silences["s1"] = Silence("s1", ["his"], T0 - 60, T0 + 600, "migration")
    await world.fail("his-web")
    incident = world.engine.open["his"]
    await world.at(9)
    assert await world.sent() == [] and incident.held == "maintenance"
    await world.at(10)
    assert await world.sent() == [("outage_it", "it")]
    await world.at(14.9)
    assert len(await world.sent()) == 1
    await world.at(15)
    assert ("department_outage", "opd-hook") in await world.sent()


async def test_a_silence_added_or_removed_at_run_time_counts_at_once(world: World) -> None:
    """The web's operations change silences through the engine (issue 9 item 2), which
    drops its 10-second window cache, so a new window holds the very next step."""
    assert not world.engine.in_maintenance("his", T0)  # the cache is now filled
    world.engine.add_silence(Silence("s1", ["his"], T0 - 60, T0 + 600, "migration"))
    assert world.engine.in_maintenance("his", T0)
    await world.fail("his-web")
    assert await world.sent() == [] and world.engine.open["his"].held == "maintenance"
    world.engine.remove_silence("s1")
    assert not world.engine.in_maintenance("his", world.clock.now)
    await world.at(0.1)
    assert await world.sent() == [("outage_it", "it")]


async def test_a_restarted_engine_sends_nothing_twice_and_catches_up_due_steps(
    world: World,
) -> None:
    await world.fail("his-web")
    await world.at(5)
    before = await world.sent()
    restarted = Engine(world.config, world.store, world.states, world.clock)
    await restarted.load()
    world.engine = restarted
    await world.at(5.5)
    assert await world.sent() == before
    await world.at(16)  # the daemon was down across the 15-minute step
    kinds = [k for k, _ in await world.sent()]
    assert kinds.count("leadership_report") == 1


async def test_progress_updates_carry_the_latest_note_or_ask_it_for_one(world: World) -> None:
    await world.fail("his-web")
    incident = world.engine.open["his"]
    await world.at(30)
    first = [m for m in await world.store.list_messages() if m.kind == "progress_update"]
    assert "it" in {m.notifier for m in first}, "no note yet: IT on-call is asked for one"
    await world.at(40)
    await world.engine.add_note(incident.id, "Li", "Vendor replacing the disk controller")
    await world.at(60)
    second = [m for m in await world.store.list_messages() if m.kind == "progress_update"
              and m.idempotency_key.endswith(":2")]
    assert {m.notifier for m in second} == {"boss", "opd-hook"}
    timeline = [e.kind for e in await world.store.timeline(incident.id)]
    assert "note" in timeline


async def test_idempotency_keys_follow_the_spec_shape(world: World) -> None:
    await world.fail("his-web")
    await world.at(5)
    keys = {m.idempotency_key for m in await world.store.list_messages()}
    incident = world.engine.open["his"].id
    assert f"{incident}:step-0:it:0" in keys and f"{incident}:step-1:opd-hook:0" in keys


async def test_flapping_keeps_one_incident_and_holds_its_messages_until_max_hold(
    world: World,
) -> None:
    for _ in range(4):
        await world.fail("his-web")
        await world.heal("his-web")
    assert world.states["his-web"].flapping
    await world.fail("his-web")
    incident = world.engine.open["his"]
    sent_before = await world.sent()
    for _ in range(3):
        await world.heal("his-web")
        assert world.engine.open.get("his") is incident, "a flap does not resolve it"
        await world.fail("his-web")
    assert incident.held == "flapping"
    assert await world.sent() == sent_before
    timeline = [e.text for e in await world.store.timeline(incident.id)]
    assert "notifications held: flapping" in timeline
    world.clock.now = incident.started_at + 601  # flapping.max_hold (10m) has passed
    await world.engine.tick()
    assert incident.held is None
    assert len(await world.sent()) > len(sent_before)


async def test_the_suspected_cause_comes_with_its_evidence(world: World) -> None:
    world.states["his-tcp"].probed = True
    world.states["his-tcp"].message = "connected to 127.0.0.1:1 in 1ms"
    await world.fail("his-web")
    incident = world.engine.open["his"]
    world.states["his-web"].cause = "application"
    world.engine.system_changed("his")
    await world.engine.tick()
    assert incident.suspected_cause == "application"
    assert any("his-tcp (tcp) answers" in line for line in incident.cause_evidence)
    await world.fail("his-tcp")
    assert incident.suspected_cause == "network"


async def test_after_a_restart_unprobed_checks_do_not_resolve_an_open_incident(
    world: World,
) -> None:
    await world.fail("his-web")
    fresh = {c.id: CheckState(c.id, c.system, c.type) for c in world.config.checks}
    restarted = Engine(world.config, world.store, fresh, world.clock)
    await restarted.load()
    await restarted.tick()
    assert "his" in restarted.open, "no probe yet: the outage is not over"
    assert [m.kind for m in await world.store.list_messages()] == ["outage_it"]


async def test_a_dependent_incident_sends_no_recovery_of_its_own(world: World) -> None:
    await world.fail("db-tcp")
    await world.fail("his-web")
    dependent = world.engine.open["his"]
    await world.at(6)
    await world.heal("his-web")
    assert not [m for m in await world.store.list_messages(incident_id=dependent.id)]


async def test_steps_wait_while_every_failing_check_confirms_its_recovery(world: World) -> None:
    await world.fail("his-web")
    await world.at(4.9)
    advance(world.states["his-web"], Result(State.OK, "back"), world.clock.now, 3, 2)
    await world.at(5.1)
    assert world.engine.open["his"].held == "recovering"
    assert "department_outage" not in [k for k, _ in await world.sent()]
    await world.fail("his-web", times=1)
    await world.at(5.2)
    assert ("department_outage", "opd-hook") in await world.sent()


async def test_each_step_occurrence_is_counted_once_at_its_first_decision(
    world: World,
) -> None:
    counted: list[tuple[str, str]] = []
    world.engine = Engine(world.config, world.store, world.states, world.clock,
                          count_step=lambda kind, result: counted.append((kind, result)))
    world.engine.silences["s1"] = Silence("s1", ["his"], T0 - 60, T0 + 600, "migration")
    await world.fail("his-web")
    await world.at(1)
    await world.at(2)
    assert counted == [("outage_it", "maintenance")], "held on every tick, counted once"
    await world.at(10)
    assert counted == [("outage_it", "maintenance")], "sent later: not counted again"
    await world.at(15)
    assert counted[-1] == ("department_outage", "sent")


async def test_one_incident_that_cannot_be_stored_does_not_stop_the_others(
    world: World,
) -> None:
    """Issue 11 item 1: text that SQLite cannot encode (a lone surrogate) in one incident."""
    failed: list[str] = []
    world.engine.on_incident_error = failed.append
    world.states["lis-web"].message = "bad \ud83d text"
    advance(world.states["lis-web"], Result(State.CRIT, "bad \ud83d text"), T0, 3, 2)
    advance(world.states["lis-web"], Result(State.CRIT, "bad \ud83d text"), T0, 3, 2)
    advance(world.states["lis-web"], Result(State.CRIT, "bad \ud83d text"), T0, 3, 2)
    world.engine.system_changed("lis")
    await world.fail("his-web")
    assert ("outage_it", "it") in await world.sent(), "his is not held up by lis"
    assert failed and failed[0] == "lis"
    [problem] = world.engine.problems()
    assert "cannot be processed" in problem and "UnicodeEncodeError" in problem
    assert world.engine.last_error is None, "not reported as a store failure"
    await world.at(5)
    assert ("department_outage", "opd-hook") in await world.sent()


async def test_changed_states_are_saved_in_batches_before_the_tick_acts(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """An outage that changes many checks at once is saved a batch at a time (the loop
    keeps running between batches); every changed state is in the store when the tick
    opens the incident, and a check removed meanwhile is skipped."""
    from monitor.incidents import engine as engine_module

    monkeypatch.setattr(engine_module, "SAVE_BATCH", 2)
    for check_id in world.states:
        for _ in range(3):
            advance(world.states[check_id], Result(State.CRIT, "down"), world.clock.now, 3, 2)
        world.engine.check_changed(world.states[check_id])
    world.engine._dirty_checks.add("gone")  # changed, then removed by a reload
    await world.engine.tick()
    saved = await world.store.load_check_states()
    assert set(saved) == set(world.states)
    assert {r["hard_state"] for r in saved.values()} == {"CRIT"}
    assert world.engine.open, "and the tick went on to open incidents"


async def test_every_step_is_logged_with_its_system(world: World) -> None:
    """`step_fired` names the system also when the step changes nothing on the incident
    (the first step, fired in the tick that opens it, used to log `system: null`)."""
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        await world.fail("his-web")
        await world.at(5)
    fired = [(e["step"], e["system"]) for e in logs if e["event"] == "step_fired"]
    assert fired and all(system == "his" for _, system in fired), fired
