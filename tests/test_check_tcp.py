"""TCP check against real listeners on 127.0.0.1: connect, banner, send/expect, timeouts."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

from checks.base import LatencyThresholds
from monitor.core.durations import format_against
from monitor.core.result import Result, State
from tests.probe_helpers import closed_port, probe, silent, tcp_server

pytestmark = pytest.mark.both_loops  # the daemon probes on uvloop by default


def tcp(port: int, **extra: object) -> dict[str, object]:
    return {"type": "tcp", "host": "127.0.0.1", "port": port, "timeout": "2s", **extra}


async def smtp_banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 mail.hospital.internal ESMTP ready\r\n")
    await writer.drain()
    await reader.read(100)


async def ping_pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = await reader.readline()
    writer.write(b"PONG\r\n" if line == b"PING\r\n" else b"ERR unknown command\r\n")
    await writer.drain()
    await reader.read(100)


async def test_a_plain_connect_is_ok_with_its_timing() -> None:
    async with tcp_server(smtp_banner) as port:
        result = await probe(tcp(port))
    assert result.state is State.OK
    assert result.message.startswith(f"connected to 127.0.0.1:{port} in ")
    assert result.numbers["latency_seconds"] > 0
    assert result.numbers["connect_seconds"] > 0


async def test_a_refused_port() -> None:
    port = closed_port()
    result = await probe(tcp(port))
    assert result.state is State.CRIT
    assert result.message == f"connection refused 127.0.0.1:{port}"
    assert result.cause == "network"


async def test_a_dns_failure() -> None:
    result = await probe(tcp(80, host="no-such-host.invalid"))
    assert result.state is State.CRIT
    assert result.message == "DNS lookup failed for no-such-host.invalid"


async def test_an_expected_banner() -> None:
    async with tcp_server(smtp_banner) as port:
        result = await probe(tcp(port, expect="220 "))
    assert result.state is State.OK, result.message


async def test_a_wrong_banner_shows_what_was_seen() -> None:
    async with tcp_server(smtp_banner) as port:
        result = await probe(tcp(port, expect="SSH-2.0"))
    assert result.state is State.CRIT
    assert result.message == (f'127.0.0.1:{port} answered "220 mail.hospital.internal ESMTP '
                              'ready", expected "SSH-2.0"')
    assert result.cause == "application"


async def test_send_and_expect_with_escapes() -> None:
    async with tcp_server(ping_pong) as port:
        ok = await probe(tcp(port, send="PING\\r\\n", expect="PONG"))
        bad = await probe(tcp(port, send="HELLO\\r\\n", expect="PONG"))
    assert ok.state is State.OK, ok.message
    assert bad.state is State.CRIT
    assert 'answered "ERR unknown command"' in bad.message


async def test_send_without_expect_only_needs_the_write_to_succeed() -> None:
    async with tcp_server(silent) as port:
        result = await probe(tcp(port, send="PING\\r\\n"))
    assert result.state is State.OK, result.message


async def test_a_silent_service_times_out_saying_nothing_came() -> None:
    async with tcp_server(silent) as port:
        result = await probe(tcp(port, expect="220", timeout="1s"))
    assert result.state is State.CRIT
    assert result.message == f'127.0.0.1:{port} sent nothing within 900ms, expected "220"'
    assert result.cause == "application"
    assert result.duration < 1.5


async def test_a_wrong_answer_is_judged_when_the_peer_pauses() -> None:
    """No need to wait out the timeout: half a second of silence after data ends the wait."""
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"MLLP gateway starting")
        await writer.drain()
        await asyncio.sleep(30)

    async with tcp_server(half) as port:
        result = await probe(tcp(port, expect="READY", timeout="3s"))
    assert result.message == f'127.0.0.1:{port} answered "MLLP gateway starting", expected "READY"'
    assert result.duration < 1.0


async def test_a_closed_connection_before_the_banner() -> None:
    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with tcp_server(close) as port:
        result = await probe(tcp(port, expect="220"))
    assert result.state is State.CRIT
    assert result.message == f'127.0.0.1:{port} answered nothing, expected "220"'


async def test_latency_thresholds() -> None:
    async def slow_banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.3)
        writer.write(b"220 ready\r\n")
        await writer.drain()
        await reader.read(100)

    async with tcp_server(slow_banner) as port:
        result = await probe(tcp(port, expect="220", latency={"warn": "100ms"}))
    assert result.state is State.WARN
    assert "slow:" in result.message


async def test_an_ipv6_target_is_written_in_brackets() -> None:
    """`connection refused [::1]:PORT`, not the ambiguous `::1:PORT`."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.bind(("::1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        result = await probe({"type": "tcp", "host": "::1", "port": port, "timeout": "2s"})
    assert result.state is State.CRIT
    assert result.message == f"connection refused [::1]:{port}"


def test_a_slow_answer_shows_measured_and_limit_at_a_precision_that_differs() -> None:
    """1.6 s against `crit: 1500ms` read `slow: 2s > 2s`; now the two values differ."""
    limits = LatencyThresholds.model_validate({"crit": "1500ms"})
    result = limits.apply(Result(State.OK, "connected"), 1.605)
    assert result.state is State.CRIT and result.message == "connected, slow: 1.6s > 1.5s"
    rtt = LatencyThresholds.model_validate({"warn": "1ms"})
    assert rtt.apply(Result(State.OK, "ok"), 0.0012).message == "ok, slow: 1.2ms > 1ms"
    assert format_against(2.0004, 2.0) == ("2.0004s", "2s")


async def test_hismon_probe_exits_2_when_crit_and_unknown_are_mixed(tmp_path: Path) -> None:
    """Nagios: the worst is CRIT (2); it exited 3 because UNKNOWN sorts above CRIT."""
    crit_port, unknown_port = closed_port(), closed_port()
    config = tmp_path / "h.yaml"
    config.write_text(f"""
systems: [{{id: lis, name: LIS}}]
checks:
  - {{id: lis-port, system: lis, type: tcp, host: 127.0.0.1, port: {crit_port}, timeout: 2s}}
  - {{id: lis-disk, system: lis, type: prometheus, url: "http://127.0.0.1:{unknown_port}",
      query: up, timeout: 2s}}
""")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "probe", "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert "CRIT    lis-port" in text and "UNKNOWN lis-disk" in text, text
    assert proc.returncode == 2


async def test_the_connect_only_path_follows_the_loop(request: pytest.FixtureRequest) -> None:
    """On uvloop the connect-only probe goes through a C transport, elsewhere `sock_connect`;
    both give the same answer (every test here runs on both loops)."""
    from checks.tcp import _native_transports

    on_uvloop = request.node.name.endswith("[uvloop]")
    assert _native_transports(asyncio.get_running_loop()) is on_uvloop
    async with tcp_server(smtp_banner) as port:
        ok = await probe(tcp(port))
    refused = await probe(tcp(closed_port()))
    assert ok.state is State.OK and ok.message.startswith(f"connected to 127.0.0.1:{port} in ")
    assert refused.message.startswith("connection refused 127.0.0.1:")
