"""PostgreSQL check against the real server on this machine.

Settings: HISMON_TEST_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test, trust auth).
With trust auth every password is accepted, so the login failure is provoked with a role
that does not exist (libpq reports it as an authentication failure like a bad password).
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from checks.database import scrub
from monitor.core.result import State
from tests.probe_helpers import closed_port, make_check, probe, silent, tcp_server

PG_DSN = os.environ.get("HISMON_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PG = urlsplit(PG_DSN)
WHERE = f"{PG.hostname}:{PG.port or 5432}"
SECRET = "Xy9-not-the-real-pw"


def _reachable() -> bool:
    try:
        with socket.create_connection((PG.hostname or "127.0.0.1", PG.port or 5432), 2):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not _reachable(),
    reason=f"PostgreSQL not reachable at {WHERE} (start it, or set HISMON_TEST_PG_DSN)",
)


def pg(query: str = "SELECT 1", dsn: str = PG_DSN, **extra: object) -> dict[str, object]:
    return {"type": "postgres", "dsn": dsn, "query": query, "timeout": "3s", **extra}


def dsn_with(user: str | None = None, password: str | None = None, database: str | None = None,
             port: int | None = None) -> str:
    user = user or PG.username or "postgres"
    auth = f"{user}:{password}@" if password else f"{user}@"
    db = database or PG.path.lstrip("/") or "test"
    return f"postgresql://{auth}{PG.hostname}:{port or PG.port or 5432}/{db}"


async def test_a_healthy_database_is_ok_with_timings() -> None:
    result = await probe(pg())
    assert result.state is State.OK, result.message
    assert result.message.startswith("query returned 1 in ")
    assert result.numbers["value"] == 1
    for key in ("latency_seconds", "connect_seconds", "query_seconds"):
        assert result.numbers[key] > 0


async def test_separate_keys_instead_of_a_dsn() -> None:
    """host/port/user/password/database work as well as a DSN."""
    result = await probe({
        "type": "postgres", "host": PG.hostname, "port": PG.port or 5432,
        "user": PG.username or "postgres", "password": SECRET,
        "database": PG.path.lstrip("/") or "test", "query": "select current_database()",
    })
    assert result.state is State.OK, result.message
    assert f'"{PG.path.lstrip("/") or "test"}"' in result.message


async def test_connection_usage_above_the_limit_is_a_capacity_alarm() -> None:
    """Used connections % from pg_stat_activity against `value` thresholds."""
    query = ("select count(*)*100.0/current_setting('max_connections')::int "
             "from pg_stat_activity")
    ok = await probe(pg(query, value={"warn": 80, "crit": 90}))
    assert ok.state is State.OK, ok.message
    used = ok.numbers["value"]
    assert 0 < used < 80
    crit = await probe(pg(query, value={"warn": used / 10, "crit": used / 4}))
    assert crit.state is State.CRIT
    assert " above CRIT limit " in crit.message
    assert crit.message.startswith("query returned ")
    assert crit.cause == "capacity"


async def test_replication_lag_as_an_interval_is_judged_in_seconds() -> None:
    """An interval (now() - replay timestamp) becomes seconds: 42 s lag is over WARN 30."""
    lag = "select now() - (now() - interval '42 seconds')"
    result = await probe(pg(lag, value={"warn": 30, "crit": 60}))
    assert result.state is State.WARN
    assert result.message == "query returned 42 above WARN limit 30"
    assert result.numbers["value"] == 42


async def test_below_thresholds_for_free_space() -> None:
    result = await probe(pg("select 7.5", value={"warn": 20, "crit": 10, "below": True}))
    assert result.state is State.CRIT
    assert result.message == "query returned 7.5 below CRIT limit 10"


async def test_null_cannot_be_judged() -> None:
    """A NULL (e.g. lag on a primary) is UNKNOWN with thresholds, never silently OK."""
    result = await probe(pg("select null::int", value={"crit": 10}))
    assert result.state is State.UNKNOWN
    assert "NULL" in result.message


async def test_no_rows_cannot_be_judged() -> None:
    result = await probe(pg("select 1 where false", value={"crit": 10}))
    assert result.state is State.UNKNOWN
    assert "no rows" in result.message


async def test_a_failed_login_names_the_user_and_never_the_password() -> None:
    result = await probe(pg(dsn=dsn_with(user="no_such_role", password=SECRET)))
    assert result.state is State.UNKNOWN
    assert result.message.startswith(f"login failed for user no_such_role on {WHERE}")
    assert 'role "no_such_role" does not exist' in result.message
    assert result.cause == "database"
    assert SECRET not in result.message


async def test_a_missing_database_is_critical() -> None:
    result = await probe(pg(dsn=dsn_with(database="no_such_db", password=SECRET)))
    assert result.state is State.CRIT
    assert result.message == f'database "no_such_db" does not exist ({WHERE})'
    assert result.cause == "database"
    assert SECRET not in result.message


async def test_a_refused_port_is_a_network_failure() -> None:
    port = closed_port()
    result = await probe(pg(dsn=dsn_with(port=port, password=SECRET)))
    assert result.state is State.CRIT
    assert result.message == f"connection refused {PG.hostname}:{port}"
    assert result.cause == "network"


async def test_a_query_error_says_what_failed() -> None:
    result = await probe(pg("select * from no_such_table"))
    assert result.state is State.CRIT
    assert result.message == (f'query failed on {WHERE}: relation "no_such_table" does not '
                              "exist (SQLSTATE 42P01)")
    assert result.cause == "database"


async def test_a_slow_query_times_out_naming_the_query_phase() -> None:
    result = await probe(pg("select pg_sleep(10)", timeout="1s"))
    assert result.state is State.CRIT
    assert result.message.startswith(f"query on {WHERE} did not finish within")
    assert result.duration < 1.5


async def test_a_server_that_never_answers_times_out_while_logging_in() -> None:
    async with tcp_server(silent) as port:
        result = await probe(pg(dsn=dsn_with(port=port), timeout="1s"))
    assert result.state is State.CRIT
    assert result.message.startswith(f"no answer from {PG.hostname}:{port} within")
    assert "logging in" in result.message
    assert result.cause == "network"


async def test_latency_thresholds_degrade_a_slow_answer() -> None:
    result = await probe(pg("select pg_sleep(0.3)", latency={"warn": "100ms"}))
    assert result.state is State.WARN
    assert "slow:" in result.message


def test_secrets_are_masked_in_the_public_config() -> None:
    check = make_check(pg(dsn=dsn_with(password=SECRET)))
    assert check.public_config()["dsn"] == "***"
    check = make_check({"type": "postgres", "host": "db", "password": SECRET})
    assert check.public_config()["password"] == "***"


def test_scrub_removes_passwords_from_driver_text() -> None:
    text = f"failed for postgresql://his:{SECRET}@10.1.2.3/his password={SECRET} pwd='x y'"
    cleaned = scrub(text, [SECRET])
    assert SECRET not in cleaned
    assert "postgresql://his:***@10.1.2.3/his" in cleaned
    assert "pwd=***" in cleaned


@pytest.mark.parametrize(("data", "message"), [
    ({"dsn": "mysql://u:pw@h/db"}, "`dsn` must start with postgresql:// or postgres://"),
    ({"dsn": "postgresql://u@h/db", "host": "h"}, "give either `dsn` or host, not both"),
    ({}, "give `dsn`"),
])
def test_connection_settings_are_validated(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        make_check({"type": "postgres", **data})
    shown = " ".join(error["msg"] for error in info.value.errors())  # what the loader prints
    assert message in shown
    assert "pw@" not in shown


def test_a_missing_driver_is_a_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.probe_helpers import assert_missing_driver_is_a_config_error

    assert_missing_driver_is_a_config_error(monkeypatch, pg(), "psycopg", "postgres")


@pytest.mark.parametrize(("dsn", "message"), [
    # read "DNS lookup failed" (the rest of the password taken for the host)
    ("postgresql://hismon:p@ss@127.0.0.1/test",
     "`dsn` has more than one `@` before the host: write an `@` in the user name or password "
     "as %40"),
    # read "does not speak the PostgreSQL protocol"
    ("postgresql://hismon:pw@127.0.0.1/test?colour=blue",
     '`dsn`: invalid URI query parameter: "colour"'),
])
def test_a_bad_dsn_is_a_validation_error_that_says_what_is_wrong(dsn: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        make_check({"type": "postgres", "dsn": dsn})
    shown = " ".join(error["msg"] for error in info.value.errors())
    assert message in shown
    assert "pw@" not in shown and "p@ss" not in shown
