"""MySQL/MariaDB check against the real MariaDB on this machine.

Settings: HISMON_TEST_MYSQL_HOST (127.0.0.1), HISMON_TEST_MYSQL_PORT (3306),
HISMON_TEST_MYSQL_USER (root), HISMON_TEST_MYSQL_PASSWORD (empty),
HISMON_TEST_MYSQL_DATABASE (test).
"""

from __future__ import annotations

import os
import socket
from urllib.parse import quote

import pytest

from monitor.core.result import State
from tests.probe_helpers import closed_port, make_check, probe, silent, tcp_server

HOST = os.environ.get("HISMON_TEST_MYSQL_HOST", "127.0.0.1")
PORT = int(os.environ.get("HISMON_TEST_MYSQL_PORT", "3306"))
USER = os.environ.get("HISMON_TEST_MYSQL_USER", "root")
PASSWORD = os.environ.get("HISMON_TEST_MYSQL_PASSWORD", "")
DATABASE = os.environ.get("HISMON_TEST_MYSQL_DATABASE", "test")
WHERE = f"{HOST}:{PORT}"
WRONG = "Wr0ng-pass-xyz"


def _reachable() -> bool:
    try:
        with socket.create_connection((HOST, PORT), 2):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not _reachable(),
    reason=f"MariaDB/MySQL not reachable at {WHERE} (start it, or set HISMON_TEST_MYSQL_*)",
)


def my(query: str = "SELECT 1", **extra: object) -> dict[str, object]:
    data: dict[str, object] = {
        "type": "mysql", "host": HOST, "port": PORT, "user": USER, "password": PASSWORD,
        "database": DATABASE, "query": query, "timeout": "3s",
    }
    data.update(extra)
    return data


def dsn(scheme: str = "mysql", password: str = PASSWORD, database: str = DATABASE,
        port: int = PORT) -> str:
    auth = f"{quote(USER)}:{quote(password)}@" if password else f"{quote(USER)}@"
    return f"{scheme}://{auth}{HOST}:{port}/{database}"


async def test_a_healthy_server_is_ok() -> None:
    result = await probe(my())
    assert result.state is State.OK, result.message
    assert result.message.startswith("query returned 1 in ")
    assert result.numbers["connect_seconds"] > 0


@pytest.mark.parametrize("scheme", ["mysql", "mariadb"])
async def test_a_dsn_works_with_both_schemes(scheme: str) -> None:
    result = await probe({"type": "mysql", "dsn": dsn(scheme) + "?charset=utf8mb4",
                          "query": "select version()"})
    assert result.state is State.OK, result.message
    assert result.message.startswith('query returned "')


async def test_connection_usage_over_the_limit_is_a_capacity_alarm() -> None:
    query = "select count(*)*100/@@max_connections from information_schema.processlist"
    ok = await probe(my(query, value={"warn": 80, "crit": 90}))
    assert ok.state is State.OK, ok.message
    used = ok.numbers["value"]
    assert 0 < used < 80
    crit = await probe(my(query, value={"crit": used / 2}))
    assert crit.state is State.CRIT
    assert crit.message.startswith("query returned ")
    assert "above CRIT limit" in crit.message
    assert crit.cause == "capacity"


async def test_a_wrong_password_is_a_login_failure_without_the_password() -> None:
    result = await probe(my(password=WRONG))
    assert result.state is State.UNKNOWN
    assert result.message.startswith(f"login failed for user {USER} on {WHERE}: Access denied")
    assert result.cause == "database"
    assert WRONG not in result.message


async def test_a_wrong_password_in_a_dsn_is_not_shown_either() -> None:
    result = await probe({"type": "mysql", "dsn": dsn(password=WRONG)})
    assert result.state is State.UNKNOWN
    assert WRONG not in result.message


async def test_a_missing_database_is_critical() -> None:
    result = await probe(my(database="no_such_db"))
    assert result.state is State.CRIT
    assert result.message == f"Unknown database 'no_such_db' ({WHERE})"
    assert result.cause == "database"


async def test_a_refused_port_is_a_network_failure() -> None:
    port = closed_port()
    result = await probe(my(port=port))
    assert result.state is State.CRIT
    assert result.message == f"connection refused {HOST}:{port}"
    assert result.cause == "network"


async def test_a_query_error_says_what_failed() -> None:
    result = await probe(my("select * from no_such_table"))
    assert result.state is State.CRIT
    assert result.message == (f"query failed on {WHERE}: Table '{DATABASE}.no_such_table' "
                              "doesn't exist (error 1146)")
    assert result.cause == "database"


async def test_a_slow_query_times_out_naming_the_query_phase() -> None:
    result = await probe(my("select sleep(10)", timeout="1s"))
    assert result.state is State.CRIT
    assert result.message.startswith(f"query on {WHERE} did not finish within")


async def test_a_server_that_never_greets_times_out_while_logging_in() -> None:
    async with tcp_server(silent) as port:
        result = await probe(my(port=port, timeout="1s"))
    assert result.state is State.CRIT
    assert "logging in" in result.message
    assert result.cause == "network"


def test_unknown_dsn_parameters_are_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        make_check({"type": "mysql", "dsn": "mysql://u:pw@h/db?sslmode=require"})
    assert "parameter 'sslmode' is not supported" in str(info.value)


def test_a_missing_driver_is_a_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.probe_helpers import assert_missing_driver_is_a_config_error

    assert_missing_driver_is_a_config_error(monkeypatch, my(), "aiomysql", "mysql")


def test_a_bad_charset_is_a_validation_error_not_a_traceback() -> None:
    """It was an AttributeError from the driver, and a stray traceback on stderr."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        make_check({"type": "mysql", "dsn": "mysql://u:pw@127.0.0.1/db?charset=klingon"})
    assert "`dsn` charset 'klingon' is not a MySQL character set (e.g. utf8mb4)" in str(
        info.value)
    make_check({"type": "mysql", "dsn": "mysql://u:pw@127.0.0.1/db?charset=latin1"})
