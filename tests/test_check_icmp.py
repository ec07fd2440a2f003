"""ICMP check: real pings to 127.0.0.1, and the judging of loss and round-trip time.

Raw-socket pings need root (or CAP_NET_RAW); unprivileged pings need the kernel's
net.ipv4.ping_group_range to include our group. Each test says which it needs.
"""

from __future__ import annotations

import os
from pathlib import Path

import icmplib
import pytest

from checks.icmp import IcmpCheck
from monitor.core.result import Result, State
from tests.probe_helpers import assert_missing_driver_is_a_config_error, make_check, probe

IS_ROOT = os.geteuid() == 0


def unprivileged_ping_allowed() -> bool:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    except (OSError, ValueError):
        return False
    return any(low <= gid <= high for gid in {os.getgid(), *os.getgroups()})


def ping(**extra: object) -> dict[str, object]:
    return {"type": "icmp", "host": "127.0.0.1", "count": 3, "packet_interval": "50ms",
            "timeout": "3s", **extra}


@pytest.mark.skipif(not IS_ROOT, reason="raw ICMP sockets need root")
async def test_pinging_loopback_as_root() -> None:
    result = await probe(ping(privileged=True))
    assert result.state is State.OK, result.message
    assert result.message.startswith("3/3 replies from 127.0.0.1, rtt avg ")
    assert result.numbers["loss_percent"] == 0
    assert 0 < result.numbers["latency_seconds"] < 0.5


@pytest.mark.skipif(not IS_ROOT, reason="raw ICMP sockets need root")
async def test_an_rtt_threshold_degrades_the_result() -> None:
    """A 1 µs warning limit is always exceeded, even on loopback."""
    result = await probe(ping(privileged=True, rtt={"warn": "0.001ms"}))
    assert result.state is State.WARN
    assert "slow:" in result.message
    assert result.cause == "network"


async def test_unprivileged_ping_works_or_explains_how_to_allow_it() -> None:
    """Without raw sockets: OK where the kernel allows it, else a clear how-to, not a trace."""
    result = await probe(ping(privileged=False))
    if unprivileged_ping_allowed():
        assert result.state is State.OK, result.message
    else:
        assert result.state is State.UNKNOWN
        assert "net.ipv4.ping_group_range" in result.message
        assert "CAP_NET_RAW" in result.message


async def test_an_unknown_host_is_a_dns_failure() -> None:
    result = await probe(ping(host="no-such-host.invalid"))
    assert result.state is State.CRIT
    assert result.message == "DNS lookup failed for no-such-host.invalid"
    assert result.cause == "network"


def _judge(sent: int, rtts_ms: list[float], **extra: object) -> Result:
    check = make_check(ping(host="10.1.2.3", **extra))
    assert isinstance(check, IcmpCheck)
    return check.judge(icmplib.Host("10.1.2.3", sent, rtts_ms))


def test_all_packets_lost_is_critical() -> None:
    result = _judge(3, [])
    assert result.state is State.CRIT
    assert result.message == "no reply from 10.1.2.3 (3 of 3 pings lost)"
    assert result.cause == "network"


def test_some_loss_warns_by_default() -> None:
    result = _judge(10, [1.0] * 7)
    assert result.state is State.WARN
    assert result.message.startswith(
        "packet loss % 30 above WARN limit 20 (7/10 replies from 10.1.2.3")


def test_loss_thresholds_are_configurable() -> None:
    strict = {"warn": 5, "crit": 8}
    assert _judge(10, [1.0] * 9, loss=strict).state is State.CRIT
    assert _judge(10, [1.0] * 10, loss=strict).state is State.OK


def test_rtt_is_reported_in_seconds() -> None:
    result = _judge(3, [10.0, 20.0, 30.0], rtt={"warn": "15ms", "crit": "100ms"})
    assert result.state is State.WARN
    assert result.numbers["rtt_avg_seconds"] == pytest.approx(0.020)
    assert result.numbers["rtt_max_seconds"] == pytest.approx(0.030)


def test_pings_must_fit_in_the_timeout() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        make_check(ping(count=20, packet_interval="1s", timeout="5s"))
    assert "do not fit in timeout 5s" in str(info.value)


def test_a_missing_driver_is_a_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert_missing_driver_is_a_config_error(monkeypatch, ping(), "icmplib", "icmp")
