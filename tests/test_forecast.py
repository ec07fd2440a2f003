"""Forecasts: a least-squares line through a number's samples warns before CRIT is reached.

The end-to-end test runs the real daemon (no HTTP) on a fake clock, probing a real
PostgreSQL query whose value the test raises step by step; a restart keeps the trend.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from monitor.config.model import Config
from monitor.core.result import Result, State
from monitor.probing.forecast import MAX_SAMPLES, Forecasts, figure, fit, until
from monitor.runtime.daemon import Daemon
from tests.conftest import Clock
from tests.probe_helpers import make_check
from tests.test_check_postgres import PG_DSN, _reachable

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2027, 1, 15, 12, 50, tzinfo=SHANGHAI).timestamp()
STEP = 20 * 60.0
RATE = 2.1 / 3600  # percent per second: 2.1 %/h


def tablespace(**forecast: Any) -> Any:
    return make_check({
        "type": "postgres", "name": "tablespace", "dsn": "postgresql://h/db", "query": "select 1",
        "interval": "20m", "value": {"warn": 88, "crit": 90},
        "forecast": {"number": "value", "window": "6h", "warn_within": "2h", "unit": "%",
                     **forecast}})


def climbing(forecasts: Forecasts, check: Any, count: int, end: float = NOW,
             end_value: float = 86.5) -> Result:
    result = Result(State.OK, "query returned")
    for i in range(count):
        at = end - (count - 1 - i) * STEP
        value = end_value - (end - at) * RATE
        result = forecasts.observe(check, Result(State.OK, f"query returned {value:g}",
                                                 numbers={"value": value}), at)
    return result


def tracked(check: Any) -> Forecasts:
    forecasts = Forecasts(SHANGHAI)
    forecasts.apply_config([check])
    return forecasts


def test_the_warning_says_rate_limit_and_when() -> None:
    check = tablespace()
    result = climbing(tracked(check), check, 12)
    assert result.state is State.WARN
    assert result.message == ("tablespace 86.5% rising 2.1%/h: reaches CRIT 90% at 14:30 "
                              "(in 1h40m)")
    assert result.cause == "capacity"
    assert result.numbers["forecast_seconds_to_crit"] == pytest.approx(100 * 60, abs=1)


def test_fewer_than_ten_samples_or_half_a_window_say_nothing() -> None:
    check = tablespace()
    assert climbing(tracked(check), check, 9).state is State.OK
    short = tablespace(window="12h")  # 12 samples span 3h40m: less than half of 12h
    assert climbing(tracked(short), short, 12).state is State.OK


def test_a_limit_further_away_than_warn_within_is_fine() -> None:
    check = tablespace(warn_within="1h")
    assert climbing(tracked(check), check, 12).state is State.OK


def test_a_falling_number_warns_against_a_downward_threshold() -> None:
    check = make_check({
        "type": "postgres", "dsn": "postgresql://h/db", "query": "select 1", "interval": "20m",
        "value": {"warn": 20, "crit": 10, "below": True},
        "forecast": {"number": "value", "window": "6h", "warn_within": "3h",
                     "label": "free space", "unit": " GB"}})
    forecasts = tracked(check)
    result = Result(State.OK, "")
    for i in range(12):
        at = NOW - (11 - i) * STEP
        result = forecasts.observe(check, Result(State.OK, "", numbers={"value": 40 - 3 * i}),
                                   at)
    assert result.state is State.WARN
    assert result.message.startswith("free space 7 GB falling 9 GB/h: reaches CRIT 10 GB at ")
    rising = tracked(check)  # the same data upside down moves away from the limit
    for i in range(12):
        rising.observe(check, Result(State.OK, "", numbers={"value": 40 + 3 * i}),
                       NOW - (11 - i) * STEP)
    assert rising.observe(check, Result(State.OK, "", numbers={"value": 80}),
                          NOW + STEP).state is State.OK


def test_a_warning_already_there_gets_the_forecast_and_crit_is_left_alone() -> None:
    check = tablespace()
    forecasts = tracked(check)
    climbing(forecasts, check, 11, end=NOW - STEP, end_value=86.5 - 0.7)
    warned = forecasts.observe(check, Result(State.WARN, "query returned 88.5 above WARN",
                                             numbers={"value": 86.5}), NOW)
    assert warned.state is State.WARN
    assert warned.message.startswith("query returned 88.5 above WARN; tablespace 86.5% rising")
    crit = forecasts.observe(check, Result(State.CRIT, "above CRIT", numbers={"value": 91}),
                             NOW + STEP)
    assert (crit.state, crit.message) == (State.CRIT, "above CRIT")


def test_one_sample_per_interval_at_most_and_bounded() -> None:
    check = tablespace()
    forecasts = tracked(check)
    for i in range(5):  # retries at retry_interval within one interval
        forecasts.observe(check, Result(State.OK, "", numbers={"value": 80.0 + i}), NOW + i * 5)
    assert forecasts.samples(check.id) == [(NOW, 80.0)]
    week = make_check({**tablespace(window="7d").model_dump(exclude_none=True),
                       "interval": "1m"})  # a sample every 10 minutes, not every minute
    forecasts = tracked(week)
    spacing = 7 * 86400 / MAX_SAMPLES
    for i in range(MAX_SAMPLES + 50):
        forecasts.observe(week, Result(State.OK, "", numbers={"value": 1.0}),
                          NOW + i * spacing)
    assert len(forecasts.samples(week.id)) == MAX_SAMPLES
    rows, keep = forecasts.take_pending()
    assert len(rows) == MAX_SAMPLES + 50
    assert keep[week.id] == pytest.approx(NOW + (MAX_SAMPLES + 49) * spacing - 7 * 86400)


def test_a_forecast_needs_a_crit_threshold_on_its_number() -> None:
    with pytest.raises(ValidationError, match="no CRIT threshold on 'value'"):
        make_check({"type": "postgres", "dsn": "postgresql://h/db", "query": "select 1",
                    "forecast": {"number": "value", "window": "6h", "warn_within": "2h"}})
    with pytest.raises(ValidationError, match="no CRIT threshold on 'rows'"):
        tablespace(number="rows")
    latency = make_check({"type": "http", "url": "http://h/", "expect": {"latency": {
        "warn": "1s", "crit": "3s"}}, "forecast": {"number": "latency_seconds", "window": "1h",
                                                  "warn_within": "30m"}})
    assert latency.crit_limit("latency_seconds") == (3.0, True)


def test_the_least_squares_line_and_the_figures() -> None:
    slope, level = fit([(0.0, 1.0), (10.0, 3.0), (20.0, 5.0)], now=20.0)
    assert (slope, level) == (pytest.approx(0.2), pytest.approx(5.0))
    assert [figure(x) for x in (81.0, 2.1, 0.0123, 12345.0, 86.5)] == [
        "81", "2.1", "0.0123", "12345", "86.5"]
    assert [until(s) for s in (45 * 60, 100 * 60, 7200, 27 * 3600 + 60)] == [
        "45m", "1h40m", "2h", "27h01m"]


# ---- the daemon, a real PostgreSQL query, a restart ------------------------------------


@pytest.fixture
async def climbing_table() -> AsyncIterator[str]:
    if not _reachable():
        pytest.skip("PostgreSQL not reachable")
    import psycopg

    table = f"hismon_forecast_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
        await conn.execute(f"CREATE TABLE {table} (used_pct float8 NOT NULL)")
        await conn.execute(f"INSERT INTO {table} VALUES (0)")
    try:
        yield table
    finally:
        async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")


async def set_used(table: str, value: float) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
        await conn.execute(f"UPDATE {table} SET used_pct = %s", (value,))


def daemon_config(table: str, state: Path) -> Config:
    return Config.model_validate({
        "site": {"timezone": "Asia/Shanghai", "language": "en"},
        "state": {"url": f"sqlite:///{state}"},
        "defaults": {"interval": "20m", "timeout": "5s"},
        "systems": [{"id": "his-db", "name": "HIS database"}],
        "checks": [{
            "id": "his-tablespace", "system": "his-db", "type": "postgres", "name": "tablespace",
            "dsn": PG_DSN, "query": f"SELECT used_pct FROM {table}",
            "value": {"warn": 88, "crit": 90},
            "forecast": {"number": "value", "window": "6h", "warn_within": "2h", "unit": "%"},
        }],
    })




async def step(daemon: Daemon, clock: Clock, table: str, at: float, value: float) -> Any:
    clock.now = at
    await set_used(table, value)
    await daemon.scheduler.run_now(["his-tablespace"])
    return daemon.states["his-tablespace"]


async def test_a_climbing_query_warns_and_a_restart_keeps_the_trend(
        climbing_table: str, tmp_path: Path) -> None:
    os.environ.pop("HISMON_STATE_URL", None)
    config = daemon_config(climbing_table, tmp_path / "state.db")
    start = NOW - 11 * STEP
    clock = Clock(start)
    daemon = Daemon(config, clock=clock, serve_http=False)
    await daemon.start()
    try:
        for i in range(11):  # 78.8% at 09:10, +0.7% every 20 minutes
            state = await step(daemon, clock, climbing_table, start + i * STEP, 78.8 + 0.7 * i)
            assert state.state is State.OK, (i, state.message)
        await daemon._save_samples()
    finally:
        await daemon.stop()

    clock = Clock(NOW)
    restarted = Daemon(config, clock=clock, serve_http=False)
    await restarted.start()
    try:
        assert len(restarted.scheduler.forecasts.samples("his-tablespace")) == 11
        state = await step(restarted, clock, climbing_table, NOW, 78.8 + 0.7 * 11)
        assert state.state is State.WARN, state.message
        assert state.message == ("tablespace 86.5% rising 2.1%/h: reaches CRIT 90% at 14:30 "
                                 "(in 1h40m)")
    finally:
        await restarted.stop()
    from monitor.store import open_store

    store = open_store(config.state.url)
    await store.open()
    try:
        assert len((await store.load_samples())["his-tablespace"]) == 12
    finally:
        await store.close()
