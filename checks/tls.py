"""TLS check: the certificate of any TLS port (HIS web, HL7 over TLS, LDAPS, SMTPS...).

An expired or mismatched certificate stops every client at once, exactly like an outage,
but it is announced weeks ahead: this check turns that announcement into an early warning.
It reports the expiry as `numbers["tls_cert_expiry_seconds"]` (exported by the metrics
layer as `hismon_tls_cert_expiry_seconds`), even when verification fails, so a dashboard
shows how long ago an expired certificate ran out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from checks.base import (
    CheckBase,
    LatencyThresholds,
    ProbeContext,
    network_reason,
    time_budget,
)
from monitor.core.durations import Duration, format_duration
from monitor.core.result import Result, State
from monitor.core.text import host_port
from monitor.core.types import Cause


class TlsCheck(CheckBase):
    type: Literal["tls"]
    host: str
    port: int = Field(default=443, ge=1, le=65535)
    server_name: str | None = None
    """Name to send (SNI) and to match the certificate against; defaults to `host`."""
    ca_file: str | None = None
    verify: bool = True
    cert_file: str | None = None
    key_file: str | None = None
    expiry_warn: Duration | None = 21 * 86400.0
    expiry_crit: Duration | None = 7 * 86400.0
    latency: LatencyThresholds | None = None

    async def probe(self, ctx: ProbeContext) -> Result:
        target = host_port(self.host, self.port)
        name = self.server_name or self.host
        tls = ctx.ssl_context(self.verify, self.ca_file, self.cert_file, self.key_file)
        started = time.perf_counter()
        try:
            der = await _handshake(self.host, self.port, tls, name, time_budget(self))
        except ssl.SSLCertVerificationError as exc:
            return await self._rejected(ctx, exc, started)
        except (ssl.SSLError, _HandshakeError) as exc:
            return Result.crit(f"TLS handshake with {target} failed: {_ssl_reason(exc)}",
                               Cause.CERTIFICATE, latency_seconds=time.perf_counter() - started)
        except _ConnectError as exc:
            return Result.crit(f"{exc} {target}", Cause.NETWORK,
                               latency_seconds=time.perf_counter() - started)
        elapsed = time.perf_counter() - started
        info = parse_certificate(der) if der else None
        if info is None:
            return Result(State.UNKNOWN, f"{target} sent no certificate we could read",
                          numbers={"latency_seconds": elapsed}, cause=Cause.CERTIFICATE)
        expiry = info.not_after - time.time()
        numbers = {"latency_seconds": elapsed, "tls_cert_expiry_seconds": expiry}
        state = expiry_state(expiry, self.expiry_warn, self.expiry_crit)
        what = f"certificate{info.label} of {target}"
        if state is State.OK:
            result = Result(State.OK, f"{what} valid for {_days(expiry)} (until {info.until})",
                            numbers=numbers)
        else:
            result = Result(state, f"{what} {_expires(expiry)} ({info.until})",
                            numbers=numbers, cause=Cause.CERTIFICATE)
        if self.latency is not None:
            self.latency.apply(result, elapsed)
        return result

    async def _rejected(
        self, ctx: ProbeContext, exc: ssl.SSLCertVerificationError, started: float
    ) -> Result:
        """Verification failed: say why, and still measure the expiry for the metric."""
        elapsed = time.perf_counter() - started
        reason = exc.verify_message or _ssl_reason(exc)
        numbers: dict[str, float] = {"latency_seconds": elapsed}
        label = ""
        try:
            insecure = ctx.ssl_context(False, None, self.cert_file, self.key_file)
            der = await _handshake(self.host, self.port, insecure,
                                   self.server_name or self.host, time_budget(self, 0.4))
            info = parse_certificate(der) if der else None
        except (OSError, ssl.SSLError, _HandshakeError, _ConnectError, TimeoutError):
            info = None
        if info is not None:
            expiry = info.not_after - time.time()
            numbers["tls_cert_expiry_seconds"] = expiry
            label = info.label
            if expiry < 0:
                reason = f"certificate expired {_days(-expiry)} ago ({info.until})"
        return Result(
            State.CRIT,
            f"certificate{label} of {host_port(self.host, self.port)} rejected: {reason}",
            numbers=numbers,
            cause=Cause.CERTIFICATE,
        )


class _ConnectError(Exception):
    """The TCP connection itself failed; the text is the operator wording."""


class _HandshakeError(Exception):
    """Connected, but the TLS handshake did not complete."""


async def _handshake(
    host: str, port: int, tls: ssl.SSLContext, server_name: str, budget: float
) -> bytes | None:
    """Connect, then handshake, as two phases so a failure says which one broke."""
    deadline = time.monotonic() + budget
    try:
        async with asyncio.timeout(budget):
            reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        raise _ConnectError(f"no TCP answer within {format_duration(budget)} from") from None
    except OSError as exc:
        raise _ConnectError(network_reason(exc)) from None
    try:
        remaining = max(deadline - time.monotonic(), 0.05)
        try:
            async with asyncio.timeout(remaining):
                await writer.start_tls(tls, server_hostname=server_name,
                                       ssl_handshake_timeout=remaining + 1)
        except TimeoutError:
            raise _HandshakeError(
                f"no TLS handshake within {format_duration(budget)} (is this a TLS port?)"
            ) from None
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            raise _HandshakeError(f"{network_reason(exc)} during the handshake") from None
        ssl_object = writer.get_extra_info("ssl_object")
        return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        writer.close()
        del reader


def _ssl_reason(exc: BaseException) -> str:
    """`WRONG_VERSION_NUMBER` rather than a paragraph of OpenSSL text."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        hint = " (is this a TLS port?)" if exc.reason in (
            "WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"
        ) else ""
        return f"{exc.reason}{hint}"
    return str(exc) or type(exc).__name__


