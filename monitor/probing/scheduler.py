"""Run every check at its interval on APScheduler 3, spread over the interval.

APScheduler owns *when*; `ProbeExecutor` owns *how*: it starts the probe coroutine directly
(skipping APScheduler's per-run logging and event objects, which cost more than a TCP probe)
and reports lag and coalesced runs. Nothing is dropped silently: `misfire_grace_time=None`
and `coalesce=True` turn a backlog into one late run whose lag and missed count are measured,
and a run skipped because the previous one is still going is counted too.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime as dt
import logging
import math
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.executors.base import BaseExecutor
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import datetime_to_utc_timestamp

from checks.base import CheckBase, ProbeContext
from monitor.config.model import Config
from monitor.core.result import Result, State
from monitor.probing.forecast import Forecasts
from monitor.probing.runner import run_probe
from monitor.probing.state import CheckState, advance, hold
from monitor.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from monitor.history.recorder import HistoryRecorder

log = structlog.get_logger("hismon.scheduler")
logging.getLogger("apscheduler").setLevel(logging.ERROR)


SPREAD_SLOT = 0.01
"""Offsets fall on a 10 ms grid: APScheduler wakes once per slot and starts every job due in it.

At 1,000 runs/s that is ~10 jobs per wake-up instead of one, which takes the scheduler's
CPU per run from ~180 to ~105 µs (bench/sched.py) while keeping runs 10 ms apart at most.
"""


def spread_offset(check_id: str, interval: float) -> float:
    """A stable offset inside the interval, so 10,000 checks never start in the same second."""
    offset = (zlib.crc32(check_id.encode()) / 2**32) * interval
    if interval <= SPREAD_SLOT:
        return offset
    return min(math.floor(offset / SPREAD_SLOT) * SPREAD_SLOT, interval - SPREAD_SLOT)


def in_shard(check_id: str, shard: tuple[int, int] | None) -> bool:
    if shard is None:
        return True
    index, total = shard
    return zlib.crc32(check_id.encode()) % total == index


class ProbeExecutor(BaseExecutor):
    """Starts `job.func(*job.args, scheduled, missed)` as a task on the daemon's loop."""

    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        self._loop = scheduler._eventloop
        self._tasks: set[asyncio.Task[None]] = set()

    def shutdown(self, wait: bool = True) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()

    def _do_submit_job(self, job: Any, run_times: list[dt.datetime]) -> None:
        task = self._loop.create_task(
            job.func(*job.args, run_times[-1].timestamp(), len(run_times) - 1))
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            if finished.cancelled():
                self._run_job_success(job.id, [])
                return
            error = finished.exception()
            if error is not None:
                self._run_job_error(job.id, error, error.__traceback__)
            else:
                self._run_job_success(job.id, [])

        task.add_done_callback(done)

    def _run_job_success(self, job_id: str, events: list[JobSubmissionEvent]) -> None:
        with self._lock:
            self._instances[job_id] -= 1
            if self._instances[job_id] == 0:
                del self._instances[job_id]


class _SortedJobStore(MemoryJobStore):
    """MemoryJobStore with its order kept as `(timestamp, job_id, job)` entries.

    The stock store finds a job's position with a binary search written in Python, twice per
    run (~25 µs at 10,000 jobs); tuples that sort by (time, id) let `bisect` do it in C (ids
    are unique, so the job objects themselves are never compared). The order, the timestamps
    and the errors are the stock store's.
    """

    def __init__(self) -> None:
        super().__init__()
        self._entries: list[tuple[float, str, Any]] = []

    def get_due_jobs(self, now: dt.datetime) -> list[Any]:
        index = bisect.bisect_right(self._entries, (datetime_to_utc_timestamp(now), _MAX_ID))
        return [entry[2] for entry in self._entries[:index]]

    def get_next_run_time(self) -> dt.datetime | None:
        return self._entries[0][2].next_run_time if self._entries else None

    def get_all_jobs(self) -> list[Any]:
        return [entry[2] for entry in self._entries]

    def add_job(self, job: Any) -> None:
        if job.id in self._jobs_index:
            raise ConflictingIdError(job.id)
        timestamp = datetime_to_utc_timestamp(job.next_run_time)
        bisect.insort(self._entries, (_key(timestamp), job.id, job))
        self._jobs_index[job.id] = (job, timestamp)

    def update_job(self, job: Any) -> None:
        old_job, old_timestamp = self._jobs_index.get(job.id, (None, None))
        if old_job is None:
            raise JobLookupError(job.id)
        old_index = self._index(old_timestamp, old_job.id)
        new_timestamp = datetime_to_utc_timestamp(job.next_run_time)
        if old_timestamp == new_timestamp:
            self._entries[old_index] = (_key(new_timestamp), job.id, job)
        else:
            del self._entries[old_index]
            bisect.insort(self._entries, (_key(new_timestamp), job.id, job))
        self._jobs_index[old_job.id] = (job, new_timestamp)

    def remove_job(self, job_id: str) -> None:
        job, timestamp = self._jobs_index.get(job_id, (None, None))
        if job is None:
            raise JobLookupError(job_id)
        del self._entries[self._index(timestamp, job_id)]
        del self._jobs_index[job.id]

    def remove_all_jobs(self) -> None:
        super().remove_all_jobs()
        self._entries = []

    def _index(self, timestamp: float | None, job_id: str) -> int:
        return bisect.bisect_left(self._entries, (_key(timestamp), job_id))


