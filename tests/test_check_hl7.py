"""HL7 v2 / MLLP check against real MLLP servers on 127.0.0.1 built with the `hl7` package.

Servers: one that ACKs with AA, one that answers AE with an error text, one that rejects
(AR) with an ERR segment, one that never answers, one that closes without answering, and
one that acknowledges a different control id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import hl7
import hl7.mllp
import pytest

from checks.hl7 import Hl7Check, judge_ack
from monitor.core.result import State
from tests.probe_helpers import close_at_once, closed_port, make_check, probe, silent, tcp_server


class Interface:
    """An HL7 interface engine stand-in: answers each message with `answer(message)`."""

    def __init__(self, answer: Callable[[hl7.Message], hl7.Message | None],
                 encoding: str = "utf-8") -> None:
        self.answer = answer
        self.encoding = encoding
        self.received: list[hl7.Message] = []
        self.port = 0

    async def handle(self, reader: hl7.mllp.HL7StreamReader,
                     writer: hl7.mllp.HL7StreamWriter) -> None:
        try:
            while message := await reader.readmessage():
                self.received.append(message)
                reply = self.answer(message)
                if reply is None:
                    await asyncio.sleep(30)
                    return
                writer.writemessage(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
def interface_factory() -> Any:
    servers: list[asyncio.AbstractServer] = []

    async def start(answer: Callable[[hl7.Message], hl7.Message | None],
                    encoding: str = "utf-8") -> Interface:
        interface = Interface(answer, encoding)
        server = await hl7.mllp.start_hl7_server(
            interface.handle, "127.0.0.1", 0, encoding=encoding)
        servers.append(server)
        interface.port = server.sockets[0].getsockname()[1]
        return interface

    yield start
    for server in servers:
        server.close()


def with_msa_text(ack: hl7.Message, text: str, extra: str = "") -> hl7.Message:
    return hl7.parse(str(ack).rstrip("\r") + f"|{text}\r{extra}")


def hl7_check(port: int, **extra: object) -> dict[str, object]:
    return {"type": "hl7", "host": "127.0.0.1", "port": port, "timeout": "2s",
            "receiving_application": "LIS", "receiving_facility": "LAB", **extra}


async def test_an_aa_ack_is_ok(interface_factory: Any) -> None:
    lis = await interface_factory(lambda m: m.create_ack("AA"))
    result = await probe(hl7_check(lis.port))
    assert result.state is State.OK, result.message
    assert result.message.startswith("ACK AA in ")
    assert result.numbers["latency_seconds"] > 0
    sent = lis.received[0]
    assert str(sent.segment("MSH")[9]) == "QRY^A19"
    assert str(sent.segment("MSH")[5]) == "LIS"
    assert str(sent.segment("QRD")[8]) == "HISMON-HEALTHCHECK"


async def test_every_probe_sends_a_fresh_control_id(interface_factory: Any) -> None:
    lis = await interface_factory(lambda m: m.create_ack("AA"))
    for _ in range(3):
        assert (await probe(hl7_check(lis.port))).state is State.OK
    ids = {str(m.segment("MSH")[10]) for m in lis.received}
    assert len(ids) == 3
    assert all(len(i) <= 20 for i in ids)


async def test_an_ae_ack_is_critical_with_the_interface_text(interface_factory: Any) -> None:
    lis = await interface_factory(
        lambda m: with_msa_text(m.create_ack("AE"), "LIS database unavailable"))
    result = await probe(hl7_check(lis.port))
    assert result.state is State.CRIT
    assert result.message == ("interface answered AE (application error): "
                              "LIS database unavailable")
    assert result.cause == "application"


async def test_an_ar_with_an_err_segment(interface_factory: Any) -> None:
    def reject(message: hl7.Message) -> hl7.Message:
        return hl7.parse(str(message.create_ack("AR")).rstrip("\r")
                         + "\rERR|||207^Application internal error^HL70357|E\r")

    lis = await interface_factory(reject)
    result = await probe(hl7_check(lis.port))
    assert result.state is State.CRIT
    assert result.message == ("interface answered AR (rejected): "
                              "207 Application internal error HL70357")


async def test_an_interface_that_never_answers_times_out_clearly(interface_factory: Any) -> None:
    lis = await interface_factory(lambda m: None)
    result = await probe(hl7_check(lis.port, timeout="1s"))
    assert result.state is State.CRIT
    assert result.message.startswith(f"connected to 127.0.0.1:{lis.port}, but no ACK within")
    assert result.cause == "application"
    assert result.duration < 1.5
    assert len(lis.received) == 1


async def test_a_silent_tcp_listener_also_times_out_waiting_for_the_ack() -> None:
    async with tcp_server(silent) as port:
        result = await probe(hl7_check(port, timeout="1s"))
    assert result.state is State.CRIT
    assert "no ACK within" in result.message


async def test_closing_without_an_ack() -> None:
    async with tcp_server(close_at_once) as port:
        result = await probe(hl7_check(port))
    assert result.state is State.CRIT
    assert result.message in (f"127.0.0.1:{port} closed the connection without an ACK",
                              f"connection reset 127.0.0.1:{port} while waiting for the ACK")


async def test_an_ack_for_another_message_is_critical(interface_factory: Any) -> None:
    def stale(message: hl7.Message) -> hl7.Message:
        ack = str(message.create_ack("AA"))
        return hl7.parse(ack.replace(str(message.segment("MSH")[10]), "OLD-0001"))

    lis = await interface_factory(stale)
    result = await probe(hl7_check(lis.port))
    assert result.state is State.CRIT
    assert "for another message (MSA-2 OLD-0001" in result.message


async def test_a_refused_port_is_a_network_failure() -> None:
    port = closed_port()
    result = await probe(hl7_check(port))
    assert result.state is State.CRIT
    assert result.message == f"connection refused 127.0.0.1:{port}"
    assert result.cause == "network"


async def test_a_custom_message_in_gb18030(interface_factory: Any) -> None:
    """A configured message (here with a Chinese name) is sent in the interface's charset."""
    lis = await interface_factory(lambda m: m.create_ack("AA"), encoding="gb18030")
    message = ("MSH|^~\\&|HISMON|HIS|LIS|LAB|20260101120000||ADT^A08|WILL-BE-REPLACED|T|2.4\n"
               "PID|1||HM-TEST^^^HIS||测试^患者")
    result = await probe(hl7_check(lis.port, message=message, encoding="gb18030"))
    assert result.state is State.OK, result.message
    sent = lis.received[0]
    assert str(sent.segment("PID")[5]) == "测试^患者"
    assert str(sent.segment("MSH")[10]) != "WILL-BE-REPLACED"


def test_judging_acks_without_a_server() -> None:
    ack = "MSH|^~\\&|LIS|LAB|HISMON|HISMON|20260101||ACK|1|P|2.3\rMSA|CA|ID1\r"
    assert judge_ack(ack, "ID1", 0.01).state is State.OK
    garbage = judge_ack("HTTP/1.1 400 Bad Request", "ID1", 0.01)
    assert garbage.state is State.CRIT
    assert garbage.message.startswith("answer is not an ACK (no MSA segment)")


def test_invalid_settings_are_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="must start with an MSH segment"):
        make_check(hl7_check(2575, message="PID|1||x"))
    with pytest.raises(ValidationError, match='unknown encoding "klingon"'):
        make_check(hl7_check(2575, encoding="klingon"))
    check = make_check(hl7_check(2575))
    assert isinstance(check, Hl7Check)
    assert check.build_message("C1").startswith("MSH|^~\\&|HISMON|HISMON|LIS|LAB|")
