"""TCP check: can we connect, and optionally does the service answer with its banner."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import time
from typing import Literal

from pydantic import Field, PositiveInt

from checks.base import CheckBase, LatencyThresholds, ProbeContext
from monitor.durations import format_duration
from monitor.result import Result, State

_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "connection timed out",
}


class TcpCheck(CheckBase):
    type: Literal["tcp"]
    host: str
    port: int = Field(ge=1, le=65535)
    send: str | None = None
    expect: str | None = None
    latency: LatencyThresholds | None = None
    max_read: PositiveInt = 65536

    async def probe(self, ctx: ProbeContext) -> Result:
        target = f"{self.host}:{self.port}"
        started = time.perf_counter()
        try:
            if self.send is None and self.expect is None:
                await _connect_only(self.host, self.port)
                banner = None
            else:
                banner = await self._converse()
        except OSError as exc:
            if isinstance(exc, socket.gaierror):
                return Result.crit(f"DNS lookup failed for {self.host}", "network")
            reason = _REASONS.get(exc.errno or 0, exc.strerror or str(exc))
            return Result.crit(f"{reason} {target}", "network")
        elapsed = time.perf_counter() - started
        numbers = {"latency_seconds": elapsed}
        if self.expect is not None and (banner is None or self.expect not in banner):
            seen = (banner or "").strip().splitlines()[:1]
            shown = f'"{seen[0][:80]}"' if seen else "nothing"
            return Result(State.CRIT, f'{target} answered {shown}, expected "{self.expect}"',
                          numbers=numbers, cause="application")
        result = Result(State.OK, f"connected to {target} in {format_duration(elapsed)}",
                        numbers=numbers)
        if self.latency is not None:
            self.latency.apply(result, elapsed)
        return result

    async def _converse(self) -> str:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            if self.send is not None:
                writer.write(self.send.encode().decode("unicode_escape").encode("latin-1"))
                await writer.drain()
            received = b""
            while len(received) < self.max_read:
                chunk = await reader.read(4096)
                if not chunk:
                    break
                received += chunk
                if self.expect is None or self.expect.encode() in received:
                    break
            return received.decode("utf-8", errors="replace")
        finally:
            writer.close()


async def _connect_only(host: str, port: int) -> None:
    """A bare non-blocking connect: about a tenth of the CPU of a stream-based connection."""
    loop = asyncio.get_running_loop()
    try:
        ip = ipaddress.ip_address(host)
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        address: tuple[str, int] | tuple[str, int, int, int] = (host, port)
    except ValueError:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, address)
    finally:
        sock.close()
