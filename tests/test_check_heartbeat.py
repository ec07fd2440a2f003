"""Heartbeat check: the probe reads pings from `ctx.heartbeats` (the API writes them there)."""

from __future__ import annotations

import time

from checks.base import ProbeContext
from checks.heartbeat import HeartbeatCheck, span
from monitor.core.result import Result, State
from tests.probe_helpers import make_check, probe

HOUR = 3600.0


def nightly(**extra: object) -> HeartbeatCheck:
    check = make_check({"id": "nightly-upload", "type": "heartbeat", "expect_every": "24h",
                        "grace": "1h", **extra})
    assert isinstance(check, HeartbeatCheck)
    return check


async def run(check: HeartbeatCheck, ping_age: float | None = None,
              started_age: float | None = None) -> Result:
    ctx = ProbeContext()
    now = time.time()
    if ping_age is not None:
        ctx.heartbeats[check.id] = now - ping_age
    if started_age is not None:
        ctx.app_state["started_at"] = now - started_age
    try:
        return await probe(check, ctx)
    finally:
        await ctx.close()


async def test_a_recent_ping_is_ok() -> None:
    result = await run(nightly(), ping_age=180, started_age=30 * HOUR)
    assert result.state is State.OK
    assert result.message == "last ping 3m ago"
    assert 179 < result.numbers["last_ping_age_seconds"] < 190


async def test_a_late_ping_within_grace_warns_first() -> None:
    result = await run(nightly(), ping_age=24.5 * HOUR)
    assert result.state is State.WARN
    assert result.message == "ping late: none for 24h 30m (expected every 24h + 1h grace)"
    assert result.cause == "application"


async def test_a_ping_missing_beyond_grace_is_critical() -> None:
    result = await run(nightly(), ping_age=26 * HOUR, started_age=100 * HOUR)
    assert result.state is State.CRIT
    assert result.message == "no ping for 26h (expected every 24h + 1h grace)"


async def test_before_the_first_ping_the_daemon_start_is_the_reference() -> None:
    waiting = await run(nightly(), started_age=10 * 60)
    assert waiting.state is State.OK
    assert waiting.message.startswith("waiting for the first ping (hismon started 10m ago")
    never = await run(nightly(), started_age=26 * HOUR)
    assert never.state is State.CRIT
    assert never.message == ("no ping for 26h since hismon started "
                             "(expected every 24h + 1h grace)")


async def test_pings_of_other_checks_do_not_count() -> None:
    check = nightly()
    ctx = ProbeContext()
    ctx.heartbeats["another-job"] = time.time()
    ctx.app_state["started_at"] = time.time() - 30 * HOUR
    try:
        assert (await probe(check, ctx)).state is State.CRIT
    finally:
        await ctx.close()


async def test_without_a_start_time_the_first_probe_is_the_reference() -> None:
    result = await run(nightly())
    assert result.state is State.OK
    assert result.message.startswith("waiting for the first ping")


async def test_a_new_ping_clears_the_alarm() -> None:
    check = nightly()
    ctx = ProbeContext()
    ctx.app_state["started_at"] = time.time() - 48 * HOUR
    try:
        assert (await probe(check, ctx)).state is State.CRIT
        ctx.heartbeats[check.id] = time.time()  # what POST /api/v1/heartbeat/{id} does
        assert (await probe(check, ctx)).state is State.OK
    finally:
        await ctx.close()


def test_default_grace_is_a_tenth_of_the_period_and_at_least_a_minute() -> None:
    assert nightly(grace=None).grace_seconds == 2.4 * HOUR
    short = make_check({"type": "heartbeat", "expect_every": "5m"})
    assert isinstance(short, HeartbeatCheck)
    assert short.grace_seconds == 60


def test_the_token_is_a_secret() -> None:
    assert nightly(token="t0ken-abc").public_config()["token"] == "***"


def test_spans_read_like_a_person_writes_them() -> None:
    assert [span(s) for s in (45, 180, 26 * HOUR, 25.5 * HOUR, 80 * HOUR)] == [
        "45s", "3m", "26h", "25h 30m", "3d 8h"]
