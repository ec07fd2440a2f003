"""The vendor's response clock starts when `vendor_escalation` was *delivered* (SPEC 13.4),
not when the step fell due: a vendor mail server that refuses for ten minutes is not the
vendor's delay. A real webhook notifier, a real local receiver that fails first, the real
outbox and SQLite store; the clock is the test's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from monitor.config.loader import load_config_text
from monitor.core.result import Result, State
from monitor.delivery.context import sla_status
from monitor.delivery.outbox import Outbox
from monitor.incidents.engine import Engine
from monitor.people.review import build_review
from monitor.probing.state import CheckState, advance
from monitor.store.sqlite import SqliteStore
from tests.conftest import Clock, Receiver

T0 = 1_800_000_000.0


def config(receiver: Receiver, db: Path) -> Any:
    return load_config_text(f"""\
site: {{name: H, timezone: Asia/Shanghai, language: en}}
state: {{url: "sqlite:///{db}"}}
systems:
  - id: his
    name: HIS
    plan: p
    vendor: {{name: Vendor A, notify: [vendor-hook], response_sla: 30m}}
checks:
  - {{id: his-web, system: his, type: http, url: "http://127.0.0.1:1/"}}
notifiers:
  - {{id: it, type: console}}
  - id: vendor-hook
    type: webhook
    url: "{receiver.url('vendor')}"
    retry: {{initial: 1s, max_delay: 1s}}
plans:
  - id: p
    steps:
      - {{after: 0s, notify: [it], message: outage_it}}
      - {{after: 0s, notify: [vendor], message: vendor_escalation}}
""", "v.yaml", {})


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Any, SqliteStore, Receiver, Clock]]:
    receiver = await Receiver().start()
    store = SqliteStore(f"sqlite:///{tmp_path}/s.db")
    await store.open()
    yield config(receiver, tmp_path / "s.db"), store, receiver, Clock(T0)
    await store.close()
    await receiver.stop()


def engine_for(cfg: Any, store: SqliteStore, clock: Clock, outbox: Outbox | None = None) -> Engine:
    states = {"his-web": CheckState("his-web", "his", "http", probed=True)}
    return Engine(cfg, store, states, clock, outbox.wake if outbox else None)


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def vendor_sent(store: SqliteStore) -> bool:
    return any(m.kind == "vendor_escalation" and m.status == "sent"
               for m in await store.list_messages())


async def test_the_sla_counts_from_the_delivered_escalation(world) -> None:
    cfg, store, receiver, clock = world
    outbox = Outbox(cfg, store, clock)
    engine = engine_for(cfg, store, clock, outbox)
    outbox.on_sent = engine.delivered
    receiver.fail_with = 503  # the vendor's gateway refuses at first
    outbox.start()
    try:
        for _ in range(3):
            advance(engine.states["his-web"], Result(State.CRIT, "down"), clock.now, 3, 2)
        engine.system_changed("his")
        await engine.tick()
        incident = next(iter(engine.open.values()))
        await until(lambda: _attempted(store))
        await engine.tick()
        assert incident.vendor_escalated_at is None, "due but not delivered: no clock yet"
        assert sla_status(incident, 1800, clock.now) is None

        clock.now = T0 + 600  # ten minutes later the gateway takes it
        receiver.fail_with = None
        outbox.wake()
        await until(lambda: vendor_sent(store))
        await engine.tick()
        assert incident.vendor_escalated_at == T0 + 600
        entry = next(e for e in await store.timeline(incident.id)
                     if e.kind == "vendor_escalated")
        assert entry.at == T0 + 600 and entry.data["notifier"] == "vendor-hook"

        # 35 minutes after the step fell due, 25 after delivery: within the 30-minute SLA.
        clock.now = T0 + 35 * 60
        await engine.vendor_response(incident.id, "Engineer Wu", "20m")
        stored = await store.get_incident(incident.id)
        assert stored is not None and stored.vendor_escalated_at == T0 + 600
        assert sla_status(stored, 1800, clock.now) == "kept"
        review = build_review(cfg, stored, await store.timeline(incident.id),
                              await store.list_messages(incident_id=incident.id), clock.now)
        assert review["vendor"]["escalated_at"].endswith("16:10:00+08:00")
        assert review["vendor"]["sla"] == "kept"
    finally:
        await outbox.stop()


async def _attempted(store: SqliteStore) -> bool:
    return any(m.kind == "vendor_escalation" and m.attempts >= 1 and m.last_error
               for m in await store.list_messages())


async def test_a_delivery_before_a_crash_starts_the_clock_after_the_restart(world) -> None:
    cfg, store, _, clock = world
    engine = engine_for(cfg, store, clock)
    for _ in range(3):
        advance(engine.states["his-web"], Result(State.CRIT, "down"), clock.now, 3, 2)
    engine.system_changed("his")
    await engine.tick()
    incident_id = next(iter(engine.open.values())).id
    # The outbox delivers while nobody hears of it: the daemon dies right after the send.
    clock.now = T0 + 90
    outbox = Outbox(cfg, store, clock)
    outbox.start()
    try:
        await until(lambda: vendor_sent(store))
    finally:
        await outbox.stop()
    stored = await store.get_incident(incident_id)
    assert stored is not None and stored.vendor_escalated_at is None

    clock.now = T0 + 200
    restarted = engine_for(cfg, store, clock)
    await restarted.load()
    await restarted.restore_escalations()
    await restarted.tick()
    stored = await store.get_incident(incident_id)
    assert stored is not None and stored.vendor_escalated_at == T0 + 90
