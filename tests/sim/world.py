"""Runs one scenario: probes on a virtual clock, the real state machine (`advance`), the real
engine (rules + applier) over an in-memory store, restarts that rebuild the engine from the
store, store faults, acknowledgements. Nothing sleeps; a run of an hour takes milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from monitor.core.models import Silence
from monitor.core.result import Result, State
from monitor.incidents.engine import Engine, renderer_for
from monitor.probing.state import CheckState, advance, from_record
from tests.sim.hospital import CONFIRM, INTERVAL, RECOVER, RETRY, hospital
from tests.sim.memstore import MemoryStore

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


CONFIG = hospital()
RENDERER = renderer_for(CONFIG)
"""Shared by every run: compiling the templates once saves most of a run's time."""


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


async def simulate(scenario: Scenario) -> Run:
    config = CONFIG
    store = MemoryStore()
    run = Run(scenario, store, {c.id: [] for c in config.checks})
    clock = Clock()
    for index, w in enumerate(scenario.windows):
        await store.save_silence(Silence(f"w{index}", [w.system], T0 + w.start, T0 + w.end,
                                         "planned work", source="api"))
    checks = {c.id: c for c in config.checks}
    restarts = sorted(scenario.restarts)
    store_faults = sorted(scenario.store_faults)
    acks = sorted(scenario.acks, key=lambda a: a[1])

    def count(kind: str, result: str) -> None:
        run.counted.append((kind, result))

    async def start(at: float, states: dict[str, CheckState]) -> tuple[Engine, dict[str, float]]:
        engine = Engine(config, store, states, clock, count_step=count)
        engine.renderer = RENDERER
        await engine.load()
        await engine.restore_notes()
        run.engines += 1
        phases = scenario.phase or tuple((i * 3.7) % INTERVAL for i in range(len(checks)))
        due = {cid: at + phases[i % len(phases)] for i, cid in enumerate(checks)}
        return engine, due

    states = {c.id: CheckState(c.id, c.system, c.type) for c in config.checks}
    engine, due = await start(0.0, states)
    t, up_since, next_tick = 0.0, 0.0, 0.0
    while True:
        candidates = [min(due.values()), next_tick]
        if restarts:
            candidates.append(restarts[0][0])
        t = max(t, min(candidates))
        if t >= scenario.duration:
            break
        clock.now = T0 + t
        if restarts and restarts[0][0] <= t:
            at, down_for = restarts.pop(0)
            run.up.append((up_since, at))
            t = up_since = at + down_for
            clock.now = T0 + t
            saved = await store.load_check_states()
            states = {c.id: (from_record(c.id, c.system, c.type, saved[c.id]) if c.id in saved
                             else CheckState(c.id, c.system, c.type)) for c in config.checks}
            engine, due = await start(t, states)
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
    run.up.append((up_since, scenario.duration))
    return run
