"""What the incident rules decide, as plain values: the rules return a list of these and the
applier (monitor/incidents/applier.py) is the only code that turns them into store writes.

Every effect that changes an incident carries the incident's whole value *after* the change
(`incident`), so the applier never has to work out what changed, and a test can read the
decision from the effect alone. Timeline entries ride along with the effect that caused them.
Effects are frozen; the incidents inside them are copies the rules made, never the live
objects of the engine (the applier copies their fields onto the live ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from monitor.core.models import Incident, OutboxMessage
from monitor.core.types import HoldReason
from monitor.incidents.plans import DueStep


@dataclass(frozen=True, slots=True)
class Note:
    """A timeline entry to add with an effect (the incident id and time come from the effect)."""

    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


class Change(StrEnum):
    """Why an incident's record changes (for the log, and for readers of a list of effects)."""

    CHECKS = "checks"  # failing checks, their states or the suspected cause
    ESCALATE = "escalate"  # warning -> critical
    LINK = "link"  # caused_by another system's incident
    UNLINK = "unlink"  # the root resolved, this one still fails
    DEPARTMENTS = "departments"  # a dependent's departments joined this (root) incident
    HOLD = "hold"  # notifications held (reason in incident.held) or released
    STEP = "step"  # bookkeeping after a step was sent (last_update_sent_at ...)
    ACKNOWLEDGE = "acknowledge"
    NOTE = "note"
    SETTLE = "settle"  # a flapping/unstable or dependency wait changed the plan clock


@dataclass(frozen=True, slots=True)
class OpenIncident:
    """Open a new incident. `incident.id` is empty: the applier allocates `{id_prefix}-N`."""

    incident: Incident
    id_prefix: str = "inc"
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True, slots=True)
class UpdateIncident:
    """Save the incident's new value (escalated, linked, checks changed, held ...)."""

    incident: Incident
    change: Change
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True, slots=True)
class ResolveIncident:
    """Close the incident (status resolved, resolved_at set); it leaves the open set."""

    incident: Incident
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True, slots=True)
class SendStep:
    """Record a plan step occurrence as sent and enqueue its messages, in one transaction.

    `after` is the incident's value to save once the step is recorded (e.g. the time the last
    progress update went out); None when the step changes nothing on the incident.
    """

    incident_id: str
    step: DueStep
    messages: tuple[OutboxMessage, ...]
    after: Incident | None = None


@dataclass(frozen=True, slots=True)
class SkipStep:
    """Record a due step occurrence as skipped for good (`unless: acknowledged`)."""

    incident_id: str
    step: DueStep
    reason: HoldReason


@dataclass(frozen=True, slots=True)
class HoldStep:
    """A due step occurrence held back for now (nothing is stored: it is decided again later).

    Only counted (`hismon_plan_steps_total{result=reason}`) the first time it is decided."""

    incident_id: str
    step: DueStep
    reason: HoldReason


@dataclass(frozen=True, slots=True)
class Enqueue:
    """Messages outside the plan's step record: maintenance notices, department catch-up.

    `key` is remembered so the same announcement is not decided twice in one process (the
    idempotency keys of the messages keep it once in the store anyway)."""

    messages: tuple[OutboxMessage, ...]
    event: str
    key: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


Effect = OpenIncident | UpdateIncident | ResolveIncident | SendStep | SkipStep | HoldStep | Enqueue
"""Everything the rules can decide."""
