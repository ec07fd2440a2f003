"""Run every check at its interval, spread over the interval, on hismon's own `Ticker`.

The ticker owns *when* (one loop timer over a heap of due times, monitor/probing/ticker.py);
this module owns *what*: the probe, the state machine, the metrics. Nothing is dropped
silently: a backlog becomes one late run whose lag and missed count are measured, and a run
skipped because the previous one is still going is counted too.
"""

from __future__ import annotations

import asyncio
import math
import time
import zlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import structlog

from checks.base import CheckBase, ProbeContext
from monitor.config.model import Config
from monitor.core.collector import collector_paused
from monitor.core.result import Result, State
from monitor.probing.forecast import Forecasts
from monitor.probing.runner import run_probe
from monitor.probing.slots import ProbeSlots
from monitor.probing.state import CheckState, advance, hold
from monitor.probing.ticker import Ticker
from monitor.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from monitor.history.recorder import HistoryRecorder

log = structlog.get_logger("hismon.scheduler")


SPREAD_SLOT = 0.01
"""The finest grid of offsets: the ticker wakes once per slot and starts every job due in it."""
SLOT_RUNS = 10
"""About this many runs share a slot: the grid is as coarse as that allows, up to MAX_SLOT.

Waking up is what a probe costs most on a virtual machine: a process that sleeps 10 ms and
wakes spends ~40 µs of CPU per wake-up, an event loop ~120 µs (bench/README.md, "Update:
CPU per probe"). With few runs per slot, a probe's connect, answer and close mostly come in
wake-ups of their own; with more runs starting together their events arrive while the loop
is still busy with the slot. At 500 HTTP probes/s (the scheduler with real probes in one
process) a 10 ms grid (5 runs a slot) cost ~430 µs per probe, 20 ms ~375, 30 ms ~330, 50 ms
~310, 100 ms ~280; 200 and 500 ms gained nothing more. What bounds the grid is the lag: a
slot's last run starts after the others' first steps (~0.1-0.3 ms each on a loaded 2-core
machine). 20 runs a slot (20 ms at 1,000 runs/s) took the daemon's lag p99 at 10,000 checks
from 16 to 31 ms (bench/run.py); 10 a slot is the 10 ms grid there, as before, and 20 ms at
500 runs/s.
"""
MAX_SLOT = 0.1


def spread_slot(runs_per_second: float) -> float:
    """The grid for this many runs a second: SLOT_RUNS a slot, 10 to 100 ms, in whole ms."""
    if runs_per_second <= 0:
        return MAX_SLOT
    slot = round(SLOT_RUNS / runs_per_second, 3)
    return min(max(slot, SPREAD_SLOT), MAX_SLOT)


def spread_offset(check_id: str, interval: float, slot: float = SPREAD_SLOT) -> float:
    """A stable offset inside the interval, so 10,000 checks never start in the same second.

    Offsets fall on a grid of `slot` seconds (`spread_slot`), so the runs of a slot start
    on one wake-up of the ticker.
    """
    offset = (zlib.crc32(check_id.encode()) / 2**32) * interval
    if interval <= slot:
        return offset
    return min(math.floor(offset / slot) * slot, interval - slot)


def in_shard(check_id: str, shard: tuple[int, int] | None) -> bool:
    if shard is None:
        return True
    index, total = shard
    return zlib.crc32(check_id.encode()) % total == index


def _milestone(before: int, after: int) -> bool:
    """Whether a count went past 1, 10, 100 or a multiple of 1,000: those get a log line."""
    return any(before < mark <= after for mark in (1, 10, 100)) or before // 1000 < after // 1000


