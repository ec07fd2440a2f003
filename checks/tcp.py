"""TCP check: can we connect, and optionally does the service answer with its banner."""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import socket
import time
from typing import Any, Literal, cast

from pydantic import Field, PositiveInt

from checks.base import CheckBase, LatencyThresholds, ProbeContext, time_budget, within
from monitor.core.durations import format_duration
from monitor.core.exhaustion import witness
from monitor.core.result import Result, State
from monitor.core.text import first_line, host_port
from monitor.core.types import Cause

_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "connection timed out",
}


QUIET_GAP = 0.5
"""Seconds of silence after a partial answer that end the wait for `expect`."""


class TcpCheck(CheckBase):
    type: Literal["tcp"]
    host: str
    port: int = Field(ge=1, le=65535)
    send: str | None = None
    expect: str | None = None
    latency: LatencyThresholds | None = None
    max_read: PositiveInt = 65536

    async def probe(self, ctx: ProbeContext) -> Result:
        target = host_port(self.host, self.port)
        budget = time_budget(self)
        started = time.perf_counter()
        writer: asyncio.StreamWriter | None = None
        try:
            with within(budget):
                if self.send is None and self.expect is None:
                    await _connect_only(self.host, self.port)
                else:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
        except TimeoutError:
            return Result.crit(f"no TCP answer from {target} within {format_duration(budget)}",
                               Cause.NETWORK, latency_seconds=time.perf_counter() - started)
        except OSError as exc:
            witness(exc)
            if isinstance(exc, socket.gaierror):
                return Result.crit(f"DNS lookup failed for {self.host}", Cause.NETWORK)
            reason = _REASONS.get(exc.errno or 0, exc.strerror or str(exc))
            return Result.crit(f"{reason} {target}", Cause.NETWORK,
                               latency_seconds=time.perf_counter() - started)
        connected = time.perf_counter() - started
        banner: str | None = None
        if writer is not None:
            remaining = max(budget - connected, 0.01)
            received = bytearray()
            try:
                with within(remaining):
                    await self._converse(reader, writer, received)
            except TimeoutError:
                seen = first_line(received.decode("utf-8", errors="replace"), 80)
                shown = f'only "{seen}"' if seen else "nothing"
                return Result(State.CRIT, f"{target} sent {shown} within "
                                          f"{format_duration(budget)}, expected "
                                          f'"{self.expect}"',
                              numbers={"latency_seconds": time.perf_counter() - started,
                                       "connect_seconds": connected},
                              cause=Cause.APPLICATION)
            except OSError as exc:
                witness(exc)
                reason = _REASONS.get(exc.errno or 0, exc.strerror or str(exc))
                return Result.crit(f"{reason} {target} after connecting", Cause.NETWORK,
                                   latency_seconds=time.perf_counter() - started)
            finally:
                writer.close()
            banner = received.decode("utf-8", errors="replace")
        elapsed = time.perf_counter() - started
        numbers = {"latency_seconds": elapsed, "connect_seconds": connected}
        if self.expect is not None and (banner is None or self.expect not in banner):
            seen = first_line(banner or "", 80)
            shown = f'"{seen}"' if seen else "nothing"
            return Result(State.CRIT, f'{target} answered {shown}, expected "{self.expect}"',
                          numbers=numbers, cause=Cause.APPLICATION)
        result = Result(State.OK, f"connected to {target} in {format_duration(elapsed)}",
                        numbers=numbers)
        if self.latency is not None:
            self.latency.apply(result, elapsed)
        return result

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        received: bytearray) -> None:
        """Send `send`; then, if `expect` is set, read until it appears, EOF or `max_read`."""
        if self.send is not None:
            writer.write(self.send.encode().decode("unicode_escape").encode("latin-1"))
            await writer.drain()
        if self.expect is None:
            return
        wanted = self.expect.encode()
        while len(received) < self.max_read:
            if received:
                # something came but not what we expect: judge once the peer pauses,
                # instead of waiting out the whole timeout on a wrong banner
                try:
                    with within(QUIET_GAP):
                        chunk = await reader.read(4096)
                except TimeoutError:
                    break
            else:
                chunk = await reader.read(4096)
            if not chunk:
                break
            received += chunk
            if wanted in received:
                break


@functools.lru_cache(maxsize=4096)
def _literal_family(host: str) -> int | None:
    """AF_INET or AF_INET6 for an IP literal, None for a name (resolved on every probe).

    Cached: parsing the literal with `ipaddress` on every probe was ~3% of the daemon's CPU
    at 1,000 probes/s.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


class _Hangup(asyncio.Protocol):
    """Connected is all a connect-only probe wants to know: close at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast("asyncio.Transport", transport).abort()  # uvloop's is not a subclass: no isinstance


def _native_transports(loop: asyncio.AbstractEventLoop) -> bool:
    """uvloop: its transports are C, cheaper than `sock_connect`'s Python future dance there.

    Measured per connect (bench/README.md): asyncio `sock_connect` ~104 µs, asyncio
    `create_connection` ~137; uvloop `sock_connect` ~133, uvloop `create_connection` ~58.
    """
    return type(loop).__module__.startswith("uvloop")


async def _connect_only(host: str, port: int) -> None:
    """A bare non-blocking connect: about a tenth of the CPU of a stream-based connection."""
    loop = asyncio.get_running_loop()
    family = _literal_family(host)
    address: tuple[Any, ...] = (host, port)
    if family is None:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
    if _native_transports(loop):
        await loop.create_connection(_Hangup, address[0], address[1], family=family)
        return
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, address)
    finally:
        sock.close()
