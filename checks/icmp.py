"""ICMP check: ping a server, switch or minicomputer; packet loss and round-trip time.

When every system on a host fails at once, a failing ping is what tells the on-call "it is
the network (or the box is down)" rather than twenty applications. Uses icmplib (extra
`icmp`). As root (or with CAP_NET_RAW) it uses raw sockets; otherwise Linux's unprivileged
ICMP sockets, which the kernel allows only to groups in `net.ipv4.ping_group_range`.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from checks.base import (
    CheckBase,
    LatencyThresholds,
    ProbeContext,
    ValueThresholds,
    require_driver,
    time_budget,
)
from monitor.core.durations import Duration, format_duration
from monitor.core.result import Result, State
from monitor.core.types import Cause

PERMISSION_HINT = (
    "ICMP not permitted: run hismon as root, give it CAP_NET_RAW "
    "(setcap cap_net_raw+ep on the python binary), or allow unprivileged ping with "
    "sysctl -w net.ipv4.ping_group_range=\"0 2147483647\""
)


class IcmpCheck(CheckBase):
    type: Literal["icmp"]
    host: str
    count: int = Field(default=3, ge=1, le=100)
    packet_interval: Duration = 0.2
    """Pause between echo requests."""
    loss: ValueThresholds = Field(default_factory=lambda: ValueThresholds(warn=20, crit=60))
    """Packet loss in percent; losing every packet is always CRIT."""
    rtt: LatencyThresholds | None = None
    """Average round-trip time, e.g. {warn: 50ms, crit: 200ms}."""
    privileged: bool | None = None
    """Raw sockets (True), unprivileged ICMP sockets (False); unset: raw as root, else try both."""

    @field_validator("type")
    @classmethod
    def _driver_installed(cls, value: str) -> str:
        require_driver("icmplib", "icmp", value)
        return value

    @model_validator(mode="after")
    def _fits_in_timeout(self) -> IcmpCheck:
        if self.timeout is not None and (self.count - 1) * self.packet_interval >= self.timeout:
            raise ValueError(
                f"{self.count} pings {format_duration(self.packet_interval)} apart do not fit "
                f"in timeout {format_duration(self.timeout)}")
        return self

    async def probe(self, ctx: ProbeContext) -> Result:
        import icmplib

        budget = time_budget(self)
        gaps = (self.count - 1) * self.packet_interval
        per_reply = max(0.05, (budget - gaps) / self.count)
        modes = [self.privileged] if self.privileged is not None else (
            [True] if os.geteuid() == 0 else [False, True])
        for index, privileged in enumerate(modes):
            try:
                host = await icmplib.async_ping(
                    self.host, count=self.count, interval=self.packet_interval,
                    timeout=per_reply, privileged=privileged)
                break
            except icmplib.SocketPermissionError:
                if index == len(modes) - 1:
                    return Result.unknown(PERMISSION_HINT)
            except icmplib.NameLookupError:
                return Result.crit(f"DNS lookup failed for {self.host}", Cause.NETWORK)
            except icmplib.ICMPLibError as exc:
                return Result.unknown(f"cannot ping {self.host}: {type(exc).__name__} {exc}")
        return self.judge(host)

    def judge(self, host: Any) -> Result:
        """Turn an icmplib Host (sent, received, RTTs) into a result."""
        sent, received = host.packets_sent, host.packets_received
        loss = 100.0 * (sent - received) / sent if sent else 100.0
        numbers: dict[str, float] = {"loss_percent": loss, "packets_received": float(received)}
        if received == 0:
            return Result(State.CRIT, f"no reply from {self.host} ({sent} of {sent} pings lost)",
                          numbers=numbers, cause=Cause.NETWORK)
        avg, worst = host.avg_rtt / 1000, host.max_rtt / 1000
        numbers.update(latency_seconds=avg, rtt_avg_seconds=avg, rtt_max_seconds=worst)
        summary = (f"{received}/{sent} replies from {self.host}, rtt avg "
                   f"{_ms(avg)} max {_ms(worst)}")
        loss_state = self.loss.judge(loss)
        if loss_state is not State.OK:
            text = self.loss.describe(loss, "packet loss %")
            return Result(loss_state, f"{text} ({summary})", numbers=numbers, cause=Cause.NETWORK)
        result = Result(State.OK, summary, numbers=numbers)
        if self.rtt is not None:
            self.rtt.apply(result, avg)
            if result.state is not State.OK:
                result.cause = Cause.NETWORK
        return result


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else format_duration(seconds)
