"""`hismon drill`: rehearse a system's emergency plan with a simulated outage.

Hospitals must rehearse downtime procedures. A drill runs the real engine and outbox on a
compressed clock: the system's checks are set hard CRIT, every step of the plan fires in
turn (one occurrence of each `every` step), then the system recovers. Every message is
marked DRILL and goes only to notifiers with `drill: true`, unless `--live`.

The drill runs on a private in-memory store so that a daemon running on the same state
file never sees (and never re-sends) its messages; at the end the drill incident, its
timeline and its messages are copied into the real store, where the report lists them as
drills and never counts them as downtime.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import TextIO, overload

from monitor.config.model import Config
from monitor.core.result import State
from monitor.delivery.outbox import Outbox
from monitor.incidents.engine import Engine
from monitor.probing.state import CheckState
from monitor.store import open_store
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


async def run_drill(config: Config, system_id: str, speed: float, live: bool,
                    out: TextIO) -> int:
    system = config.system(system_id)
    checks = config.checks_of(system_id)
    clock = CompressedClock(speed)
    scratch = SqliteStore("sqlite://")
    await scratch.open()
    states = {c.id: CheckState(c.id, c.system, c.type) for c in checks}
    if not states:
        states[f"{system_id}-drill"] = CheckState(f"{system_id}-drill", system_id, "drill")
    outbox = Outbox(config, scratch, clock=clock)
    engine = Engine(config, scratch, states, clock, outbox.wake, drill=True, live=live)
    recipients = [n.id for n in config.notifiers if live or n.drill]
    out.write(f"DRILL {system.name} ({system_id}): plan {system.plan or '(none)'}, "
              f"speed {speed:g}x, messages to {', '.join(recipients) or 'nobody'}\n")
    outbox.start()
    try:
        now = clock()
        for state in states.values():
            state.state = state.hard_state = State.CRIT
            state.hard, state.first_failure_at, state.probed = True, now, True
            state.message = "DRILL: simulated outage"
        engine.system_changed(system_id)
        await engine.tick()
        incident = engine.open[system_id]
        out.write(f"  simulated outage opened as {incident.id}\n")
        deadline = incident.started_at + plan_length(config, system_id)
        while clock() < deadline:
            await engine.tick()
            await asyncio.sleep(0.1)
        await engine.tick()
        now = clock()
        for state in states.values():
            state.state = state.hard_state = State.OK
            state.recovered_at = now
        engine.system_changed(system_id)
        await engine.tick()
        await _drain(outbox, limit=30)
    finally:
        await outbox.stop()
    messages = await scratch.list_messages(incident_id=incident.id)
    for m in reversed(messages):
        out.write(f"  {m.kind:<20} → {m.notifier:<20} {m.status}\n")
    await _keep_record(config, scratch, incident.id, clock)
    await scratch.close()
    failed = [m for m in messages if m.status != "sent"]
    out.write(f"DRILL done: {len(messages)} messages, {len(failed)} not delivered\n")
    return 0


async def _drain(outbox: Outbox, limit: float) -> None:
    deadline = time.monotonic() + limit
    outbox.wake()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        if not await outbox.store.pending_messages():
            return


async def _keep_record(config: Config, scratch: SqliteStore, incident_id: str,
                       clock: CompressedClock) -> None:
    """Copy the drill incident, its timeline and its messages into the real store.

    Times are stored as they really happened (the drill took seconds, not hours), so the
    record never lies in the future of the report that lists it.
    """
    store = open_store(config.state.url)
    await store.open()
    try:
        number = await store.next_incident_number()
        kept_id = f"drill-{number}"
        incident = await scratch.get_incident(incident_id)
        assert incident is not None
        await store.save_incident(replace(
            incident, id=kept_id, started_at=clock.real(incident.started_at),
            opened_at=clock.real(incident.opened_at),
            plan_started_at=clock.real(incident.plan_started_at),
            resolved_at=clock.real(incident.resolved_at),
            acknowledged_at=clock.real(incident.acknowledged_at)))
        for entry in await scratch.timeline(incident_id):
            await store.add_timeline(replace(entry, incident_id=kept_id,
                                             at=clock.real(entry.at)))
        copies = []
        for m in reversed(await scratch.list_messages(incident_id=incident_id)):
            # Never leave a drill message pending where a running daemon would send it.
            status = m.status if m.status != "pending" else "failed"
            copies.append(replace(m, id=None, incident_id=kept_id, status=status,
                                  idempotency_key=m.idempotency_key.replace(incident_id,
                                                                            kept_id, 1)))
        await store.enqueue(copies)
    finally:
        await store.close()
