"""Oracle check, error paths only: no Oracle database can run on this machine.

What is tested against real sockets on 127.0.0.1: a closed port, a listener that closes at
once, one that answers garbage, one that never answers, and a fake listener that answers
the connect with a genuine TNS REFUSE packet (service not registered, ORA-12514; listener
out of handlers, ORA-12519) so the thin driver's own error mapping is exercised.
A real login and query are covered by the shared SQL code tested with PostgreSQL and
MariaDB.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from pydantic import ValidationError

from monitor.core.result import State
from tests.probe_helpers import (
    assert_missing_driver_is_a_config_error,
    close_at_once,
    closed_port,
    make_check,
    probe,
    silent,
    tcp_server,
)

SECRET = "S3cret-Ora-pw"


def ora(port: int, **extra: object) -> dict[str, object]:
    return {"type": "oracle", "host": "127.0.0.1", "port": port, "user": "his_monitor",
            "password": SECRET, "database": "HISPDB", "timeout": "2s", **extra}


def tns_refuse(error: int) -> bytes:
    """A TNS REFUSE packet (type 4) as an Oracle listener sends it."""
    data = (f"(DESCRIPTION=(TMP=)(VSNNUM=0)(ERR={error})"
            f"(ERROR_STACK=(ERROR=(CODE={error})(EMFI=4))))").encode()
    body = struct.pack(">BBH", 34, 0, len(data)) + data
    return struct.pack(">HHBBH", 8 + len(body), 0, 4, 0, 0) + body


def answering(reply: bytes):  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(reply)
        await writer.drain()

    return handler


async def test_a_closed_port_is_refused() -> None:
    port = closed_port()
    result = await probe(ora(port))
    assert result.state is State.CRIT
    assert result.message == f"connection refused 127.0.0.1:{port}"
    assert result.cause == "network"


async def test_a_dsn_is_accepted_and_its_password_never_shown() -> None:
    port = closed_port()
    result = await probe({"type": "oracle",
                          "dsn": f"oracle://his_monitor:{SECRET}@127.0.0.1:{port}/HISPDB"})
    assert result.message == f"connection refused 127.0.0.1:{port}"
    assert SECRET not in result.message


async def test_a_listener_that_closes_at_once() -> None:
    async with tcp_server(close_at_once) as port:
        result = await probe(ora(port))
    assert result.state is State.CRIT
    assert result.message == ("the server closed the connection during login (DPY-4011) "
                              f"(127.0.0.1:{port})")
    assert result.cause == "database"


async def test_a_listener_that_speaks_garbage() -> None:
    async with tcp_server(answering(bytes(range(256)) * 4)) as port:
        result = await probe(ora(port))
    assert result.state is State.CRIT
    assert result.message.startswith(f"127.0.0.1:{port} does not speak the Oracle protocol")
    assert SECRET not in result.message


async def test_service_not_registered_means_the_database_is_down() -> None:
    """Listener up, instance down (ORA-12514): the classic Oracle outage, CRIT database."""
    async with tcp_server(answering(tns_refuse(12514))) as port:
        result = await probe(ora(port))
    assert result.state is State.CRIT
    assert 'Service "HISPDB" is not registered with the listener' in result.message
    assert result.cause == "database"


async def test_a_listener_out_of_handlers_is_a_capacity_problem() -> None:
    async with tcp_server(answering(tns_refuse(12519))) as port:
        result = await probe(ora(port))
    assert result.state is State.CRIT
    assert result.message.startswith(f"127.0.0.1:{port} refuses connections:")
    assert "ORA-12519" in result.message
    assert result.cause == "capacity"


async def test_a_listener_that_never_answers_times_out_while_logging_in() -> None:
    async with tcp_server(silent) as port:
        result = await probe(ora(port, timeout="1s"))
    assert result.state is State.CRIT
    assert result.message.startswith(f"no answer from 127.0.0.1:{port} within")
    assert result.duration < 1.5


def test_the_service_name_is_required() -> None:
    with pytest.raises(ValidationError) as info:
        make_check({"type": "oracle", "host": "db", "user": "u", "password": "p"})
    assert "needs the service name" in str(info.value)


def test_the_default_query_is_valid_oracle_sql() -> None:
    assert make_check(ora(1521)).query == "SELECT 1 FROM DUAL"  # type: ignore[attr-defined]


def test_a_missing_driver_is_a_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert_missing_driver_is_a_config_error(
        monkeypatch, ora(1521, timeout="5s"), "oracledb", "oracle")
