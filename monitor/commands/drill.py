"""`hismon drill`: rehearse a system's emergency plan with a simulated outage.

Hospitals must rehearse downtime procedures. A drill runs the real engine and outbox on a
compressed clock: the system's checks are set hard CRIT, every step of the plan fires in
turn (one occurrence of each `every` step), then the system recovers. Every message is
marked DRILL and goes only to notifiers with `drill: true`, unless `--live`.

Only the drill incident's messages go out (SPEC §10): no maintenance notice, no other
traffic, no fallback to a real channel. Each step goes to its `drill: true` recipients, or,
when it names none, to every drill notifier (`monitor.delivery.drill`); the output lists
each step and where it went.

The drill runs on a private in-memory store so that a daemon running on the same state
file never sees (and never re-sends) its messages. Its number is taken from the real store
first, so each drill is `drill-N` with N never reused, its idempotency keys are its own, and
the links in its messages name the id it is kept under: at the end the drill incident, its
timeline and its messages are copied into the real store, where the report lists them as
drills and never counts them as downtime.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TextIO, overload

from monitor.config.model import Config
from monitor.core.models import Incident, OutboxMessage
from monitor.core.result import State
from monitor.core.types import MessageStatus
from monitor.delivery import drill as drill_route
from monitor.delivery.outbox import Outbox
from monitor.incidents import plans
from monitor.incidents.engine import Engine
from monitor.probing.state import CheckState
from monitor.store import Store, open_store
from monitor.store.sqlite import SqliteStore


class CompressedClock:
    """Simulated time running `speed` times faster than the wall clock."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.origin = time.time()

    def __call__(self) -> float:
        return self.origin + (time.time() - self.origin) * self.speed

    @overload
    def real(self, simulated: float) -> float: ...
    @overload
    def real(self, simulated: None) -> None: ...
    @overload
    def real(self, simulated: float | None) -> float | None: ...

    def real(self, simulated: float | None) -> float | None:
        """The wall-clock moment a simulated time happened, for the stored record."""
        if simulated is None:
            return None
        return self.origin + (simulated - self.origin) / self.speed


def plan_length(config: Config, system_id: str) -> float:
    """Simulated seconds until every step has fired once."""
    system = config.system(system_id)
    if not system.plan:
        return 0.0
    plan = config.plan(system.plan)
    after = max((s.after for s in plan.steps if s.after is not None), default=0.0)
    every = min((s.every for s in plan.steps if s.every is not None), default=0.0)
    return max(after, every) + 1.0


class _DrillStore(SqliteStore):
    """The private store of one drill: its incident number is the one reserved for it."""

    def __init__(self, number: int, tag: str) -> None:
        super().__init__("sqlite://")
        self.number = number
        self._real_tag = tag

    @property
    def tag(self) -> str:
        return self._real_tag

    async def next_incident_number(self) -> int:
        return self.number


async def _reserve_number(config: Config) -> tuple[int, str]:
    """Take the next incident number from the real store, so `drill-N` is never reused; the
    real store's tag with it (`drill-N-TAG`, as incident ids)."""
    store = open_store(config.state.url)
    await store.open()
    try:
        return await store.next_incident_number(), getattr(store, "tag", "")
    finally:
        await store.close()


class Rehearsal:
    """One drill's simulated outage, step by step, on any clock and scratch store.

    `run_drill` drives it in real time on a compressed clock; the incident simulator
    (tests/sim) drives the same object on a virtual clock, so what a drill may send is
    checked on the code that really runs.
    """

    def __init__(self, config: Config, system_id: str, scratch: Store, clock: Callable[[], float],
                 live: bool, on_enqueued: Callable[[], None] | None = None) -> None:
        self.config, self.system_id, self.clock = config, system_id, clock
        checks = config.checks_of(system_id)
        self.states = {c.id: CheckState(c.id, c.system, c.type) for c in checks}
        if not self.states:
            self.states[f"{system_id}-drill"] = CheckState(f"{system_id}-drill", system_id,
                                                           "drill")
        self.engine = Engine(config, scratch, self.states, clock, on_enqueued, drill=True,
                             live=live)
        self.incident: Incident | None = None

    async def begin(self) -> Incident:
        """Every check of the system hard CRIT at once: the drill incident opens."""
        now = self.clock()
        for state in self.states.values():
            state.state = state.hard_state = State.CRIT
            state.hard, state.first_failure_at, state.probed = True, now, True
            state.last_run = now
            state.message = "DRILL: simulated outage"
        self.engine.system_changed(self.system_id)
        await self.engine.tick()
        self.incident = self.engine.open[self.system_id]
        return self.incident

    @property
    def deadline(self) -> float:
        """When every step has fired once (simulated time)."""
        assert self.incident is not None
        return self.incident.started_at + plan_length(self.config, self.system_id)

    async def tick(self) -> None:
        await self.engine.tick()

    async def end(self) -> None:
        """The system recovers: the recovery step goes to those the drill told."""
        await self.engine.tick()
        now = self.clock()
        for state in self.states.values():
            state.state = state.hard_state = State.OK
            state.recovered_at = state.last_run = now
        self.engine.system_changed(self.system_id)
        await self.engine.tick()


