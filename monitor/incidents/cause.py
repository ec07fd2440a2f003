"""Suspected cause from what fails and what still answers (SPEC §4).

Leadership asks "hardware, software or network?" in the first report; the answer comes
with its evidence so IT can overrule it at a glance.
"""

from __future__ import annotations

from collections.abc import Iterable

from monitor.core.result import State
from monitor.probing.state import CheckState

NETWORK_TYPES = {"icmp", "tcp", "dns"}
DATABASE_TYPES = {"postgres", "mysql", "oracle", "mssql"}
APPLICATION_TYPES = {"http", "hl7", "dicom"}


def suspect(states: Iterable[CheckState]) -> tuple[str, list[str]]:
    """Return (cause, evidence lines) for the checks of one system (and its dependencies)."""
    states = list(states)
    failing = [s for s in states if s.state is not State.OK]
    answering = [s for s in states if s.probed and s.state is State.OK]
    if not failing:
        return "unknown", []
    evidence = [f"{s.check_id} ({s.type}): {s.message}" for s in failing]
    support = [f"{s.check_id} ({s.type}) answers: {s.message}" for s in answering]

    def any_type(group: list[CheckState], types: set[str]) -> bool:
        return any(s.type in types for s in group)

    causes = {s.cause for s in failing}
    if "certificate" in causes:
        return "certificate", evidence
    if any_type(failing, NETWORK_TYPES) or (causes == {"network"} and not any_type(
        answering, NETWORK_TYPES
    )):
        return "network", evidence + support
    if any_type(failing, DATABASE_TYPES):
        return "database", evidence + support
    if any_type(failing, APPLICATION_TYPES) and (
        any_type(answering, NETWORK_TYPES) or causes & {"application", "timeout"}
    ):
        return "application", evidence + support
    if causes == {"capacity"}:
        return "capacity", evidence
    return "unknown", evidence + support