def _days(seconds: float) -> str:
    days = seconds / 86400
    if days >= 2:
        return f"{days:.0f} days"
    return format_duration(seconds)


def expiry_state(expiry: float, warn: float | None, crit: float | None) -> State:
    if expiry <= 0 or (crit is not None and expiry < crit):
        return State.CRIT
    if warn is not None and expiry < warn:
        return State.WARN
    return State.OK


def _expires(expiry: float) -> str:
    return f"expired {_days(-expiry)} ago" if expiry <= 0 else f"expires in {_days(expiry)}"


def judge_expiry(result: Result, expiry: float, warn: float | None, crit: float | None) -> None:
    """Degrade another check's result (HTTPS) when its certificate runs out soon."""
    state = expiry_state(expiry, warn, crit)
    if state is State.OK:
        return
    if state > result.state or result.state is State.OK:
        result.state = state
        result.message = f"certificate {_expires(expiry)} ({result.message})"
        result.cause = Cause.CERTIFICATE


# ---- a minimal DER reader: the expiry is needed even when the chain did not verify ------
# (`getpeercert()` returns nothing for unverified peers, and `cryptography` is not a
# runtime dependency.)


@dataclass(frozen=True, slots=True)
class CertInfo:
    not_after: float
    subject_cn: str | None

    @property
    def until(self) -> str:
        return dt.datetime.fromtimestamp(self.not_after, dt.UTC).strftime("%Y-%m-%d")

    @property
    def label(self) -> str:
        return f" CN={self.subject_cn}" if self.subject_cn else ""


_CN_OID = bytes.fromhex("550403")


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at `pos`."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    items = []
    while start < end:
        item = _tlv(data, start)
        items.append(item)
        start = item[2]
    return items


def _der_time(tag: int, raw: bytes) -> float:
    text = raw.decode("ascii").rstrip("Z")
    if tag == 0x17:  # UTCTime: two-digit year, 1950-2049
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    stamp = dt.datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def _common_name(data: bytes, start: int, end: int) -> str | None:
    for _, set_start, set_end in _children(data, start, end):
        for _, seq_start, seq_end in _children(data, set_start, set_end):
            parts = _children(data, seq_start, seq_end)
            if len(parts) == 2 and data[parts[0][1]:parts[0][2]] == _CN_OID:
                return data[parts[1][1]:parts[1][2]].decode("utf-8", errors="replace")
    return None


def parse_certificate(der: bytes) -> CertInfo | None:
    """Expiry and subject CN of an X.509 certificate in DER; None if it is not one."""
    try:
        _, cert_start, cert_end = _tlv(der, 0)
        _, tbs_start, tbs_end = _children(der, cert_start, cert_end)[0]
        fields = _children(der, tbs_start, tbs_end)
        if fields and fields[0][0] == 0xA0:  # explicit version
            fields = fields[1:]
        _, validity_start, validity_end = fields[3]
        subject = fields[4]
        not_after_tag, na_start, na_end = _children(der, validity_start, validity_end)[1]
        not_after = _der_time(not_after_tag, der[na_start:na_end])
        return CertInfo(not_after, _common_name(der, subject[1], subject[2]))
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def peer_certificate(transport: Any) -> CertInfo | None:
    """The certificate of an asyncio/aiohttp TLS transport, verified or not."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return parse_certificate(der) if der else None
