"""Overload shows as lag and missed runs, never as hismon exhausting its own descriptors.

The probes in flight are capped by what the descriptor limit leaves (monitor/core/exhaustion.py
`probe_budget`, monitor/probing/slots.py). Everything here is real: asyncio, loopback
listeners that accept at once and answer after a delay (slow but healthy), and the daemon in
a child whose RLIMIT_NOFILE is 256.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from checks.base import ProbeContext
from monitor.config.model import Config
from monitor.core.exhaustion import (
    FD_MARGIN,
    FDS_PER_NOTIFIER,
    FDS_PER_PROBE,
    MIN_PROBES,
    RESERVED_FDS,
    probe_budget,
)
from monitor.probing.scheduler import Scheduler
from monitor.probing.slots import ProbeSlots
from monitor.probing.state import CheckState
from monitor.telemetry.metrics import Metrics, MetricsSource
from monitor.web.server import backlog, connection_limit
from tests.conftest import free_port
from tests.test_exhaustion import FD_LIMIT, HoggedDaemon

# ---- the budget ----------------------------------------------------------------------------


def test_the_budget_is_what_the_limit_leaves_after_store_notifiers_and_http() -> None:
    assert probe_budget(65536, 4, 0, 512, 64) == (65536 - 128 - 4 - 512 - 64 - 8) // 2
    # every term costs probes: a store connection, a notifier, an HTTP connection
    base = probe_budget(20000, 4, 2, 8, 64)
    assert probe_budget(20000, 24, 2, 8, 64) == base - 10
    assert probe_budget(20000, 4, 12, 8, 64) == base - 10
    assert probe_budget(20000, 4, 2, 28, 64) == base - 10
    assert probe_budget(20000, 4, 2, 8, 84) == base - 10
    # a limit too low for anything still probes a little
    assert probe_budget(64, 4, 2, 8, 8) == MIN_PROBES


def test_probes_and_http_clients_together_stay_within_the_limit() -> None:
    """At the daemon's figures (the HTTP cap first, then the probes' budget from what is left)
    the worst case of both at once leaves the margin below the limit."""
    for fd_limit, checks, notifiers, store in itertools.product(
            (256, 1024, 4096, 20000, 65536), (1, 50, 600, 10_000, 50_000), (0, 3, 20),
            (4, 16)):
        connections = connection_limit(fd_limit, checks)
        accept = backlog(fd_limit, checks)
        cap = probe_budget(fd_limit, store, notifiers, connections, accept)
        used = (RESERVED_FDS + store + FDS_PER_NOTIFIER * notifiers + connections + accept
                + FDS_PER_PROBE * cap)
        if cap > MIN_PROBES:
            assert used <= fd_limit - FD_MARGIN, (fd_limit, checks, notifiers, store, cap)
            assert used > fd_limit - FD_MARGIN - FDS_PER_PROBE, "nothing left unused"


# ---- the slots ------------------------------------------------------------------------------


async def test_slots_cap_the_probes_and_hand_over_in_order() -> None:
    slots = ProbeSlots(2)
    assert slots.take() and slots.take()
    assert not slots.take()
    order: list[int] = []

    async def waiter(n: int) -> None:
        await slots.wait()
        order.append(n)

    tasks = [asyncio.create_task(waiter(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert slots.waiting == 3 and slots.in_flight == 2
    slots.release()
    await asyncio.sleep(0)
    assert order == [0] and slots.in_flight == 2, "handed over, still counted"
    assert not slots.take(), "a new probe does not overtake those waiting"
    slots.release()
    slots.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2] and slots.in_flight == 2 and slots.waiting == 0
    slots.release()
    slots.release()
    assert slots.in_flight == 0 and slots.take()


async def test_a_cancelled_waiter_neither_keeps_nor_loses_a_slot() -> None:
    slots = ProbeSlots(1)
    assert slots.take()
    cancelled = asyncio.create_task(slots.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await cancelled
    assert slots.waiting == 0
    # handed over, then cancelled before it ran: the slot goes to the next one
    handed = asyncio.create_task(slots.wait())
    nxt = asyncio.create_task(slots.wait())
    await asyncio.sleep(0)
    slots.release()
    handed.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await handed
    await asyncio.wait_for(nxt, 5)
    assert slots.in_flight == 1 and slots.waiting == 0
    slots.release()
    assert slots.in_flight == 0 and slots.take()


async def test_a_higher_limit_starts_those_waiting() -> None:
    slots = ProbeSlots(1)
    assert slots.take()
    waiters = [asyncio.create_task(slots.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    slots.set_limit(3)
    await asyncio.wait_for(asyncio.gather(*waiters[:2]), 5)
    assert slots.in_flight == 3 and slots.waiting == 1
    slots.set_limit(1)  # lower: slots given back are freed until under it
    for _ in range(3):
        slots.release()
    await asyncio.wait_for(waiters[2], 5)
    assert slots.in_flight == 1
    slots.release()
    assert slots.in_flight == 0


# ---- slow, healthy targets ------------------------------------------------------------------


class SlowBanner:
    """A loopback TCP server that accepts at once and sends its banner after `delay` s;
    counts the connections open at once."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.open = 0
        self.most_open = 0
        self.served = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await asyncio.sleep(self.delay)
            writer.write(b"READY\r\n")
            with contextlib.suppress(OSError):
                await writer.drain()
            self.served += 1
        finally:
            self.open -= 1
            writer.close()


