"""Runs one scenario: probes on a virtual clock, the real state machine (`advance`), the real
engine (rules + applier) over an in-memory store, the real outbox senders (retries, backoff,
fallback) delivering to simulated channels that fail when the scenario says, drills run by
the real `hismon drill` code (`Rehearsal`, `keep_record`) on a scratch store, restarts that
rebuild the engine and the outbox from the store, store faults, acknowledgements. Nothing
sleeps; a run of an hour takes milliseconds.

The channels are the one thing simulated in-process (a real HTTP receiver per send would
cost the thousands of virtual minutes a run needs): `SimChannel` is a notifier whose `send`
fails as the scenario's `ChannelFault`s say and records every delivery and attempt.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Any

from pydantic import PrivateAttr

from monitor.commands.drill import Rehearsal, keep_record
from monitor.core.models import Incident, OutboxMessage, Silence
from monitor.core.result import Result, State
from monitor.delivery import drill as drill_route
from monitor.delivery.outbox import Outbox, Sender
from monitor.incidents.engine import Engine, renderer_for
from monitor.probing.state import CheckState, advance, from_record
from notifiers.base import DeliveryError, NotifierBase, NotifyContext, OutgoingMessage
from tests.sim.hospital import CONFIRM, INTERVAL, RECOVER, RETRY, hospital
from tests.sim.memstore import MemoryStore, ScratchStore, StoreDown

T0 = 1_800_000_000.0
TICK = 5.0
"""The engine timer (the daemon: 1 s). Every hard change still ticks at once; steps due
between ticks go out up to TICK late, which the invariants allow for."""


@dataclass(frozen=True)
class Fault:
    """A check fails from `start` for `length` seconds; with `period`, only the first `down`
    seconds of each period (flapping at that rhythm)."""

    check: str
    start: float
    length: float
    state: State = State.CRIT
    period: float = 0.0
    down: float = 0.0

    def failing(self, t: float) -> bool:
        if not self.start <= t < self.start + self.length:
            return False
        return self.period <= 0 or (t - self.start) % self.period < self.down


@dataclass(frozen=True)
class Window:
    system: str
    start: float
    end: float


@dataclass(frozen=True)
class ChannelFault:
    """A channel fails from `start` for `length` seconds (float("inf"): for good).
    `permanent`: it refuses each message for good (an HTTP 4xx), else it is down (5xx)."""

    notifier: str
    start: float
    length: float
    permanent: bool = False

    def failing(self, t: float) -> bool:
        return self.start <= t < self.start + self.length


@dataclass(frozen=True)
class Drill:
    """`hismon drill --system SYSTEM [--live]` started at `at` (seconds from the start)."""

    system: str
    at: float
    live: bool = False


@dataclass(frozen=True)
class Scenario:
    faults: tuple[Fault, ...] = ()
    windows: tuple[Window, ...] = ()
    restarts: tuple[tuple[float, float], ...] = ()
    """(at, down for): the daemon stops at `at` and is back `down for` seconds later."""
    store_faults: tuple[float, ...] = ()
    """Times at which the next two store writes fail (database locked)."""
    acks: tuple[tuple[str, float], ...] = ()
    """(system, at): someone acknowledges the system's open incident."""
    duration: float = 3600.0
    phase: tuple[float, ...] = ()
    """Per check, the offset of its first probe within the interval (default spread)."""
    channel_faults: tuple[ChannelFault, ...] = ()
    drills: tuple[Drill, ...] = ()


@dataclass
class Run:
    scenario: Scenario
    store: MemoryStore
    probes: dict[str, list[tuple[float, State]]] = field(default_factory=dict)
    up: list[tuple[float, float]] = field(default_factory=list)
    """Intervals (from, to) in which the daemon ran."""
    counted: list[tuple[str, str]] = field(default_factory=list)
    engines: int = 0
    errors: list[str] = field(default_factory=list)
    net: Net | None = None
    drills: list[DrillRun] = field(default_factory=list)
    versions: list[tuple[float, Incident]] = field(default_factory=list)
    """Every incident record the engine saved, with the (virtual) time it was saved."""


@dataclass
class Delivery:
    """One send attempt as the channel saw it."""

    at: float
    """Seconds from the run's start (world time, also during a drill)."""
    notifier: str
    key: str
    kind: str
    drill: bool
    title: str
    text: str
    via: str
    """`live` (the daemon's outbox) or the drill incident's id (the drill's own outbox)."""
    ok: bool
    incident: str | None


@dataclass
class DrillRun:
    """What one drill did, for the invariants."""

    drill: Drill
    incident_id: str
    messages: list[OutboxMessage]
    """The drill's messages in its scratch store at the end (before they were kept)."""
    before: tuple[Any, ...]
    after: tuple[Any, ...]
    """The live store's incidents, timelines and messages around the drill."""
    keys_taken: set[str]
    """Idempotency keys in the live store before the drill kept its record."""
    open_before: dict[str, str]
    open_after: dict[str, str]


