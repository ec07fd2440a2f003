"""Interval jobs on the event loop: one timer, a heap of due times, nothing kept per run.

hismon used APScheduler 3 for this until its per-run path cost more than a TCP probe: per run
a job-store update, trigger arithmetic on datetimes, event objects and executor instance
counting (~80 µs after hismon's patches, ~170 µs stock, bench/sched.py), and `add_job` runs
`inspect.signature` on the job function for every job (~5 s of start-up at 10,000 checks).
Every job hismon schedules is the same kind: "every N seconds from an offset, a backlog
becomes one late run whose missed runs are counted, never two runs of one job at once, and
sometimes the next run sooner (a retry, a check that moved here)". That is all this does.

Times are `time.monotonic()` (what asyncio's default loop clock is), so a wall-clock step
neither bunches nor stalls the probes; the time handed to the job is the wall-clock time the
run was due, which is what the scheduler lag is measured against.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

log = structlog.get_logger("hismon.scheduler")

RunFn = Callable[[str, float, int], Coroutine[Any, Any, None]]
"""`run(key, due_wall_time, missed)`: one run of a job; `missed` runs were coalesced into it."""
SkipFn = Callable[[str, int], None]
"""`skipped(key, runs)`: `runs` due runs of a job did not start because its last one is going."""

EARLY = 0.001
"""A due time this close counts as due now: the loop's timer may fire a hair before it."""


class _Job:
    __slots__ = ("due", "gen", "interval", "key", "task")

    def __init__(self, key: str, interval: float, due: float) -> None:
        self.key = key
        self.interval = interval
        self.due = due
        self.gen = 0
        """Bumped whenever `due` is moved: heap entries of an older generation are stale."""
        self.task: asyncio.Task[None] | None = None
        """The run in progress, if any."""


class Ticker:
    """Runs each job every `interval` seconds; `start()` on the loop, `shutdown()` to stop.

    Jobs may be added before `start()` (they wait). The heap holds `(due, key, generation)`
    tuples: keys are unique, so comparisons never reach past the key, and moving a job
    leaves its old entry behind as stale, skipped when it comes up.
    """

    def __init__(self, run: RunFn, skipped: SkipFn) -> None:
        self._run = run
        self._skipped = skipped
        self._jobs: dict[str, _Job] = {}
        self._heap: list[tuple[float, str, int]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- jobs ------------------------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        return key in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def interval(self, key: str) -> float | None:
        job = self._jobs.get(key)
        return job.interval if job is not None else None

    def add(self, key: str, interval: float, first_in: float, now: float | None = None) -> None:
        """Run `key` every `interval` s, first in `first_in` s; an existing job is replaced
        (its run in progress, if any, goes on and still blocks an overlapping one).

        `now` (a `time.monotonic()` reading) lets many jobs share one base, so offsets on a
        common grid give equal due times that one wake-up starts together.
        """
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        due = (time.monotonic() if now is None else now) + max(first_in, 0.0)
        job = self._jobs.get(key)
        if job is None:
            job = self._jobs[key] = _Job(key, interval, due)
        else:
            job.interval, job.due = interval, due
            job.gen += 1
        self._push(job)

    def remove(self, key: str) -> None:
        """Forget `key` (a run in progress finishes); KeyError if there is no such job."""
        del self._jobs[key]

    def run_in(self, key: str, delay: float) -> None:
        """Move the next run of `key` to `delay` s from now; later ones follow from there.

        KeyError if there is no such job (removed by a reload meanwhile).
        """
        job = self._jobs[key]
        job.due = time.monotonic() + max(delay, 0.0)
        job.gen += 1
        self._push(job)

    # ---- the loop --------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._arm()

    @property
    def running(self) -> bool:
        return self._loop is not None

    def shutdown(self) -> None:
        """Stop the timer and cancel the runs in progress."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()

    def _push(self, job: _Job) -> None:
        heapq.heappush(self._heap, (job.due, job.key, job.gen))
        if self._loop is not None and (self._timer is None or job.due < self._timer_at):
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._loop is None or not self._heap:
            return
        self._timer_at = self._heap[0][0]
        self._timer = self._loop.call_later(self._timer_at - time.monotonic(), self._fire)

    def _fire(self) -> None:
        """Start every job that is due (a backlog of one job coalesced), then re-arm."""
        self._timer = None
        loop = self._loop
        if loop is None:
            return
        now = time.monotonic()
        to_wall = time.time() - now
        limit = now + EARLY
        heap, jobs = self._heap, self._jobs
        while heap and heap[0][0] <= limit:
            due, key, gen = heapq.heappop(heap)
            job = jobs.get(key)
            if job is None or job.gen != gen:
                continue  # removed or moved since this entry was pushed
            missed = 0
            if now - due >= job.interval:
                missed = int((now - due) // job.interval)
                due += missed * job.interval
            job.due = due + job.interval
            heapq.heappush(heap, (job.due, key, gen))
            if job.task is not None:
                self._skipped(key, missed + 1)
                continue
            task = loop.create_task(self._guarded(job, due + to_wall, missed))
            job.task = task
            self._tasks.add(task)
        self._arm()

    async def _guarded(self, job: _Job, scheduled: float, missed: int) -> None:
        try:
            await self._run(job.key, scheduled, missed)
        except Exception as exc:  # the job's bug must not stop its schedule
            log.error("run_failed", check=job.key, error=f"{type(exc).__name__}: {exc}"[:300])
        finally:
            task, job.task = job.task, None
            if task is not None:
                self._tasks.discard(task)
