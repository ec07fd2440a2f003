"""DICOM C-ECHO check against real pynetdicom servers on 127.0.0.1.

Servers: a PACS stand-in with the Verification SCP and a fixed AE title (it rejects a
wrong called AE title, or an unknown calling AE), one that offers only a storage service
(no C-ECHO), and plain TCP listeners that never answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from monitor.core.result import State
from tests.probe_helpers import (
    assert_missing_driver_is_a_config_error,
    closed_port,
    make_check,
    probe,
    silent,
    tcp_server,
)


@pytest.fixture
def pacs_factory() -> Iterator[Any]:
    servers: list[Any] = []

    def start(ae_title: str = "PACS", contexts: tuple[str, ...] = (Verification,),
              calling: list[str] | None = None) -> int:
        ae = AE(ae_title=ae_title)
        for context in contexts:
            ae.add_supported_context(context)
        ae.require_called_aet = True
        if calling:
            ae.require_calling_aet = calling
        server = ae.start_server(("127.0.0.1", 0), block=False)
        servers.append(server)
        return int(server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()


def echo(port: int, **extra: object) -> dict[str, object]:
    return {"type": "dicom", "host": "127.0.0.1", "port": port, "calling_ae": "HISMON",
            "called_ae": "PACS", "timeout": "3s", **extra}


async def test_a_c_echo_is_ok(pacs_factory: Any) -> None:
    port = pacs_factory()
    result = await probe(echo(port))
    assert result.state is State.OK, result.message
    assert result.message.startswith(f"C-ECHO to PACS at 127.0.0.1:{port} in ")
    assert result.numbers["latency_seconds"] > 0


async def test_a_wrong_called_ae_title_is_rejected_with_the_reason(pacs_factory: Any) -> None:
    port = pacs_factory()
    result = await probe(echo(port, called_ae="PACS_OLD"))
    assert result.state is State.CRIT
    assert result.message.startswith(
        f"127.0.0.1:{port} rejected the association from HISMON to PACS_OLD: "
        "Called AE title not recognised")
    assert result.cause == "application"


async def test_an_unknown_calling_ae_is_rejected(pacs_factory: Any) -> None:
    port = pacs_factory(calling=["WORKSTATION1"])
    result = await probe(echo(port))
    assert result.state is State.CRIT
    assert "Calling AE title not recognised" in result.message


async def test_a_peer_without_verification_is_reported(pacs_factory: Any) -> None:
    port = pacs_factory(contexts=(CTImageStorage,))
    result = await probe(echo(port))
    assert result.state is State.CRIT
    assert result.message == (f"127.0.0.1:{port} aborted the association: "
                              "the Verification service (C-ECHO) is not offered")


async def test_a_closed_port_is_refused() -> None:
    port = closed_port()
    result = await probe(echo(port))
    assert result.state is State.CRIT
    assert result.message == f"connection refused 127.0.0.1:{port}"
    assert result.cause == "network"


async def test_a_listener_that_never_answers_times_out_clearly() -> None:
    async with tcp_server(silent) as port:
        result = await probe(echo(port, timeout="1s"))
    assert result.state is State.CRIT
    assert result.message.startswith(f"connected to 127.0.0.1:{port}, but no DICOM answer")
    assert result.duration < 1.5


def test_ae_titles_are_validated() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="invalid AE title"):
        make_check(echo(104, called_ae="A_TITLE_THAT_IS_TOO_LONG"))
    with pytest.raises(ValidationError, match="invalid AE title"):
        make_check(echo(104, calling_ae="BAD\\AE"))


def test_a_missing_driver_is_a_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert_missing_driver_is_a_config_error(monkeypatch, echo(104), "pynetdicom", "dicom")


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, then close at once (a PACS refusing this host at the socket level)."""
    writer.close()


async def test_a_peer_that_closes_at_once_is_not_reported_as_a_timeout() -> None:
    """It read "no DICOM answer within 2s" after 10 ms; now it says the peer hung up."""
    async with tcp_server(hang_up) as port:
        result = await probe(echo(port))
    assert result.state is State.CRIT
    assert result.message.startswith(
        f"127.0.0.1:{port} closed the connection without a DICOM answer to the association "
        "request (after "), result.message
    assert "within" not in result.message and result.duration < 1.5