class Net:
    """The channels' side of the world: which fail when, and every attempt they saw."""

    def __init__(self, faults: tuple[ChannelFault, ...], clock: Clock) -> None:
        self.faults = faults
        self.clock = clock
        self.log: list[Delivery] = []
        self.via = "live"
        self.store_faulted: set[str] = set()
        """Keys whose delivery the store may have failed to record (sent again: at least
        once, SPEC 9)."""

    def fault(self, notifier: str, t: float) -> ChannelFault | None:
        return next((f for f in self.faults if f.notifier == notifier and f.failing(t)), None)

    def mark_sent_unrecorded(self) -> None:
        last = next((d for d in reversed(self.log) if d.ok), None)
        if last is not None:
            self.store_faulted.add(last.key)


class SimChannel(NotifierBase):
    """A notifier whose `send` fails as the scenario says and records every attempt."""

    type: str = "sim"
    _net: Net = PrivateAttr()

    @classmethod
    def of(cls, notifier: NotifierBase, net: Net) -> SimChannel:
        fields = notifier.model_dump(include={"id", "timeout", "retry", "fallback",
                                              "fallback_after", "rate_limit", "drill"})
        channel = cls.model_validate(fields)
        channel._net = net
        return channel

    async def send(self, message: OutgoingMessage, ctx: NotifyContext) -> str:
        net = self._net
        t = net.clock() - T0
        fault = net.fault(self.id, t)
        incident = message.incident.get("id") if isinstance(message.incident, dict) else None
        net.log.append(Delivery(t, self.id, message.idempotency_key, str(message.kind),
                                message.drill, message.title, message.text, net.via,
                                fault is None, incident))
        if fault is not None:
            raise DeliveryError("HTTP 400 refused" if fault.permanent else "HTTP 503",
                                permanent=fault.permanent)
        return "200 OK"


CONFIG = hospital()
RENDERER = renderer_for(CONFIG)
"""Shared by every run: compiling the templates once saves most of a run's time."""


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _live_part(store: MemoryStore, drill_ids: set[str]) -> tuple[Any, ...]:
    """The live store's incidents, timelines and messages (drill records left out)."""
    incidents = {k: v for k, v in store.incidents.items() if k not in drill_ids}
    timelines = {k: v for k, v in store.timelines.items() if k not in drill_ids}
    messages = [m for m in store.outbox if m.incident_id not in drill_ids]
    return copy.deepcopy((incidents, timelines, messages, dict(store.steps)))


def _senders(outbox: Outbox, net: Net) -> None:
    outbox.senders = {n.id: Sender(outbox, SimChannel.of(n, net))
                      for n in CONFIG.notifiers if outbox.allowed(n.id)}


async def _deliver(store: MemoryStore, outbox: Outbox, run: Run, now: float) -> float | None:
    """One pass of each sender with a message due at `now`; the next due time (absolute)."""
    net = run.net
    assert net is not None
    for notifier in sorted({m.notifier for m in store.outbox
                            if m.status == "pending" and m.next_attempt_at <= now}):
        sender = outbox.senders.get(notifier)
        if sender is None:
            continue
        mark = len(net.log)
        try:
            await sender.pass_once()
        except StoreDown as exc:
            if len(net.log) > mark and net.log[-1].ok:
                net.mark_sent_unrecorded()
            run.errors.append(f"outbox: {exc}")
    pending = [m.next_attempt_at for m in store.outbox if m.status == "pending"
               and m.notifier in outbox.senders]
    return min(pending) if pending else None


DRILL_SPEED = 60.0
"""`hismon drill --speed 60`: how kept records map the drill's simulated time to real time."""
DRILL_STEP = 5.0
"""Simulated seconds between two drill ticks (the CLI: 0.1 s of wall time at 60x)."""


async def _drill(run: Run, drill: Drill, clock: Clock) -> None:
    """`hismon drill` at world time `drill.at`, with the code the command runs: the number
    reserved in the live store, a scratch store, the drill's own outbox (drill notifiers
    only unless live), the simulated outage walked to its end, the record kept. It runs
    beside the daemon and shares nothing with it but the store and the channels."""
    store, net = run.store, run.net
    assert net is not None
    drill_ids = {d.incident_id for d in run.drills}
    before = _live_part(store, drill_ids)
    try:
        number = await store.next_incident_number()
    except StoreDown as exc:  # the command fails before it starts: nothing to check
        run.errors.append(f"drill: {exc}")
        return
    scratch = ScratchStore(number)
    dclock = Clock()
    dclock.now = clock.now
    scratch.clock = dclock
    outbox = Outbox(CONFIG, scratch, clock=dclock,
                    allowed=lambda n: drill_route.may_receive(CONFIG, n, drill.live))
    outbox.rng = random.Random(number)
    _senders(outbox, net)
    rehearsal = Rehearsal(CONFIG, drill.system, scratch, dclock, drill.live, outbox.wake)
    rehearsal.engine.renderer = RENDERER
    net.via = f"drill-{number}"
    try:
        incident = await rehearsal.begin()
        while dclock.now < rehearsal.deadline:
            await _deliver(scratch, outbox, run, dclock.now)
            dclock.now += DRILL_STEP
            await rehearsal.tick()
        await rehearsal.end()
        for _ in range(30):  # the CLI drains the outbox for a while
            await _deliver(scratch, outbox, run, dclock.now)
            dclock.now += 2.0
    finally:
        net.via = "live"
        await outbox.http.aclose()
    origin = clock.now
    taken = set(store.keys)
    await keep_record(store, scratch, incident.id,
                      lambda t: origin + (t - origin) / DRILL_SPEED)
    run.drills.append(DrillRun(drill, incident.id, copy.deepcopy(scratch.outbox), before,
                               _live_part(store, drill_ids | {incident.id}), taken, {}, {}))