class Scheduler:
    def __init__(
        self,
        config: Config,
        ctx: ProbeContext,
        states: dict[str, CheckState],
        metrics: Metrics,
        on_change: Callable[[CheckState], None],
        clock: Callable[[], float] = time.time,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.states = states
        self.metrics = metrics
        self.on_change = on_change
        self.clock = clock
        self.shard = shard
        self.owned: set[str] | None = None
        """With `cluster: {shards: auto}`: the checks this member probes (None: by shard)."""
        self.trends: dict[str, Any] = {}
        self.recorder: HistoryRecorder | None = None
        """Folds every result into its check's history bucket (monitor.history), if set."""
        self.forecasts = Forecasts(config.site.tz)
        self._checks: dict[str, CheckBase] = {}
        self._ticker = Ticker(self._run, self._skipped)
        self.slots = ProbeSlots()
        """The cap on probes in flight (the daemon sets it from the descriptor limit)."""

    def prepare(self) -> None:
        """The states of the checks this instance probes, before `start()` (the daemon starts
        probing last; its engine and web server read the states meanwhile)."""
        for check in self.config.checks:
            if check.id not in self.states and self.owns(check.id):
                self.states[check.id] = CheckState(check.id, check.system, check.type)

    def start(self) -> None:
        self._ticker.start()
        self.apply_config(self.config)

    def shutdown(self) -> None:
        self._ticker.shutdown()

    def apply_config(self, config: Config) -> None:
        """Add, change and remove jobs to match the config; untouched checks keep their state."""
        with collector_paused():  # a state and a job per check, all kept (monitor.core.collector)
            self._apply(config)

    def _apply(self, config: Config) -> None:
        self.config = config
        # Every check of the config, owned or not: the store keeps the others' samples.
        self.forecasts.apply_config(config.checks, config.site.tz)
        wanted = {c.id: c for c in config.checks if self.owns(c.id)}
        for check_id in list(self._checks):
            if check_id not in wanted:
                self._ticker.remove(check_id)
                del self._checks[check_id]
                self.states.pop(check_id, None)
                self.trends.pop(check_id, None)
        now = time.monotonic()
        slot = spread_slot(sum(1.0 / c.interval for c in wanted.values() if c.interval))
        for check_id, check in wanted.items():
            old = self._checks.get(check_id)
            self._checks[check_id] = check
            state = self.states.get(check_id)
            if state is None or state.system != check.system or state.type != check.type:
                self.states[check_id] = CheckState(check_id, check.system, check.type)
            if check.trend is not None:
                tracker = self.trends.get(check_id)
                if tracker is None or tracker.config != check.trend:
                    from monitor.probing.trend import TrendTracker

                    self.trends[check_id] = TrendTracker(check.trend)
            else:
                self.trends.pop(check_id, None)
            if old is not None and old.interval == check.interval:
                continue
            assert check.interval is not None
            self._ticker.add(check_id, check.interval,
                             spread_offset(check_id, check.interval, slot), now)

    @property
    def probing(self) -> Mapping[str, CheckBase]:
        """The checks this instance probes now, by id (read-only)."""
        return MappingProxyType(self._checks)

    def owns(self, check_id: str) -> bool:
        """Whether this instance probes `check_id` (its shard, or its cluster share)."""
        if self.owned is not None:
            return check_id in self.owned
        return in_shard(check_id, self.shard)

    def set_owned(self, owned: set[str]) -> list[str]:
        """Probe exactly `owned` from now on; checks that moved here are probed at once.

        Returns the ids that moved here. Their state (taken from the store by the caller,
        before this call) is kept: a check that moves keeps its hard state (SPEC 9).
        """
        before = set(self._checks)
        self.owned = set(owned)
        self.apply_config(self.config)
        moved_in = sorted(set(self._checks) - before)
        for check_id in moved_in:
            self._ticker.run_in(check_id, 0.0)
        return moved_in

    def _skipped(self, check_id: str, runs: int) -> None:
        """`runs` due runs did not start: the previous run of the check is still going."""
        state = self.states.get(check_id)
        if state is not None:
            before = state.missed_runs
            state.missed_runs += runs
            if _milestone(before, state.missed_runs):
                log.warning("run_missed", check=check_id, reason="previous run still going",
                            missed_total=state.missed_runs)

    async def _run(self, check_id: str, scheduled: float = 0.0, missed: int = 0) -> None:
        state = self.states.get(check_id)
        check = self._checks.get(check_id)
        if state is None or check is None:
            return
        slots = self.slots
        if not check.pushed and not slots.take():
            # At the cap: wait for a slot. The job's run is still going meanwhile, so a run
            # that comes due is counted missed; lag and the probe's timeout start from now.
            await slots.wait()
            state = self.states.get(check_id)  # a reload or a takeover may have replaced them
            check = self._checks.get(check_id)
            if state is None or check is None or check.pushed:
                slots.release()
                return
        self.metrics.scheduler_lag.observe(max(self.clock() - scheduled, 0.0))
        if missed:
            state.missed_runs += missed
            log.warning("run_missed", check=check_id, reason="overload", missed=missed)
        if check.pushed:  # results come through the API; the schedule only watches freshness
            stale = check.overdue(self.ctx, self.clock(), self.config.site.tz)
            if stale is not None and stale.state is State.UNKNOWN:
                # A silent source is the monitor's problem, not the hospital's (SPEC 9): it
                # keeps its hard state and opens nothing; the message says since when, and
                # the daemon's self-watch tells IT (`stale_checks`).
                state.message = stale.message
            elif stale is not None:
                self._fold(check, state, stale)  # `stale: crit`: the silence is the alarm
            return
        try:
            result = await run_probe(check, self.ctx)
        finally:
            slots.release()
        self.metrics.observe_probe(check.type, result.duration)
        if result.own_fault is not None:  # hismon out of descriptors: UNKNOWN, judges nothing
            hold(state, result)
            return
        self._fold(check, state, result)

    def submit(self, check_id: str, result: Result) -> bool:
        """A pushed result of a passive check, folded like a probe's; False if no such check.

        Its time is kept as the check's heartbeat: what `overdue()` measures silence from.
        """
        state = self.states.get(check_id)
        check = self._checks.get(check_id)
        if state is None or check is None or not check.pushed:
            return False
        self.ctx.heartbeats[check_id] = self.clock()
        self._fold(check, state, result)
        return True

    def _fold(self, check: CheckBase, state: CheckState, result: Result) -> None:
        """One result into the trend, the state machine and (on a hard change) the engine."""
        check_id = check.id
        tracker = self.trends.get(check_id)
        if tracker is not None:
            result = tracker.observe(result)
        flap = self.config.defaults.flapping
        assert check.confirm is not None and check.recover is not None
        now = self.clock()
        result = self.forecasts.observe(check, result, now)
        change = advance(state, result, now, check.confirm, check.recover, flap.high, flap.low)
        if self.recorder is not None:
            self.recorder.observe(state, result.duration, now)
        if change.notable:
            log.info("check_state", check=check_id, system=check.system,
                     state=state.hard_state.name, previous=change.old_hard.name,
                     flapping=state.flapping, unstable=state.unstable, message=state.message)
            self.on_change(state)
        if not check.pushed and (state.unconfirmed or (state.failing and not state.hard)):
            self._retry_soon(check_id, check)

    def _retry_soon(self, check_id: str, check: CheckBase) -> None:
        """Re-probe at `retry_interval` while a failure or a recovery is unconfirmed."""
        assert check.retry_interval is not None and check.interval is not None
        if check.retry_interval >= check.interval:
            return
        try:
            self._ticker.run_in(check_id, check.retry_interval)
        except KeyError:  # removed by a reload meanwhile
            pass

    async def run_now(self, check_ids: list[str]) -> None:
        """Probe the given checks immediately, outside the schedule (used by tests and drills)."""
        await asyncio.gather(*(self._run(c, self.clock(), 0) for c in check_ids))
