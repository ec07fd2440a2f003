"""DNS check against a real DNS server on 127.0.0.1.

The server is a small dnspython-based responder defined here (UDP and TCP on the same
ephemeral port), serving a fixed hospital zone; modes make it answer SERVFAIL or REFUSED,
or stay silent. No dnsmasq needed.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from monitor.core.result import State
from tests.probe_helpers import assert_missing_driver_is_a_config_error, closed_port, probe

ZONE: dict[tuple[str, str], list[str]] = {
    ("his.hospital.internal.", "A"): ["10.1.2.3", "10.1.2.4"],
    ("his.hospital.internal.", "AAAA"): ["fd00::3"],
    ("pacs.hospital.internal.", "CNAME"): ["pacs-01.hospital.internal."],
    ("hospital.internal.", "MX"): ["10 mail.hospital.internal."],
    ("hospital.internal.", "TXT"): ['"v=spf1 mx -all"'],
    ("_hl7._tcp.hospital.internal.", "SRV"): ["0 5 2575 lis.hospital.internal."],
}


class DnsServer:
    """Answers from ZONE; `mode` is normal, servfail, refused or silent."""

    def __init__(self) -> None:
        self.mode = "normal"
        self.queries = 0
        self.port = 0

    def answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        self.queries += 1
        if self.mode == "silent":
            return None
        response = dns.message.make_response(query)
        if self.mode in ("servfail", "refused"):
            response.set_rcode(dns.rcode.SERVFAIL if self.mode == "servfail" else dns.rcode.REFUSED)
            return response.to_wire()
        question = query.question[0]
        name, kind = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
        values = ZONE.get((name, kind))
        if values:
            response.answer.append(dns.rrset.from_text(name, 60, "IN", kind, *values))
        elif not any(key[0] == name for key in ZONE):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        reply = self.server.answer(data)
        if reply is not None:
            self.transport.sendto(reply, addr)


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    server = DnsServer()
    loop = asyncio.get_running_loop()

    async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = struct.unpack(">H", await reader.readexactly(2))[0]
        reply = server.answer(await reader.readexactly(size))
        if reply is not None:
            writer.write(struct.pack(">H", len(reply)) + reply)
            await writer.drain()
        else:
            await asyncio.sleep(30)
        writer.close()

    for _ in range(20):  # find a port free for both UDP and TCP
        port = closed_port()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(server), local_addr=("127.0.0.1", port))
        except OSError:
            continue
        try:
            tcp_server = await asyncio.start_server(tcp, "127.0.0.1", port)
        except OSError:
            transport.close()
            continue
        break
    else:
        raise AssertionError("no free port for the DNS server")
    server.port = port
    yield server
    transport.close()
    tcp_server.close()


def q(server: DnsServer, name: str, record: str = "A", **extra: object) -> dict[str, object]:
    return {"type": "dns", "name": name, "record": record,
            "server": f"127.0.0.1:{server.port}", "timeout": "2s", **extra}


async def test_an_a_record_with_expected_addresses(dns_server: DnsServer) -> None:
    result = await probe(q(dns_server, "his.hospital.internal",
                           expect=["10.1.2.3", "10.1.2.4"]))
    assert result.state is State.OK, result.message
    assert result.message.startswith("his.hospital.internal A is 10.1.2.3, 10.1.2.4 in ")
    assert result.numbers["answers"] == 2
    assert result.numbers["latency_seconds"] > 0


async def test_a_wrong_address_is_critical_and_says_what_was_seen(dns_server: DnsServer) -> None:
    result = await probe(q(dns_server, "his.hospital.internal", expect="10.9.9.9"))
    assert result.state is State.CRIT
    assert result.message == "his.hospital.internal A is 10.1.2.3, 10.1.2.4, expected 10.9.9.9"
    assert result.cause == "network"


@pytest.mark.parametrize(("name", "record", "expect", "seen"), [
    ("his.hospital.internal", "AAAA", "fd00:0::3", "fd00::3"),
    ("pacs.hospital.internal", "CNAME", "pacs-01.hospital.internal.",
     "pacs-01.hospital.internal"),
    ("hospital.internal", "MX", "mail.hospital.internal", "10 mail.hospital.internal"),
    ("hospital.internal", "TXT", "v=spf1 mx -all", "v=spf1 mx -all"),
    ("_hl7._tcp.hospital.internal", "SRV", "lis.hospital.internal:2575",
     "0 5 2575 lis.hospital.internal"),
])
async def test_each_record_type(dns_server: DnsServer, name: str, record: str, expect: str,
                                seen: str) -> None:
    result = await probe(q(dns_server, name, record, expect=[expect]))
    assert result.state is State.OK, result.message
    assert f"{name} {record} is {seen} in " in result.message


async def test_tcp_transport(dns_server: DnsServer) -> None:
    result = await probe(q(dns_server, "his.hospital.internal", transport="tcp",
                           expect=["10.1.2.3"]))
    assert result.state is State.OK, result.message


async def test_a_missing_name_is_nxdomain(dns_server: DnsServer) -> None:
    result = await probe(q(dns_server, "lis.hospital.internal"))
    assert result.state is State.CRIT
    assert result.message == (f"lis.hospital.internal does not exist "
                              f"(NXDOMAIN from 127.0.0.1:{dns_server.port})")


async def test_a_missing_record_type_is_no_answer(dns_server: DnsServer) -> None:
    result = await probe(q(dns_server, "pacs.hospital.internal", "MX"))
    assert result.state is State.CRIT
    assert result.message == (f"pacs.hospital.internal has no MX record "
                              f"(from 127.0.0.1:{dns_server.port})")


@pytest.mark.parametrize("mode", ["servfail", "refused"])
async def test_a_failing_server_is_named_with_its_rcode(dns_server: DnsServer, mode: str) -> None:
    dns_server.mode = mode
    result = await probe(q(dns_server, "his.hospital.internal"))
    assert result.state is State.CRIT
    assert result.message == (f"no DNS server answered his.hospital.internal A: "
                              f"127.0.0.1:{dns_server.port} {mode.upper()}")


async def test_a_silent_server_times_out_clearly(dns_server: DnsServer) -> None:
    dns_server.mode = "silent"
    result = await probe(q(dns_server, "his.hospital.internal", timeout="1s"))
    assert result.state is State.CRIT
    assert result.message.startswith(
        f"DNS server from 127.0.0.1:{dns_server.port} did not answer his.hospital.internal A")
    assert result.duration < 1.5
    assert dns_server.queries >= 1


async def test_no_answer_is_cached_between_probes(dns_server: DnsServer) -> None:
    """Each probe asks the server: a cached answer would hide an outage."""
    from checks.base import ProbeContext
    from tests.probe_helpers import make_check

    check = make_check(q(dns_server, "his.hospital.internal"))
    ctx = ProbeContext()
    try:
        assert (await probe(check, ctx)).state is State.OK
        dns_server.mode = "servfail"
        assert (await probe(check, ctx)).state is State.CRIT
    finally:
        await ctx.close()


def test_an_invalid_server_is_a_validation_error() -> None:
    from pydantic import ValidationError

    from tests.probe_helpers import make_check

    with pytest.raises(ValidationError) as info:
        make_check({"type": "dns", "name": "x", "server": "10.1.1.53:dns"})
    assert 'invalid DNS server "10.1.1.53:dns"' in str(info.value)


def test_a_missing_driver_is_a_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert_missing_driver_is_a_config_error(
        monkeypatch, {"type": "dns", "name": "his.hospital.internal"}, "dns", "dns")