async def simulate(scenario: Scenario) -> Run:
    config = CONFIG
    store = MemoryStore()
    clock = Clock()
    store.clock = clock
    net = Net(scenario.channel_faults, clock)
    run = Run(scenario, store, {c.id: [] for c in config.checks}, net=net)
    for index, w in enumerate(scenario.windows):
        await store.save_silence(Silence(f"w{index}", [w.system], T0 + w.start, T0 + w.end,
                                         "planned work", source="api"))
    checks = {c.id: c for c in config.checks}
    restarts = sorted(scenario.restarts)
    store_faults = sorted(scenario.store_faults)
    acks = sorted(scenario.acks, key=lambda a: a[1])
    drills = sorted(scenario.drills, key=lambda d: d.at)

    def count(kind: str, result: str) -> None:
        run.counted.append((kind, result))

    async def start(at: float, states: dict[str, CheckState]
                    ) -> tuple[Engine, dict[str, float], Outbox]:
        engine = Engine(config, store, states, clock, count_step=count)
        engine.renderer = RENDERER
        await engine.load()
        await engine.restore_notes()
        run.engines += 1
        phases = scenario.phase or tuple((i * 3.7) % INTERVAL for i in range(len(checks)))
        due = {cid: at + phases[i % len(phases)] for i, cid in enumerate(checks)}
        outbox = Outbox(config, store, clock=clock)
        outbox.rng = random.Random(int(at))
        _senders(outbox, net)
        return engine, due, outbox

    states = {c.id: CheckState(c.id, c.system, c.type) for c in config.checks}
    engine, due, outbox = await start(0.0, states)
    t, up_since, next_tick = 0.0, 0.0, 0.0
    next_send: float | None = None
    try:
        while True:
            candidates = [min(due.values()), next_tick]
            if restarts:
                candidates.append(restarts[0][0])
            if drills:
                candidates.append(drills[0].at)
            if next_send is not None:
                candidates.append(max(next_send - T0, t + 0.5))
            t = max(t, min(candidates))
            if t >= scenario.duration:
                break
            clock.now = T0 + t
            while drills and drills[0].at <= t:
                await _drill(run, drills.pop(0), clock)
            if restarts and restarts[0][0] <= t:
                at, down_for = restarts.pop(0)
                run.up.append((up_since, at))
                t = up_since = at + down_for
                clock.now = T0 + t
                await outbox.http.aclose()
                saved = await store.load_check_states()
                states = {c.id: (from_record(c.id, c.system, c.type, saved[c.id])
                                 if c.id in saved else CheckState(c.id, c.system, c.type))
                          for c in config.checks}
                engine, due, outbox = await start(t, states)
                next_tick = t
                continue
            while store_faults and store_faults[0] <= t:
                store_faults.pop(0)
                store.fail_next = 2
            while acks and acks[0][1] <= t:
                system, _ = acks.pop(0)
                incident = engine.open.get(system)
                if incident is not None:
                    try:
                        await engine.acknowledge(incident.id, "Dr. Sim", None)
                    except Exception as exc:  # a store fault: the API would answer 503
                        run.errors.append(f"ack: {exc}")
            changed = False
            for cid in [c for c, when in due.items() if when <= t]:
                failing = [f for f in scenario.faults if f.check == cid and f.failing(t)]
                state = max((f.state for f in failing), default=State.OK)
                result = Result(state, f"{cid} {state.name}" if failing else f"{cid} answers")
                cs = states[cid]
                change = advance(cs, result, T0 + t, CONFIRM, RECOVER)
                run.probes[cid].append((t, state))
                if change.notable:
                    engine.check_changed(cs)
                    changed = True
                retry = cs.unconfirmed or (cs.failing and not cs.hard)
                due[cid] = t + (RETRY if retry else INTERVAL)
            if changed or t >= next_tick:
                try:
                    await engine.tick()
                except Exception as exc:  # as Engine.run: logged, retried next tick
                    run.errors.append(f"tick: {type(exc).__name__}: {exc}")
                if t >= next_tick:
                    next_tick = t + TICK
            next_send = await _deliver(store, outbox, run, clock.now)
    finally:
        await outbox.http.aclose()
    run.up.append((up_since, scenario.duration))
    run.versions = list(store.versions)
    return run
