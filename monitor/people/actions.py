"""What people do to an incident (SPEC §13.2-13.5), as pure rules returning effects.

Declare, resolve by hand, correct (PATCH), confirm for a department, record the vendor's
response. Each returns the effects for the applier (the only store writer) or raises
`Refused` with the HTTP status the API answers; none reads a clock or the store.
"""

from __future__ import annotations

import copy
from typing import Any

from monitor.core.models import Incident
from monitor.core.types import IncidentStatus, Severity
from monitor.incidents.effects import (
    Change,
    Effect,
    Note,
    OpenIncident,
    ResolveIncident,
    UpdateIncident,
)
from monitor.incidents.facts import Facts

CAUSES = ("network", "database", "application", "certificate", "capacity", "hardware",
          "unknown")
"""The cause tokens of SPEC §4 (plus `hardware`, which only a person can confirm)."""
CONFIRMATIONS = ("on_paper", "backfill_done")


class Refused(Exception):
    """An action the incident's state does not allow; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str, incident: Incident | None = None) -> None:
        super().__init__(message)
        self.status, self.incident = status, incident


def _copy(incident: Incident) -> Incident:
    return copy.deepcopy(incident)


def declare(facts: Facts, system_id: str, severity: Severity, title: str, by: str,
            started_at: float, now: float) -> OpenIncident:
    """IT declares an incident no check sees (a help-desk call): the plan runs as usual."""
    if not facts.config.has_system(system_id):
        raise Refused(422, f"unknown system {system_id}")
    if severity not in ("critical", "warning"):
        raise Refused(422, "severity must be critical or warning")
    existing = facts.open.get(system_id)
    if existing is not None:
        raise Refused(409, f"{system_id} already has open incident {existing.id}", existing)
    if started_at > now:
        raise Refused(422, "started_at is in the future")
    system = facts.config.system(system_id)
    incident = Incident(
        id="", system=system_id, severity=Severity(severity), started_at=started_at,
        opened_at=now,
        plan_started_at=started_at if severity == "critical" else None,
        affected_departments=list(system.departments), drill=facts.drill,
        source="manual", title=title, declared_by=by)
    return OpenIncident(incident, "drill" if facts.drill else "inc", (
        Note("opened", f"{severity} incident declared by {by}: {title}",
             {"severity": severity, "by": by, "source": "manual", "title": title}),))


def resolve_by_hand(facts: Facts, incident: Incident, by: str, note: str | None,
                    now: float) -> ResolveIncident:
    """A manual incident is closed by a person; an automatic one only once nothing fails."""
    if not incident.is_open:
        raise Refused(409, f"{incident.id} is already resolved", incident)
    if incident.source != "manual":
        failing = [s.check_id for s in facts.states_of(incident.system)
                   if s.hard and s.hard_state.name in ("WARN", "CRIT")]
        if failing:
            raise Refused(422, f"{incident.id} still has failing checks: {', '.join(failing)}",
                          incident)
    closed = _copy(incident)
    closed.status, closed.resolved_at, closed.resolved_by = IncidentStatus.RESOLVED, now, by
    closed.failing_checks = []
    text = f"resolved by {by}" + (f": {note}" if note else "")
    return ResolveIncident(closed, (Note("resolved", text, {"by": by, "note": note,
                                                            "via": "manual"}),))


def patch(incident: Incident, by: str, changes: dict[str, Any]) -> UpdateIncident | None:
    """Record the confirmed cause, root cause and actions; each change a timeline entry."""
    changed = _copy(incident)
    notes: list[Note] = []
    if "confirmed_cause" in changes:
        cause = changes["confirmed_cause"]
        if cause is not None and cause not in CAUSES:
            raise Refused(422, f"confirmed_cause must be one of {', '.join(CAUSES)}")
        if cause != incident.confirmed_cause:
            changed.confirmed_cause = cause
            notes.append(Note("cause_confirmed", f"cause confirmed by {by}: {cause}",
                              {"by": by, "confirmed_cause": cause}))
    if "root_cause" in changes:
        text = changes["root_cause"]
        if text is not None and not isinstance(text, str):
            raise Refused(422, "root_cause must be text")
        if text != incident.root_cause:
            changed.root_cause = text
            notes.append(Note("root_cause", f"root cause written by {by}", {"by": by}))
    if "actions" in changes:
        actions = changes["actions"]
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            raise Refused(422, "actions must be a list of texts")
        if actions != incident.actions:
            changed.actions = list(actions)
            notes.append(Note("actions", f"actions set by {by}: {len(actions)}",
                              {"by": by, "actions": list(actions)}))
    if not notes:
        return None
    return UpdateIncident(changed, Change.NOTE, tuple(notes))


def confirm_department(facts: Facts, incident: Incident, department: str, what: str,
                       by: str | None, now: float, via: str) -> UpdateIncident | None:
    """A department is on paper / done back-filling; None when it had already said so."""
    if what not in CONFIRMATIONS:
        raise Refused(422, "what must be on_paper or backfill_done")
    if department not in incident.affected_departments:
        raise Refused(422, f"{incident.id} does not affect department {department}")
    if what == "on_paper" and not incident.is_open:
        raise Refused(422, f"{incident.id} is resolved: confirm backfill_done instead")
    current = incident.departments_confirmed.get(department) or {}
    if current.get(f"{what}_at") is not None:
        return None
    changed = _copy(incident)
    entry = dict(current)
    entry[f"{what}_at"], entry[f"{what}_by"] = now, by
    changed.departments_confirmed[department] = entry
    name = facts.config.department(department).name if department in {
        d.id for d in facts.config.departments} else department
    label = "on paper" if what == "on_paper" else "back-entry done"
    who = f" ({by})" if by else ""
    return UpdateIncident(changed, Change.NOTE, (Note(
        f"department_{what}", f"{name}: {label}{who}",
        {"department": department, "what": what, "by": by, "via": via}),))


def vendor_response(incident: Incident, by: str | None, eta: str | None, now: float,
                    via: str) -> UpdateIncident | None:
    """The vendor's engineer is responding: what `response_sla` measures (SPEC §13.4)."""
    if incident.vendor_responded_at is not None:
        return None
    changed = _copy(incident)
    changed.vendor_responded_at, changed.vendor_responded_by = now, by
    changed.vendor_eta = eta
    text = "vendor responding" + (f": {by}" if by else "") + (f", ETA {eta}" if eta else "")
    return UpdateIncident(changed, Change.NOTE, (Note(
        "vendor_responded", text, {"by": by, "eta": eta, "via": via}),))


def vendor_escalated(incident: Incident, delivered_at: float,
                     notifier: str) -> UpdateIncident | None:
    """The first `vendor_escalation` the vendor received: `response_sla` counts from here
    (SPEC 13.4), not from when the step fell due (a slow mail server is not the vendor's
    delay). None when an earlier delivery already started the clock."""
    if incident.vendor_escalated_at is not None and incident.vendor_escalated_at <= delivered_at:
        return None
    changed = _copy(incident)
    changed.vendor_escalated_at = delivered_at
    return UpdateIncident(changed, Change.NOTE, (Note(
        "vendor_escalated", f"vendor escalation delivered ({notifier})",
        {"notifier": notifier, "delivered_at": delivered_at}),))


__all__ = ["CAUSES", "Effect", "Refused", "confirm_department", "declare", "patch",
           "resolve_by_hand", "vendor_escalated", "vendor_response"]
