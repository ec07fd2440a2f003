"""SQL Server check, error paths only: SQL Server cannot run on this machine.

What is tested against real sockets on 127.0.0.1: a closed port, a listener that closes at
once, one that answers garbage, one that never answers, and a minimal fake TDS server that
answers PRELOGIN and then refuses the LOGIN7 with a genuine TDS ERROR token (18456 login
failed, 4060 cannot open database), so the driver's own parsing and our classification are
exercised. A real login and query are covered by the shared SQL code tested with
PostgreSQL and MariaDB.
"""

from __future__ import annotations

import asyncio
import struct

import pytest

from monitor.core.result import State
from tests.probe_helpers import (
    assert_missing_driver_is_a_config_error,
    close_at_once,
    closed_port,
    probe,
    silent,
    tcp_server,
)

SECRET = "S3cret-Mssql-pw"


def ms(port: int, **extra: object) -> dict[str, object]:
    return {"type": "mssql", "host": "127.0.0.1", "port": port, "user": "his_monitor",
            "password": SECRET, "database": "HIS", "timeout": "2s", **extra}


def tds_packet(payload: bytes) -> bytes:
    return struct.pack(">BBHHBB", 0x04, 0x01, 8 + len(payload), 0, 1, 0) + payload


def prelogin_reply() -> bytes:
    """VERSION and ENCRYPTION (not supported), as an unencrypted SQL Server answers."""
    version = struct.pack(">IH", 0x0F000000, 0)
    head_len = 11
    head = (struct.pack(">BHH", 0, head_len, len(version))
            + struct.pack(">BHH", 1, head_len + len(version), 1) + b"\xff")
    return tds_packet(head + version + b"\x02")


def error_reply(number: int, text: str) -> bytes:
    """An ERROR token (0xAA) followed by DONE with the error bit."""
    def b_varchar(value: str) -> bytes:
        return bytes([len(value)]) + value.encode("utf-16-le")

    body = (struct.pack("<IBB", number, 1, 14)
            + struct.pack("<H", len(text)) + text.encode("utf-16-le")
            + b_varchar("FAKESQL") + b_varchar("") + struct.pack("<I", 1))
    token = b"\xaa" + struct.pack("<H", len(body)) + body
    return tds_packet(token + b"\xfd" + struct.pack("<HHQ", 0x0002, 0, 0))


async def read_packet(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(8)
    length = struct.unpack(">H", header[2:4])[0]
    return header + await reader.readexactly(length - 8)


def refusing_login(number: int, text: str):  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert (await read_packet(reader))[0] == 0x12  # PRELOGIN
        writer.write(prelogin_reply())
        await writer.drain()
        assert (await read_packet(reader))[0] == 0x10  # LOGIN7
        writer.write(error_reply(number, text))
        await writer.drain()
        await reader.read(1)

    return handler


async def test_a_closed_port_is_refused_at_once() -> None:
    """The driver would retry until its login timeout; we say `connection refused` now."""
    port = closed_port()
    result = await probe(ms(port))
    assert result.state is State.CRIT
    assert result.message == f"connection refused 127.0.0.1:{port}"
    assert result.cause == "network"
    assert result.duration < 0.5


async def test_a_failed_login_is_reported_without_the_password() -> None:
    handler = refusing_login(18456, "Login failed for user 'his_monitor'.")
    async with tcp_server(handler) as port:
        result = await probe(ms(port))
    assert result.state is State.UNKNOWN
    assert result.message == (f"login failed for user his_monitor on 127.0.0.1:{port}: "
                              "Login failed for user 'his_monitor'.")
    assert result.cause == "database"
    assert SECRET not in result.message


async def test_a_database_that_cannot_be_opened_is_critical() -> None:
    text = 'Cannot open database "HIS" requested by the login. The login failed.'
    async with tcp_server(refusing_login(4060, text)) as port:
        result = await probe({"type": "mssql",
                              "dsn": f"mssql://his_monitor:{SECRET}@127.0.0.1:{port}/HIS",
                              "timeout": "1s"})
    assert result.state is State.CRIT
    assert result.message == f"{text} (127.0.0.1:{port})"
    assert result.cause == "database"


async def test_a_listener_that_speaks_garbage() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\n" * 8)
        await writer.drain()

    async with tcp_server(garbage) as port:
        result = await probe(ms(port))
    assert result.state is State.CRIT
    assert result.message.startswith(f"127.0.0.1:{port} does not speak the SQL Server protocol")


async def test_a_listener_that_closes_at_once() -> None:
    async with tcp_server(close_at_once) as port:
        result = await probe(ms(port))
    assert result.state is State.CRIT
    assert f"127.0.0.1:{port}" in result.message
    assert result.cause in ("database", "network")


async def test_a_listener_that_never_answers_times_out_while_logging_in() -> None:
    async with tcp_server(silent) as port:
        result = await probe(ms(port, timeout="1s"))
    assert result.state is State.CRIT
    assert result.message.startswith(f"no answer from 127.0.0.1:{port} within")
    assert "logging in" in result.message
    assert result.duration < 1.5


def test_a_missing_driver_is_a_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert_missing_driver_is_a_config_error(monkeypatch, ms(1433), "pytds", "mssql")