_MAX_ID = "\U0010ffff"
"""Sorts after every job id: `(now, _MAX_ID)` bounds all jobs due at `now`."""


def _key(timestamp: float | None) -> float:
    return math.inf if timestamp is None else timestamp


class _LoopScheduler(AsyncIOScheduler):
    """AsyncIOScheduler whose timer processes the due jobs in the timer callback itself.

    The stock timer calls `wakeup`, which is meant for other threads and re-posts itself
    through `call_soon_threadsafe`: a self-pipe write, an extra loop iteration and a read for
    every wake-up, about 20 µs per run at 1,000 runs/s. The timer always fires on the loop,
    so it can do the work directly; `wakeup()` from elsewhere keeps its thread-safe path.
    """

    def _start_timer(self, wait_seconds: float | None) -> None:
        self._stop_timer()
        if wait_seconds is not None:
            self._timeout = self._eventloop.call_later(wait_seconds, self._wakeup_on_loop)

    def _wakeup_on_loop(self) -> None:
        self._stop_timer()
        self._start_timer(self._process_jobs())


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
        self._aps = _LoopScheduler(
            jobstores={"default": _SortedJobStore()},
            executors={"default": ProbeExecutor()},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=dt.UTC,
        )
        self._aps.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)

    def start(self) -> None:
        self._aps.start()
        self.apply_config(self.config)

    def shutdown(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)

    def apply_config(self, config: Config) -> None:
        """Add, change and remove jobs to match the config; untouched checks keep their state."""
        self.config = config
        # Every check of the config, owned or not: the store keeps the others' samples.
        self.forecasts.apply_config(config.checks, config.site.tz)
        wanted = {c.id: c for c in config.checks if self.owns(c.id)}
        for check_id in list(self._checks):
            if check_id not in wanted:
                self._aps.remove_job(check_id)
                del self._checks[check_id]
                self.states.pop(check_id, None)
                self.trends.pop(check_id, None)
        now = dt.datetime.now(dt.UTC)
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
            trigger = IntervalTrigger(
                seconds=check.interval,
                start_date=now + dt.timedelta(seconds=spread_offset(check_id, check.interval)),
                timezone=dt.UTC)
            if old is None:
                self._aps.add_job(self._run, trigger, args=[check_id], id=check_id,
                                  name=check_id)
            else:
                self._aps.reschedule_job(check_id, trigger=trigger)

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
        now = dt.datetime.now(dt.UTC)
        for check_id in moved_in:
            with contextlib.suppress(LookupError):
                self._aps.modify_job(check_id, next_run_time=now)
        return moved_in

    def _skipped(self, event: Any) -> None:
        state = self.states.get(event.job_id)
        if state is not None:
            state.missed_runs += 1
            if state.missed_runs in (1, 10, 100) or state.missed_runs % 1000 == 0:
                log.warning("run_missed", check=event.job_id, reason="previous run still going",
                            missed_total=state.missed_runs)

    async def _run(self, check_id: str, scheduled: float = 0.0, missed: int = 0) -> None:
        started = self.clock()
        self.metrics.scheduler_lag.observe(max(started - scheduled, 0.0))
        state = self.states.get(check_id)
        check = self._checks.get(check_id)
        if state is None or check is None:
            return
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
        result = await run_probe(check, self.ctx)
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
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=check.retry_interval)
        try:
            self._aps.modify_job(check_id, next_run_time=when)
        except LookupError:  # removed by a reload meanwhile
            pass

    async def run_now(self, check_ids: list[str]) -> None:
        """Probe the given checks immediately, outside the schedule (used by tests and drills)."""
        await asyncio.gather(*(self._run(c, self.clock(), 0) for c in check_ids))
