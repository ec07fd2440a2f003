"""DNS check: does a name resolve, on the hospital's own DNS server, to what it should?

A broken internal DNS record takes down every client of a system at once while the
servers themselves look healthy; checking the records the clients use (and on the server
they use) catches that. `expect` values must all be in the answer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator

from checks.base import CheckBase, LatencyThresholds, ProbeContext, require_driver, time_budget
from monitor.core.durations import format_duration
from monitor.core.result import Result, State
from monitor.core.types import Cause

Record = Literal["A", "AAAA", "CNAME", "MX", "TXT", "SRV", "NS", "PTR", "SOA", "CAA"]


class DnsCheck(CheckBase):
    type: Literal["dns"]
    name: str = Field(min_length=1)
    """The DNS name to resolve (for this type, `name` is the query, not a display name)."""
    record: Record = "A"
    server: str | None = None
    """`10.1.1.53`, `10.1.1.53:5353`, `[fd00::53]:53` or a host name; unset: the system's."""
    transport: Literal["udp", "tcp"] = "udp"
    expect: list[str] = Field(default_factory=list)
    latency: LatencyThresholds | None = None

    _resolver: Any = PrivateAttr(default=None)

    @field_validator("type")
    @classmethod
    def _driver_installed(cls, value: str) -> str:
        require_driver("dns.asyncresolver", "dns", value)
        return value

    @field_validator("expect", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("server")
    @classmethod
    def _server_parses(cls, value: str | None) -> str | None:
        if value is not None:
            _split_server(value)
        return value

    @property
    def display_name(self) -> str:
        return self.id

    async def probe(self, ctx: ProbeContext) -> Result:
        import dns.exception
        import dns.resolver

        resolver = await self._get_resolver()
        budget = time_budget(self)
        resolver.lifetime = resolver.timeout = budget * 0.9  # dnspython overshoots a little
        via = f" from {self.server}" if self.server else ""
        question = f"{self.name} {self.record}"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(budget):
                answer = await resolver.resolve(self.name, self.record, search=False,
                                                tcp=self.transport == "tcp")
        except dns.resolver.NXDOMAIN:
            return self._fail(f"{self.name} does not exist (NXDOMAIN{via})", started)
        except dns.resolver.NoAnswer:
            return self._fail(f"{self.name} has no {self.record} record{_paren(via)}", started)
        except dns.resolver.NoNameservers as exc:
            return self._fail(f"no DNS server answered {question}: {_server_errors(exc)}",
                              started)
        except (dns.exception.Timeout, TimeoutError):
            return self._fail(f"DNS server{via or 's'} did not answer {question} within "
                              f"{format_duration(budget)}", started)
        elapsed = time.perf_counter() - started
        values = sorted(_text(self.record, rdata) for rdata in answer)
        numbers = {"latency_seconds": elapsed, "answers": float(len(values))}
        shown = ", ".join(values[:6]) + (f" (+{len(values) - 6} more)" if len(values) > 6 else "")
        missing = [want for want in self.expect if not _matches(self.record, want, values)]
        if missing:
            return Result(State.CRIT, f"{question} is {shown}, expected {', '.join(missing)}",
                          numbers=numbers, cause=Cause.NETWORK)
        result = Result(State.OK, f"{question} is {shown} in {format_duration(elapsed)}",
                        numbers=numbers)
        if self.latency is not None:
            self.latency.apply(result, elapsed)
        return result

    def _fail(self, message: str, started: float) -> Result:
        return Result.crit(message, Cause.NETWORK, latency_seconds=time.perf_counter() - started)

    async def _get_resolver(self) -> Any:
        """One resolver per check: reading resolv.conf on every probe would be wasted work."""
        import dns.asyncresolver

        if self._resolver is None:
            if self.server is None:
                resolver = dns.asyncresolver.Resolver()
            else:
                host, port = _split_server(self.server)
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [await _address(host)]
                resolver.port = port
            resolver.cache = None  # a probe must ask, not remember
            self._resolver = resolver
        return self._resolver


def _paren(via: str) -> str:
    return f" ({via.strip()})" if via else ""


def _split_server(value: str) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6 address."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":") or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, "53"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'invalid DNS server "{value}" (use 10.1.1.53 or 10.1.1.53:5353)')
    return host, int(port)


async def _address(host: str) -> str:
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(host, 53, type=socket.SOCK_DGRAM)
        return str(infos[0][4][0])


def _server_errors(exc: Any) -> str:
    """SERVFAIL/REFUSED per server, from dnspython's NoNameservers details."""
    import dns.rcode

    parts = []
    for error in exc.kwargs.get("errors", [])[:3]:
        server, _tcp, port, err, response = (list(error) + [None] * 5)[:5]
        # dnspython ≥ 2.4 names the server "Do53:10.1.1.53@53"
        server = str(server).split(":", 1)[-1].rsplit("@", 1)[0] if "@" in str(server) \
            else server
        if response is not None:
            reason = dns.rcode.to_text(response.rcode())
        else:
            reason = str(err) or type(err).__name__
        parts.append(f"{server}:{port} {reason}")
    return "; ".join(parts) or "all servers failed"


def _text(record: str, rdata: Any) -> str:
    if record in ("A", "AAAA"):
        return str(rdata.address)
    if record in ("CNAME", "NS", "PTR"):
        return str(rdata.target.to_text(omit_final_dot=True))
    if record == "MX":
        return f"{rdata.preference} {rdata.exchange.to_text(omit_final_dot=True)}"
    if record == "SRV":
        return (f"{rdata.priority} {rdata.weight} {rdata.port} "
                f"{rdata.target.to_text(omit_final_dot=True)}")
    if record == "TXT":
        return "".join(part.decode("utf-8", errors="replace") for part in rdata.strings)
    return str(rdata.to_text())


def _matches(record: str, wanted: str, values: list[str]) -> bool:
    """Exact (case-insensitive, trailing dot ignored), or just the host for MX/SRV."""
    want = wanted.strip().rstrip(".").lower()
    for value in values:
        have = value.lower()
        if have == want:
            return True
        if record == "MX" and have.split(" ", 1)[-1] == want:
            return True
        if record == "SRV":
            _prio, _weight, port, target = have.split(" ", 3)
            if want in (target, f"{target}:{port}"):
                return True
        if record in ("A", "AAAA") and _same_address(have, want):
            return True
    return False


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False
