"""The scheduler's timer (monitor/probing/ticker.py) on a real event loop with short intervals.

Nothing is mocked: real `asyncio` timers, real `time.monotonic()`. Every wait is for a
condition with a generous bound, so a loaded 2-core machine only makes the tests slower; the
overload cases block the loop on purpose (`time.sleep`) to create the backlog they test.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

from checks.base import ProbeContext
from monitor.config.model import Config
from monitor.probing.scheduler import (
    MAX_SLOT,
    SPREAD_SLOT,
    Scheduler,
    spread_offset,
    spread_slot,
)
from monitor.probing.state import CheckState
from monitor.probing.ticker import Ticker
from monitor.telemetry.metrics import Metrics, MetricsSource
from tests.conftest import HttpTarget


class Runs:
    """Records each run: (key, wall time it started, wall time it was due, missed)."""

    def __init__(self, hold: float = 0.0, fail: bool = False) -> None:
        self.hold = hold
        self.fail = fail
        self.runs: list[tuple[str, float, float, int]] = []
        self.skipped: list[tuple[str, int]] = []
        self.active = 0
        self.most_active = 0

    async def run(self, key: str, scheduled: float, missed: int) -> None:
        self.runs.append((key, time.time(), scheduled, missed))
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            if self.hold:
                await asyncio.sleep(self.hold)
            if self.fail:
                raise RuntimeError("a bug in the job")
        finally:
            self.active -= 1

    def skip(self, key: str, runs: int) -> None:
        self.skipped.append((key, runs))

    def of(self, key: str) -> list[tuple[str, float, float, int]]:
        return [r for r in self.runs if r[0] == key]


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_jobs_run_at_their_interval_from_their_offset() -> None:
    runs = Runs()
    ticker = Ticker(runs.run, runs.skip)
    base = time.monotonic()
    added = time.time()
    ticker.add("a", 0.2, 0.3, base)
    ticker.add("b", 0.5, 0.0, base)
    ticker.start()
    try:
        await until(lambda: len(runs.of("a")) >= 4 and len(runs.of("b")) >= 2)
    finally:
        ticker.shutdown()
    a = runs.of("a")
    assert a[0][1] >= added + 0.3 - 0.01  # not before its offset
    due = [r[2] for r in a[:4]]
    # due times are exactly one interval apart: no drift however late a run started
    assert all(abs((y - x) - 0.2) < 0.002 for x, y in itertools.pairwise(due))
    assert all(started >= scheduled - 0.002 for _, started, scheduled, _ in runs.runs)
    assert runs.skipped == []


async def test_a_blocked_loop_gives_one_late_run_with_the_missed_ones_counted() -> None:
    runs = Runs()
    ticker = Ticker(runs.run, runs.skip)
    ticker.add("a", 0.1, 0.0)
    ticker.start()
    try:
        await until(lambda: len(runs.runs) >= 1)
        first = len(runs.runs)
        time.sleep(0.55)  # noqa: ASYNC251 - the loop stuck on purpose: 5.5 intervals
        await until(lambda: len(runs.runs) >= first + 1)
        late = runs.runs[first]
        await until(lambda: len(runs.runs) >= first + 2)
    finally:
        ticker.shutdown()
    assert late[3] >= 4  # the backlog is one run, the rest counted as missed
    after = runs.runs[first + 1]
    # the schedule goes on from the grid, not from the late run: no second catch-up run
    assert after[3] == 0 and abs((after[2] - late[2]) - 0.1) < 0.002


async def test_a_run_still_going_is_never_doubled_and_the_skips_are_counted() -> None:
    runs = Runs(hold=0.45)
    ticker = Ticker(runs.run, runs.skip)
    ticker.add("slow", 0.1, 0.0)
    ticker.start()
    try:
        await until(lambda: len(runs.runs) >= 2)
    finally:
        ticker.shutdown()
    assert runs.most_active == 1
    assert sum(n for key, n in runs.skipped if key == "slow") >= 3


async def test_run_in_moves_the_next_run_and_later_ones_follow_from_it() -> None:
    runs = Runs()
    ticker = Ticker(runs.run, runs.skip)
    ticker.add("a", 5.0, 5.0)
    ticker.start()
    try:
        moved = time.time()
        ticker.run_in("a", 0.1)
        await until(lambda: len(runs.runs) >= 1)
        assert runs.runs[0][1] >= moved + 0.1 - 0.01
        assert runs.runs[0][1] < moved + 4.0  # not at the old time
        ticker.run_in("a", 0.0)
        await until(lambda: len(runs.runs) >= 2)
    finally:
        ticker.shutdown()
    assert len(runs.runs) == 2  # the moved runs replaced the scheduled ones
    try:
        ticker.run_in("gone", 1.0)
    except KeyError:
        pass
    else:
        raise AssertionError("run_in of an unknown job must raise KeyError")


async def test_remove_stops_a_job_and_add_replaces_its_interval() -> None:
    runs = Runs()
    ticker = Ticker(runs.run, runs.skip)
    ticker.add("a", 0.1, 0.0)
    ticker.add("b", 0.1, 0.0)
    ticker.start()
    try:
        await until(lambda: len(runs.of("a")) >= 2 and len(runs.of("b")) >= 2)
        ticker.remove("a")
        ticker.add("b", 10.0, 0.05)
        assert "a" not in ticker and ticker.interval("b") == 10.0 and len(ticker) == 1
        seen_a, seen_b = len(runs.of("a")), len(runs.of("b"))
        await until(lambda: len(runs.of("b")) >= seen_b + 1)
        await asyncio.sleep(0.5)
    finally:
        ticker.shutdown()
    assert len(runs.of("a")) == seen_a
    assert len(runs.of("b")) == seen_b + 1  # next one only in 10 s


async def test_a_failing_job_keeps_its_schedule() -> None:
    runs = Runs(fail=True)
    ticker = Ticker(runs.run, runs.skip)
    ticker.add("a", 0.1, 0.0)
    ticker.start()
    try:
        await until(lambda: len(runs.runs) >= 3)
    finally:
        ticker.shutdown()
    assert runs.skipped == []


async def test_shutdown_cancels_runs_in_progress_and_stops_the_timer() -> None:
    runs = Runs(hold=30.0)
    ticker = Ticker(runs.run, runs.skip)
    ticker.add("a", 0.1, 0.0)
    ticker.start()
    await until(lambda: runs.active == 1)
    ticker.shutdown()
    await until(lambda: runs.active == 0)  # cancelled, not left hanging for 30 s
    count = len(runs.runs)
    await asyncio.sleep(0.3)
    assert len(runs.runs) == count and not ticker.running


async def test_jobs_added_before_start_wait_for_it() -> None:
    runs = Runs()
    ticker = Ticker(runs.run, runs.skip)
    ticker.add("a", 0.1, 0.0)
    await asyncio.sleep(0.3)
    assert runs.runs == []
    ticker.start()
    try:
        await until(lambda: len(runs.runs) >= 1)
    finally:
        ticker.shutdown()
    assert runs.runs[0][3] >= 1  # the intervals it waited are missed runs, not silence


def _config(url: str, timeout: str) -> Config:
    return Config.model_validate({
        "defaults": {"interval": "1s", "timeout": timeout, "retry_interval": "1s"},
        "systems": [{"id": "his", "name": "HIS"}],
        "checks": [{"id": "his-web", "system": "his", "type": "http", "url": url}],
    })


async def test_the_scheduler_counts_a_probe_that_outlasts_its_interval(
        http_target: HttpTarget) -> None:
    """End to end through `Scheduler`: a real HTTP target that answers after 2.5 s, probed
    every second: never two probes at once, each skipped run counted in `missed_runs`."""
    http_target.delay = 2.5
    states: dict[str, CheckState] = {}
    source = MetricsSource()
    source.states = states
    metrics = Metrics(lambda: source)
    ctx = ProbeContext()
    scheduler = Scheduler(_config(http_target.url, "5s"), ctx, states, metrics,
                          lambda s: None)
    scheduler.start()
    try:
        await until(lambda: "his-web" in states and states["his-web"].missed_runs >= 2, 30)
        await until(lambda: states["his-web"].probed, 30)
    finally:
        scheduler.shutdown()
        await ctx.close()
    assert states["his-web"].state.name == "OK", states["his-web"].message
    # one probe in flight at a time: the target saw no more probes than 1 per 2.5 s
    assert http_target.hits <= 2
    assert 0.0 <= spread_offset("his-web", 1.0) < 1.0


def test_the_offset_grid_holds_about_ten_runs_a_slot() -> None:
    """The runs of a slot share one wake-up of the loop: 1,000 runs/s on a 10 ms grid, 500 on
    20 ms, 250 on 40 ms; never finer than 10 ms nor coarser than 100 ms; offsets stay inside
    the interval."""
    assert (spread_slot(1000), spread_slot(500), spread_slot(250)) == (0.01, 0.02, 0.04)
    assert (spread_slot(100_000), spread_slot(5), spread_slot(0)) == (
        SPREAD_SLOT, MAX_SLOT, MAX_SLOT)
    for i in range(500):
        offset = spread_offset(f"check-{i}", 10.0, 0.04)
        assert 0.0 <= offset <= 10.0 - 0.04
        assert abs(offset / 0.04 - round(offset / 0.04)) < 1e-6
    assert spread_offset("his-web", 0.02, 0.04) < 0.02  # an interval shorter than a slot


def test_the_scheduler_puts_its_checks_on_the_grid_of_its_rate() -> None:
    """1,000 checks at 10 s are 100 runs/s: a 100 ms grid, so at most 100 distinct due times
    (and far more than one: still spread over the interval)."""
    config = Config.model_validate({
        "defaults": {"interval": "10s", "timeout": "2s"},
        "systems": [{"id": "his", "name": "HIS"}],
        "checks": [{"id": f"t{i}", "system": "his", "type": "tcp", "host": "127.0.0.1",
                    "port": 9} for i in range(1000)],
    })
    source = MetricsSource()
    scheduler = Scheduler(config, ProbeContext(), {}, Metrics(lambda: source), lambda s: None)
    scheduler.apply_config(config)  # jobs wait for start(): nothing runs
    dues = {round(job.due, 6) for job in scheduler._ticker._jobs.values()}
    assert 50 <= len(dues) <= 100
