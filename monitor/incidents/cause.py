"""Suspected cause from what fails and what still answers (SPEC §4).

Leadership asks "hardware, software or network?" in the first report; the answer comes
with its evidence so IT can overrule it at a glance. The evidence never contradicts the
cause: it lists the failing checks, then only the facts that back the verdict.

The rules, in order:

1. `certificate`: a check failed on its certificate.
2. `network`: an ICMP/TCP/DNS check (or any check that could not connect) fails and
   *nothing* answers at its host, on any port, in any system. A host that answers on another
   port is reachable: a refused or silent port there is the service's listener, not the
   network (ICMP loss is always the network path). Without a known host, the system's own
   ICMP/TCP checks decide, as before.
3. What the reachable hosts say, lowest layer first:
   `database` (a database check fails, or a listener on a database port or of a system with
   database checks is down while its host answers), `capacity` (a value threshold on a
   resource: used connections %, disk, pool), `application` (HTTP/HL7/DICOM errors, or a
   listener down while its host answers).
4. A slow answer (a latency limit or a latency trend) is never `capacity`: the answer came,
   so the network and the port work; it is blamed on the layer that answered slowly
   (`application` for HTTP/HL7/DICOM, `database` for a query), else `unknown`.
5. Else `unknown`.

A check that failed and already answers again, still hard non-OK while it confirms its
recovery, counts as failing with its last failure (`CheckState.failure_message`), so an
incident whose checks break and heal within a second still gets a cause with evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from monitor.config.model import Config
from monitor.core.result import State
from monitor.probing.state import CheckState

NETWORK_TYPES = {"icmp", "tcp", "dns"}
DATABASE_TYPES = {"postgres", "mysql", "oracle", "mssql"}
APPLICATION_TYPES = {"http", "hl7", "dicom"}
DATABASE_PORTS = {5432, 3306, 1521, 1433}
"""Well-known listener ports of the database types hismon checks."""

Endpoint = tuple[str, int | None]
"""(host, port) a check talks to."""


def check_endpoint(check: Any) -> Endpoint | None:
    """The host and port a check probes, or None (command, heartbeat, prometheus: the
    Prometheus server answering says nothing about the target's host)."""
    kind = getattr(check, "type", None)
    if kind in DATABASE_TYPES:
        try:
            target = check.target()
        except Exception:  # a DSN that does not parse has no endpoint
            return None
        return str(target.host).lower(), int(target.port) if target.port else None
    if kind == "http":
        parts = urlsplit(str(getattr(check, "url", "")))
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            port = None
        return ((parts.hostname or "").lower(), port) if parts.hostname else None
    if kind in ("icmp", "tcp", "hl7", "dicom", "tls"):
        host = getattr(check, "host", None)
        port = getattr(check, "port", None)
        return (str(host).lower(), int(port) if isinstance(port, int) else None) if host else None
    return None


_ENDPOINTS: dict[int, tuple[Config, dict[str, Endpoint]]] = {}


def endpoints(config: Config) -> dict[str, Endpoint]:
    """check id → endpoint for every check of the config (kept for the latest config)."""
    cached = _ENDPOINTS.get(id(config))
    if cached is not None and cached[0] is config:
        return cached[1]
    found = {c.id: e for c in config.checks if (e := check_endpoint(c)) is not None}
    _ENDPOINTS.clear()
    _ENDPOINTS[id(config)] = (config, found)
    return found


def suspect_system(config: Config, system_id: str,
                   states: Mapping[str, CheckState]) -> tuple[str, list[str]]:
    """(cause, evidence) for one system, with every other check of the config as witness of
    which hosts answer."""
    mine = [states[c.id] for c in config.checks_of(system_id) if c.id in states]
    return suspect(mine, endpoints(config), states.values())


def _failed(s: CheckState) -> bool:
    return s.state is not State.OK or s.failing


def _message(s: CheckState) -> str:
    if s.state is State.OK and s.failing:
        return s.failure_message or s.message
    return s.message


def _hint(s: CheckState) -> str | None:
    if s.state is State.OK and s.failing:
        return s.failure_cause
    return s.cause


def suspect(states: Iterable[CheckState], hosts: Mapping[str, Endpoint] | None = None,
            witnesses: Iterable[CheckState] = ()) -> tuple[str, list[str]]:
    """Return (cause, evidence lines) for the checks of one system.

    `hosts` maps check ids to the endpoint they probe; `witnesses` are the other checks (of
    any system) whose answers show that a host is reachable.
    """
    states = list(states)
    hosts = hosts or {}
    failing = [s for s in states if _failed(s)]
    if not failing:
        return "unknown", []
    seen = {s.check_id for s in states}
    everyone = states + [w for w in witnesses if w.check_id not in seen]
    answering = [s for s in everyone if s.probed and not _failed(s)]

    def line(s: CheckState) -> str:
        return f"{s.check_id} ({s.type}): {_message(s)}"

    def answers(s: CheckState) -> str:
        return f"{s.check_id} ({s.type}) answers: {s.message}"

    def host(s: CheckState) -> str | None:
        endpoint = hosts.get(s.check_id)
        return endpoint[0] if endpoint else None

    # Hosts proven reachable: a check to them answers OK right now.
    reachable: dict[str, list[CheckState]] = {}
    for s in answering:
        if (h := host(s)) is not None:
            reachable.setdefault(h, []).append(s)
    answered_hints = {"application", "database", "capacity", "latency", "certificate"}

    def witnesses_for(s: CheckState) -> list[CheckState]:
        """Checks answering at the host of `s` on another port (or ICMP): the host is up."""
        endpoint = hosts.get(s.check_id)
        if endpoint is None:
            return []
        return [a for a in reachable.get(endpoint[0], [])
                if (hosts.get(a.check_id) or endpoint)[1] != endpoint[1]
                or a.type == "icmp"]

    def evidence(first: list[CheckState], support: list[str]) -> list[str]:
        rest = [s for s in failing if s not in first]
        return [line(s) for s in first] + [line(s) for s in rest] + support

    certificate = [s for s in failing if _hint(s) == "certificate"]
    if certificate:
        return "certificate", evidence(certificate, [])

    def cannot_connect(s: CheckState) -> bool:
        hint = _hint(s)
        return hint == "network" or (s.type in NETWORK_TYPES and hint not in answered_hints)

    unreachable: list[CheckState] = []
    silent_hosts: list[str] = []
    for s in failing:
        if not cannot_connect(s):
            continue
        h = host(s)
        if h is None:
            # No endpoint known: only the system's own ICMP/TCP checks can say.
            if not any(a.type in NETWORK_TYPES for a in answering if a.check_id in seen):
                unreachable.append(s)
        elif s.type == "icmp" or not witnesses_for(s):
            # Packet loss is the network path even when a port answers.
            unreachable.append(s)
            if h not in silent_hosts and not witnesses_for(s):
                silent_hosts.append(h)
    if unreachable:
        return "network", evidence(unreachable, [f"nothing answers at {h}"
                                                 for h in silent_hosts])

    db_system = any(s.type in DATABASE_TYPES for s in states)

    def layer(s: CheckState) -> str:
        hint = _hint(s)
        if hint == "capacity":
            return "capacity"
        if hint == "latency":
            if s.type in DATABASE_TYPES:
                return "database"
            return "application" if s.type in APPLICATION_TYPES else "unknown"
        if s.type in DATABASE_TYPES:
            return "database"
        if cannot_connect(s):
            # A listener down (refused or silent) on a host that answers elsewhere.
            endpoint = hosts.get(s.check_id)
            port = endpoint[1] if endpoint else None
            return "database" if db_system or port in DATABASE_PORTS else "application"
        if s.type in APPLICATION_TYPES or hint in ("application", "timeout"):
            return "application"
        return hint if hint in ("database", "application") else "unknown"

    layers = {s.check_id: layer(s) for s in failing}
    for cause in ("database", "capacity", "application"):
        blamed = [s for s in failing if layers[s.check_id] == cause]
        if blamed:
            support: list[str] = []
            if cause != "capacity":
                blamed_hosts = [h for s in blamed if (h := host(s))]
                support = list(dict.fromkeys(answers(a) for h in blamed_hosts
                                             for a in reachable.get(h, [])))
                if not blamed_hosts:
                    support = [answers(a) for a in answering
                               if a.check_id in seen and a.type in NETWORK_TYPES]
            return cause, evidence(blamed, support)
    return "unknown", evidence(failing, [answers(a) for a in answering if a.check_id in seen])