@contextlib.asynccontextmanager
async def slow_banner(delay: float) -> AsyncIterator[SlowBanner]:
    target = SlowBanner(delay)
    server = await asyncio.start_server(target.handle, "127.0.0.1", 0, backlog=1024)
    target.port = server.sockets[0].getsockname()[1]
    try:
        yield target
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)


async def until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def test_waiting_for_a_slot_is_lag_never_a_timeout() -> None:
    """Six checks through two slots to a target that answers after 0.4 s, with a 1 s timeout:
    the last ones wait ~0.8 s and probe for 0.4 s (1.2 s after they were due), yet all are OK:
    the timeout starts when the probe does. The target never sees more than two at once."""
    async with slow_banner(0.4) as target:
        config = Config.model_validate({
            "defaults": {"interval": "1h", "timeout": "1s"},
            "systems": [{"id": "his", "name": "HIS"}],
            "checks": [{"id": f"tcp-{n}", "system": "his", "type": "tcp",
                        "host": "127.0.0.1", "port": target.port, "expect": "READY"}
                       for n in range(6)],
        })
        states: dict[str, CheckState] = {}
        source = MetricsSource()
        source.states = states
        metrics = Metrics(lambda: source)
        ctx = ProbeContext()
        scheduler = Scheduler(config, ctx, states, metrics, lambda s: None)
        scheduler.slots.set_limit(2)
        scheduler.apply_config(config)  # states and jobs, the ticker not started
        try:
            await asyncio.wait_for(scheduler.run_now([c.id for c in config.checks]), 30)
        finally:
            scheduler.shutdown()
            await ctx.close()
    assert {s.state.name for s in states.values()} == {"OK"}, \
        [s.message for s in states.values()]
    assert target.most_open == 2 and target.served == 6
    assert scheduler.slots.in_flight == 0
    lag = metrics.scheduler_lag.collect()[0]
    total = next(s.value for s in lag.samples if s.name.endswith("_sum"))
    assert total >= 2 * 0.4, "those that waited for a slot started late, and it shows"


# ---- the real daemon under RLIMIT_NOFILE 256 ------------------------------------------------

CHECKS = 200
DELAY = 1.0


def _metric(metrics: str, name: str) -> float:
    lines = [line for line in metrics.splitlines() if line.startswith(name + " ")]
    assert lines, f"{name} missing"
    return float(lines[0].split()[-1])