async def run_drill(config: Config, system_id: str, speed: float, live: bool,
                    out: TextIO) -> int:
    system = config.system(system_id)
    clock = CompressedClock(speed)
    scratch = _DrillStore(*await _reserve_number(config))
    await scratch.open()
    outbox = Outbox(config, scratch, clock=clock,
                    allowed=lambda notifier: drill_route.may_receive(config, notifier, live))
    rehearsal = Rehearsal(config, system_id, scratch, clock, live, outbox.wake)
    recipients = [n.id for n in config.notifiers if live or n.drill]
    out.write(f"DRILL {system.name} ({system_id}): plan {system.plan or '(none)'}, "
              f"speed {speed:g}x, messages to {', '.join(recipients) or 'nobody'}\n")
    outbox.start()
    try:
        incident = await rehearsal.begin()
        out.write(f"  simulated outage opened as {incident.id}\n")
        while clock() < rehearsal.deadline:
            await rehearsal.tick()
            await asyncio.sleep(0.1)
        await rehearsal.end()
        await _drain(outbox, limit=30)
    finally:
        await outbox.stop()
    messages = await scratch.list_messages(incident_id=incident.id)
    resolved = await scratch.get_incident(incident.id)
    out.write(_steps_report(config, resolved or incident, messages,
                            await scratch.steps_recorded(incident.id), live))
    store = open_store(config.state.url)
    await store.open()
    try:
        await keep_record(store, scratch, incident.id, clock.real)
    finally:
        await store.close()
    await scratch.close()
    failed = [m for m in messages if m.status != "sent"]
    out.write(f"DRILL done: {incident.id}, {len(messages)} messages, "
              f"{len(failed)} not delivered\n")
    return 0


def _step_of(message: OutboxMessage) -> tuple[str, int]:
    """(step key, occurrence) from `drill-N:step-1:notifier:0[:fallback:x]`."""
    parts = message.idempotency_key.split(":")
    occurrence = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0
    return parts[1] if len(parts) > 1 else "?", occurrence


def _steps_report(config: Config, incident: Incident, messages: list[OutboxMessage],
                  recorded: dict[tuple[str, int], str], live: bool) -> str:
    """One line per step occurrence: its kind and each notifier it went to, with the result."""
    plan = config.plan(config.system(incident.system).plan or "") if config.system(
        incident.system).plan else None
    kinds: dict[str, str] = {"recovery": "recovery", "ack": "acknowledged",
                             "early": "early_warning"}
    instead: dict[str, bool] = {}
    for index, step in enumerate(plan.steps if plan else []):
        key = f"step-{index}"
        kinds[key] = step.message
        real = plans.resolve_targets(tuple(step.notify), config, incident)
        instead[key] = drill_route.route(real, config, live).instead
    by_step: dict[tuple[str, int], list[OutboxMessage]] = {}
    for m in sorted(messages, key=lambda m: (m.created_at, m.id or 0)):
        by_step.setdefault(_step_of(m), []).append(m)
    order = sorted(set(recorded) | set(by_step),
                   key=lambda k: min((m.created_at for m in by_step.get(k, [])),
                                     default=float("inf")))
    lines = []
    for key, occurrence in order:
        kind = kinds.get(key, key)
        label = f"{key}#{occurrence}" if occurrence else key
        sent = by_step.get((key, occurrence), [])
        if recorded.get((key, occurrence)) == "skipped":
            where = "not sent (skipped)"
        else:
            where = ", ".join(f"{m.notifier} ({m.status})" for m in sent) or "nobody"
        note = "  [no drill notifier among its recipients: every drill notifier]" \
            if instead.get(key) else ""
        lines.append(f"  {label:<10} {kind:<20} → {where}{note}\n")
    return "".join(lines)


async def _drain(outbox: Outbox, limit: float) -> None:
    deadline = time.monotonic() + limit
    outbox.wake()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        if not await outbox.store.pending_messages():
            return


async def keep_record(store: Store, scratch: Store, incident_id: str,
                      real: Callable[[float], float]) -> None:
    """Copy the drill incident, its timeline and its messages into the real store.

    The id (`drill-N`) was reserved in the real store before the drill began, so it, the
    idempotency keys and the links inside the messages stay as they were sent. Times are
    stored as they really happened (`real`: the drill took seconds, not hours), so the record
    never lies in the future of the report that lists it.
    """

    def when(simulated: float | None) -> float | None:
        return None if simulated is None else real(simulated)

    incident = await scratch.get_incident(incident_id)
    assert incident is not None
    await store.save_incident(replace(
        incident, started_at=real(incident.started_at), opened_at=real(incident.opened_at),
        plan_started_at=when(incident.plan_started_at),
        resolved_at=when(incident.resolved_at),
        acknowledged_at=when(incident.acknowledged_at)))
    for entry in await scratch.timeline(incident_id):
        await store.add_timeline(replace(entry, at=real(entry.at)))
    copies = []
    for m in reversed(await scratch.list_messages(incident_id=incident_id)):
        # Never leave a drill message pending where a running daemon would send it.
        status = m.status if m.status != "pending" else MessageStatus.FAILED
        copies.append(replace(m, id=None, status=status))
    await store.enqueue(copies)
