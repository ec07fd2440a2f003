"""Suspected cause from what fails and what still answers."""

from __future__ import annotations

from monitor.core.result import State
from monitor.incidents.cause import suspect
from monitor.probing.state import CheckState


def state(check_id: str, kind: str, result: State, cause: str | None = None) -> CheckState:
    cs = CheckState(check_id, "sys", kind, state=result, probed=True,
                    message=f"{check_id} says {result.name}")
    cs.cause = cause
    return cs


def test_database_fails_while_the_network_answers() -> None:
    cause, evidence = suspect([state("db", "postgres", State.CRIT, "database"),
                               state("ping", "icmp", State.OK)])
    assert cause == "database"
    assert evidence[0].startswith("db (postgres): ") and "ping (icmp) answers" in evidence[1]


def test_network_when_the_host_does_not_answer() -> None:
    assert suspect([state("ping", "icmp", State.CRIT, "network"),
                    state("web", "http", State.CRIT, "network")])[0] == "network"


def test_application_when_http_fails_but_tcp_answers() -> None:
    assert suspect([state("web", "http", State.CRIT, "application"),
                    state("port", "tcp", State.OK)])[0] == "application"


def test_certificate_and_capacity_and_unknown() -> None:
    assert suspect([state("web", "http", State.WARN, "certificate")])[0] == "certificate"
    assert suspect([state("disk", "prometheus", State.WARN, "capacity")])[0] == "capacity"
    assert suspect([state("job", "command", State.CRIT)])[0] == "unknown"
    assert suspect([state("web", "http", State.OK)]) == ("unknown", [])