@pytest.mark.slow
async def test_the_daemon_with_more_slow_checks_than_descriptors_waits_and_pages_nobody(
        tmp_path: Path) -> None:
    """200 TCP checks every 2 s against a healthy target that answers after 1 s, in a daemon
    limited to 256 descriptors: ~100 probes would be in flight at once, more than the cap the
    limit leaves (~24). The target never sees more than the cap, every check stays OK (no
    UNKNOWN from exhaustion, no CRIT, no incident); the waiting shows as lag and missed runs,
    and the metrics show the cap."""
    async with slow_banner(DELAY) as target:
        port = free_port()
        checks = "\n".join(
            f'  - {{id: tcp-{n}, system: his, type: tcp, host: "127.0.0.1", '
            f'port: {target.port}, expect: READY}}' for n in range(CHECKS))
        text = f"""
site: {{name: Test Hospital, timezone: Asia/Shanghai, language: en}}
server: {{listen: "127.0.0.1:{port}"}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 2s, timeout: 3s, retry_interval: 500ms, confirm: 2, recover: 1}}
systems: [{{id: his, name: HIS}}]
checks:
{checks}
"""
        daemon = HoggedDaemon(text, tmp_path, port)
        await daemon.start()
        seen: set[str] = set()
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        try:
            async with httpx.AsyncClient(trust_env=False, limits=limits, timeout=10) as api:

                async def scrape() -> str:
                    return (await api.get(f"{daemon.url}/metrics")).text

                async def probed_all() -> bool:
                    entries = (await api.get(f"{daemon.url}/api/v1/checks")).json()["checks"]
                    seen.update(f"{e['state']}: {e['message']}" for e in entries
                                if e["state"] != "OK")
                    return all(e["last_run"] for e in entries) and len(entries) == CHECKS

                deadline = time.monotonic() + 90
                while not await probed_all():
                    assert time.monotonic() < deadline, daemon.log()[-3000:]
                    await asyncio.sleep(0.5)
                # several rounds more: each takes ~CHECKS × DELAY / cap seconds
                rounds_until = time.monotonic() + 12
                most_in_flight = 0.0
                while time.monotonic() < rounds_until:
                    metrics = await scrape()
                    most_in_flight = max(most_in_flight,
                                         _metric(metrics, "hismon_probes_in_flight"))
                    await probed_all()
                    await asyncio.sleep(0.5)
                metrics = await scrape()
                incidents = (await api.get(f"{daemon.url}/api/v1/incidents")).json()
        finally:
            daemon.kill()
    cap = _metric(metrics, "hismon_probes_in_flight_limit")
    assert MIN_PROBES < cap < CHECKS * DELAY / 2, "~100 would be in flight without the cap"
    assert cap == probe_budget(FD_LIMIT, 4, 0, connection_limit(FD_LIMIT, CHECKS),
                               backlog(FD_LIMIT, CHECKS))
    assert 0 < most_in_flight <= cap
    assert target.most_open <= cap, (target.most_open, cap)
    assert not seen, sorted(seen)[:5]
    assert incidents["incidents"] == []
    assert 'result="CRIT"' not in metrics and 'result="UNKNOWN"' not in metrics
    assert _metric(metrics, 'hismon_probe_resource_errors_total{resource="fd"}') == 0
    missed = sum(float(line.split()[-1]) for line in metrics.splitlines()
                 if line.startswith("hismon_check_missed_runs_total{"))
    assert missed > CHECKS, "the runs that came due while the last one waited are counted"
    lag_over_1s = _metric(metrics, "hismon_scheduler_lag_seconds_count") - _metric(
        metrics, 'hismon_scheduler_lag_seconds_bucket{le="1.0"}')
    assert lag_over_1s > 0, "waiting for a slot shows as lag"
    assert "probe_own_fault" not in daemon.log()
