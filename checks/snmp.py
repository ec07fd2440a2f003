"""SNMP check: GET a few OIDs from a switch, UPS or storage array (SNMP v2c or v3).

Network gear in a hospital speaks SNMP and nothing else: a core switch's uplink
(`ifOperStatus`), a UPS's remaining battery minutes, an array's failed-disk count. The
probe GETs the configured OIDs in one request on pysnmp's asyncio API and judges:

- `expect`: the first OID's value must equal it (ifOperStatus `1` = up); a mismatch is CRIT;
- `value`: thresholds on the first numeric value (battery minutes, temperature);
- every numeric answer is reported as a number named by its OID, the first also as `value`
  (so `forecast: {number: value}` works as for database checks).

An OID the agent does not have (noSuchObject/noSuchInstance) is UNKNOWN naming it: a typo in
the config must not look like a healthy or a broken device. No answer at all is CRIT (an SNMP
agent that answers nothing is usually a device that is down), but the message says that a
wrong community or v3 key looks the same on the wire: agents drop such requests silently.
A v3 answer that fails authentication is UNKNOWN (hismon cannot measure, the device is fine).

One pysnmp engine is shared per credential set (`ProbeContext.resource`): an engine costs
~150 ms of CPU to build, and a shared one keeps each v3 agent's discovered engine id and
clock, so a v3 probe is one round trip instead of two.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from typing import Any, Literal

from pydantic import Field, model_validator

from checks.base import CheckBase, ProbeContext, ValueThresholds, time_budget
from monitor.core.durations import format_duration
from monitor.core.result import Result, State
from monitor.core.text import host_port
from monitor.core.types import Cause

AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
PrivProtocol = Literal["DES", "AES", "AES192", "AES256"]

_AUTH = {
    "MD5": "usmHMACMD5AuthProtocol",
    "SHA": "usmHMACSHAAuthProtocol",
    "SHA224": "usmHMAC128SHA224AuthProtocol",
    "SHA256": "usmHMAC192SHA256AuthProtocol",
    "SHA384": "usmHMAC256SHA384AuthProtocol",
    "SHA512": "usmHMAC384SHA512AuthProtocol",
}
# AES192/AES256 extend a short localized key as net-snmp's `AES-192`/`AES-256` do (the
# Blumenthal draft; pysnmp's plain `usmAesCfb192Protocol` is Cisco's "Reeder" variant, which
# net-snmp does not answer): tested against Debian's snmpd with SHA (20-byte) keys.
_PRIV = {
    "DES": "usmDESPrivProtocol",
    "AES": "usmAesCfb128Protocol",
    "AES192": "usmAesBlumenthalCfb192Protocol",
    "AES256": "usmAesBlumenthalCfb256Protocol",
}
_AUTH_FAILURES = {
    "WrongDigest": "v3 authentication failed (wrong auth_key or auth_protocol?)",
    "UnknownUserName": "v3 user unknown to the agent",
    "UnsupportedSecurityLevel": "the agent refuses this v3 security level for the user",
    "AuthenticationFailure": "v3 authentication failed",
    "AuthenticationError": "v3 authentication failed",
    "DecryptionError": "v3 decryption failed (wrong priv_key or priv_protocol?)",
    "NotInTimeWindow": "v3 time window mismatch (agent clock or engine boots changed)",
    "UnknownEngineID": "v3 engine id discovery failed",
    "UnknownCommunityName": "community refused by the agent",
}
_OID = r"^\.?[0-2](\.\d+)+$"
_NO_VALUE = {"NoSuchObject": "noSuchObject", "NoSuchInstance": "noSuchInstance",
             "EndOfMibView": "endOfMibView"}
_NUMERIC = {"Integer", "Integer32", "Unsigned32", "Gauge32", "Counter32", "Counter64",
            "TimeTicks"}


class SnmpCheck(CheckBase):
    type: Literal["snmp"]
    host: str = Field(min_length=1)
    port: int = Field(default=161, ge=1, le=65535)
    oids: list[str] = Field(min_length=1, max_length=32)
    """Numeric dotted OIDs (`1.3.6.1.2.1.2.2.1.8.3`): no MIB files to install or mistype."""
    community: str | None = None
    """SNMP v2c community (a secret: it is the password)."""
    user: str | None = None
    """SNMP v3 user (USM); with `auth_key` (and `priv_key`) for authNoPriv (authPriv)."""
    auth_protocol: AuthProtocol | None = None
    auth_key: str | None = Field(default=None, min_length=8)
    priv_protocol: PrivProtocol | None = None
    priv_key: str | None = Field(default=None, min_length=8)
    context: str = ""
    """v3 context name, for agents that serve several (rarely needed)."""
    retries: int = Field(default=1, ge=0, le=5)
    """Requests re-sent within the timeout (UDP loses packets; the budget is split)."""
    value: ValueThresholds | None = None
    expect: str | int | float | None = None
    cause: Literal["network", "capacity", "application"] = "network"
    """What a breached threshold or a mismatch means for the incident (a port down: network)."""

    secret_fields = ("community", "auth_key", "priv_key")

    @model_validator(mode="after")
    def _one_version(self) -> SnmpCheck:
        for oid in self.oids:
            if not re.match(_OID, oid):
                raise ValueError(f'oids: "{oid}" is not a numeric dotted OID '
                                 "(like 1.3.6.1.2.1.1.3.0)")
        if (self.community is None) == (self.user is None):
            raise ValueError("set either community (SNMP v2c) or user (SNMP v3)")
        v3_keys = ("auth_protocol", "auth_key", "priv_protocol", "priv_key")
        if self.community is not None:
            given = [k for k in v3_keys if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} only apply to SNMP v3 (user)")
        if self.auth_protocol is not None and self.auth_key is None:
            raise ValueError("auth_protocol needs auth_key")
        if self.priv_key is not None and self.auth_key is None:
            raise ValueError("priv_key needs auth_key (SNMP v3 has no privacy without auth)")
        if self.priv_protocol is not None and self.priv_key is None:
            raise ValueError("priv_protocol needs priv_key")
        if self.value is not None and self.expect is not None:
            raise ValueError("use either value thresholds or expect, not both")
        return self

    @property
    def version(self) -> str:
        return "2c" if self.community is not None else "3"

    @property
    def security_level(self) -> str:
        if self.priv_key is not None:
            return "authPriv"
        return "authNoPriv" if self.auth_key is not None else "noAuthNoPriv"

    def _credentials(self) -> Any:
        from pysnmp.hlapi.v3arch import asyncio as hl

        if self.community is not None:
            return hl.CommunityData(self.community, mpModel=1)
        auth = getattr(hl, _AUTH[self.auth_protocol or "SHA"]) if self.auth_key else None
        priv = getattr(hl, _PRIV[self.priv_protocol or "AES"]) if self.priv_key else None
        return hl.UsmUserData(self.user, authKey=self.auth_key, privKey=self.priv_key,
                              authProtocol=auth, privProtocol=priv)

    def _credential_key(self) -> tuple[Any, ...]:
        return ("snmp", self.community, self.user, self.auth_protocol, self.auth_key,
                self.priv_protocol, self.priv_key)

    async def probe(self, ctx: ProbeContext) -> Result:
        from pysnmp.hlapi.v3arch import asyncio as hl

        started = time.perf_counter()
        engine = ctx.resource(self._credential_key(), hl.SnmpEngine,
                              lambda e: e.close_dispatcher())
        budget = time_budget(self)
        # The first probe of a credential set builds its engine (~150 ms): not the agent's.
        remaining = max(budget - (time.perf_counter() - started), 0.05)
        per_try = remaining / (self.retries + 1)
        target_class = hl.Udp6TransportTarget if _is_ipv6(self.host) else hl.UdpTransportTarget
        where = host_port(self.host, self.port)
        try:
            target = await target_class.create((self.host, self.port), timeout=per_try,
                                               retries=self.retries)
        except Exception as exc:  # pysnmp wraps a failed name lookup in PySnmpError
            return Result.crit(f"SNMP {where}: cannot resolve {self.host}: "
                               f"{str(exc)[:120]}", cause=Cause.NETWORK)
        try:
            # pysnmp's own timer overshoots by a tick (and v3 discovery adds a round trip):
            # stopping at our budget keeps the message that says what a timeout may mean.
            async with asyncio.timeout(remaining):
                indication, status, index, var_binds = await hl.get_cmd(
                    engine, self._credentials(), target,
                    hl.ContextData(contextName=self.context),
                    *[hl.ObjectType(hl.ObjectIdentity(oid.lstrip("."))) for oid in self.oids],
                    lookupMib=False)
        except TimeoutError:
            return self._timed_out(where, budget)
        if indication:
            return self._no_answer(indication, where, budget)
        if status:
            oid = self.oids[int(index) - 1] if 0 < int(index) <= len(self.oids) else "?"
            return Result.unknown(f"SNMP {where}: agent answered {status.prettyPrint()} "
                                  f"at {oid}")
        return self.judge([(str(name), value) for name, value in var_binds])

    def _no_answer(self, indication: Any, where: str, budget: float) -> Result:
        name = type(indication).__name__
        if name == "RequestTimedOut":
            return self._timed_out(where, budget)
        reason = _AUTH_FAILURES.get(name, str(indication))
        return Result.unknown(f"SNMP {where}: {reason}")

    def _timed_out(self, where: str, budget: float) -> Result:
        hint = "community" if self.version == "2c" else "v3 user/keys"
        return Result.crit(
            f"no SNMP answer from {where} within {format_duration(budget)} "
            f"(agent down or unreachable, or wrong {hint}: agents drop those silently)",
            cause=Cause.NETWORK)

    def judge(self, answers: list[tuple[str, Any]]) -> Result:
        """Turn (oid, pysnmp value) pairs into a result; pure, tested with plain values."""
        numbers: dict[str, float] = {}
        shown: list[str] = []
        first_number: tuple[str, float] | None = None
        for oid, raw in answers:
            kind = type(raw).__name__
            if kind in _NO_VALUE:
                return Result.unknown(f"{oid}: {_NO_VALUE[kind]} (the agent has no such "
                                      "OID: check the OID and the agent's view)")
            number = _number(raw, kind)
            if number is not None:
                numbers[oid] = number
                if first_number is None:
                    first_number = (oid, number)
            shown.append(f"{oid} = {_text(raw, kind)}")
        if first_number is not None:
            numbers["value"] = first_number[1]
        first_oid, first_raw = answers[0]
        if self.expect is not None:
            seen = _text(first_raw, type(first_raw).__name__)
            if not _equal(seen, self.expect):
                return Result(State.CRIT, f"{first_oid} = {seen}, expected {self.expect}",
                              numbers=numbers, cause=Cause(self.cause))
            return Result(State.OK, ", ".join(shown), numbers=numbers)
        if self.value is not None:
            if first_number is None:
                return Result.unknown(f"no numeric value to judge: {', '.join(shown)}")
            oid, number = first_number
            state = self.value.judge(number)
            message = self.value.describe(number, oid)
            rest = [s for s in shown if not s.startswith(f"{oid} = ")]
            if rest:
                message += ", " + ", ".join(rest)
            return Result(state, message, numbers=numbers,
                          cause=Cause(self.cause) if state is not State.OK else None)
        return Result(State.OK, ", ".join(shown), numbers=numbers)


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).version == 6
    except ValueError:
        return False


def _number(raw: Any, kind: str) -> float | None:
    if kind in _NUMERIC:
        return float(int(raw))
    if kind == "OctetString":  # `extend` scripts and many UPS report numbers as text
        try:
            return float(bytes(raw).decode("utf-8", "replace").strip())
        except ValueError:
            return None
    return None


def _text(raw: Any, kind: str) -> str:
    if kind in _NUMERIC:
        return str(int(raw))
    text: str = raw.prettyPrint() if hasattr(raw, "prettyPrint") else str(raw)
    return text if len(text) <= 80 else text[:77] + "..."


def _equal(seen: str, wanted: str | int | float) -> bool:
    try:
        return float(seen) == float(wanted)
    except (TypeError, ValueError):
        return seen == str(wanted)
