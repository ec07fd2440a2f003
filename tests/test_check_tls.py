"""TLS check against real TLS listeners on 127.0.0.1 with certificates from a private CA."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from checks.tls import parse_certificate
from monitor.core.result import State
from tests.probe_helpers import Pki, closed_port, now_utc, probe, silent, tcp_server

DAY = 86400


async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A TLS service that completes the handshake and then waits for the client."""
    await reader.read(1)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def tls_check(port: int, pki: Pki | None, **extra: object) -> dict[str, object]:
    data: dict[str, object] = {"type": "tls", "host": "127.0.0.1", "port": port, "timeout": "2s"}
    if pki is not None:
        data["ca_file"] = str(pki.ca_file)
    data.update(extra)
    return data


async def test_it_reports_a_valid_certificate_with_its_expiry(pki: Pki) -> None:
    """A certificate valid for 200 days is OK, and its expiry is exported in seconds."""
    ctx = pki.server_context("127.0.0.1", not_after=now_utc() + dt.timedelta(days=200))
    async with tcp_server(idle, ctx) as port:
        result = await probe(tls_check(port, pki))
    assert result.state is State.OK, result.message
    assert "valid for 200 days" in result.message
    expiry = result.numbers["tls_cert_expiry_seconds"]
    assert 199 * DAY < expiry <= 200 * DAY
    assert result.numbers["latency_seconds"] > 0


@pytest.mark.parametrize(("days", "state"), [(15, State.WARN), (3, State.CRIT)])
async def test_it_warns_early_and_goes_critical_before_expiry(
    pki: Pki, days: int, state: State
) -> None:
    """Defaults are WARN under 21 days and CRIT under 7 days, with the days left in the text."""
    ctx = pki.server_context("127.0.0.1", not_after=now_utc() + dt.timedelta(days=days, hours=1))
    async with tcp_server(idle, ctx) as port:
        result = await probe(tls_check(port, pki))
    assert result.state is state
    assert f"expires in {days} days" in result.message
    assert result.cause == "certificate"


async def test_custom_expiry_thresholds_apply(pki: Pki) -> None:
    """`expiry_warn: 60d` warns about a certificate that still has 45 days."""
    ctx = pki.server_context("127.0.0.1", not_after=now_utc() + dt.timedelta(days=45))
    async with tcp_server(idle, ctx) as port:
        result = await probe(tls_check(port, pki, expiry_warn="60d", expiry_crit="10d"))
    assert result.state is State.WARN


async def test_an_expired_certificate_is_critical_and_still_measured(pki: Pki) -> None:
    """Verification fails, the message says it expired and when, the metric goes negative."""
    ctx = pki.server_context(
        "127.0.0.1",
        not_after=now_utc() - dt.timedelta(days=3),
    )
    async with tcp_server(idle, ctx) as port:
        result = await probe(tls_check(port, pki))
    assert result.state is State.CRIT
    assert "expired" in result.message
    assert result.cause == "certificate"
    assert result.numbers["tls_cert_expiry_seconds"] < -2 * DAY


async def test_a_hostname_mismatch_is_critical(pki: Pki) -> None:
    """A certificate for another host is rejected and the message says so."""
    ctx = pki.server_context("pacs.example.internal")
    async with tcp_server(idle, ctx) as port:
        result = await probe(tls_check(port, pki, server_name="his.example.internal"))
    assert result.state is State.CRIT
    assert "his.example.internal" in result.message
    assert "Hostname mismatch" in result.message
    assert "tls_cert_expiry_seconds" in result.numbers


async def test_server_name_selects_what_is_matched(pki: Pki) -> None:
    """Connecting by IP while checking the certificate for the service's DNS name."""
    ctx = pki.server_context("his.example.internal")
    async with tcp_server(idle, ctx) as port:
        result = await probe(tls_check(port, pki, server_name="his.example.internal"))
    assert result.state is State.OK, result.message
    assert "CN=his.example.internal" in result.message


async def test_an_unknown_issuer_is_a_chain_error(pki: Pki) -> None:
    """Without the hospital CA the chain cannot be verified: CRIT, naming the reason."""
    async with tcp_server(idle, pki.server_context("127.0.0.1")) as port:
        result = await probe(tls_check(port, None))
    assert result.state is State.CRIT
    assert "unable to get local issuer certificate" in result.message
    assert result.cause == "certificate"


async def test_verify_false_still_checks_expiry(pki: Pki) -> None:
    """`verify: false` skips the chain but a soon-expiring certificate still warns."""
    ctx = pki.server_context("127.0.0.1", not_after=now_utc() + dt.timedelta(days=10))
    async with tcp_server(idle, ctx) as port:
        result = await probe(tls_check(port, None, verify=False))
    assert result.state is State.WARN
    assert "expires in 10 days" in result.message or "expires in 9 days" in result.message


async def test_a_plain_tcp_port_is_a_handshake_failure(pki: Pki) -> None:
    """A port that answers plain text instead of TLS: the message hints at the wrong port."""

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.write(b"220 smtp.example.internal ESMTP ready\r\n" * 4)
        await writer.drain()

    async with tcp_server(plain) as port:
        result = await probe(tls_check(port, pki))
    assert result.state is State.CRIT
    assert "TLS handshake with" in result.message
    assert "TLS port" in result.message


async def test_a_server_that_never_handshakes_times_out_clearly(pki: Pki) -> None:
    """The timeout names the handshake phase, not just 'timeout'."""
    async with tcp_server(silent) as port:
        result = await probe(tls_check(port, pki, timeout="1s"))
    assert result.state is State.CRIT
    assert "no TLS handshake within" in result.message
    assert result.duration < 1.5


async def test_a_closed_port_is_a_network_failure(pki: Pki) -> None:
    port = closed_port()
    result = await probe(tls_check(port, pki))
    assert result.state is State.CRIT
    assert result.message == f"connection refused 127.0.0.1:{port}"
    assert result.cause == "network"


async def test_mutual_tls_with_a_client_certificate(pki: Pki) -> None:
    """A service demanding a client certificate is reachable with `cert_file`/`key_file`."""
    cert_file, key_file = pki.client_files()
    ctx = pki.server_context("127.0.0.1", client_ca=True)
    async with tcp_server(idle, ctx) as port:
        result = await probe(tls_check(port, pki, cert_file=cert_file, key_file=key_file))
    assert result.state is State.OK, result.message


def test_the_der_reader_matches_the_certificate(pki: Pki) -> None:
    """The built-in DER reader finds notAfter and the CN (it runs even for unverified peers)."""
    import ssl

    until = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    leaf = pki.ca.issue_cert("lis.example.internal", common_name="lis.example.internal",
                             not_after=until)
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    info = parse_certificate(der)
    assert info is not None
    assert info.not_after == until.timestamp()
    assert info.subject_cn == "lis.example.internal"
    assert parse_certificate(b"garbage") is None
