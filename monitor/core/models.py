"""Records the daemon keeps: incidents, their timeline, outbox messages, silences.

Fields typed with the StrEnums of `monitor.core.types` may hold the plain string read back
from the store: the two compare (and hash) equal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from monitor.core.timefmt import iso as iso  # re-exported: its home is timefmt
from monitor.core.types import (
    Cause,
    HoldReason,
    IncidentStatus,
    MessageKind,
    MessageStatus,
    Severity,
)


@dataclass(slots=True)
class Incident:
    id: str
    system: str
    severity: Severity
    started_at: float
    opened_at: float
    status: IncidentStatus = IncidentStatus.OPEN
    plan_started_at: float | None = None
    """When the plan's clock starts: critical onset, end of a hold (maintenance, caused_by)."""
    resolved_at: float | None = None
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    ack_note: str | None = None
    caused_by: str | None = None
    caused_by_system: str | None = None
    suspected_cause: Cause = Cause.UNKNOWN
    cause_evidence: list[str] = field(default_factory=list)
    affected_departments: list[str] = field(default_factory=list)
    failing_checks: list[dict[str, Any]] = field(default_factory=list)
    held: HoldReason | None = None
    """Why notifications are held right now, or None."""
    drill: bool = False
    last_note_at: float | None = None
    last_update_sent_at: float | None = None
    vendor_escalated_at: float | None = None
    """When the vendor was escalated to: its response SLA counts from here."""
    # People in the loop (SPEC §13): kept in the record, so they survive restarts and HA.
    source: str = "checks"
    """`manual` for an incident IT declared (13.5): only a person resolves it."""
    title: str | None = None
    declared_by: str | None = None
    resolved_by: str | None = None
    confirmed_cause: str | None = None
    """The real cause, recorded by IT; the engine never changes it."""
    root_cause: str | None = None
    actions: list[str] = field(default_factory=list)
    departments_confirmed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """department id → on_paper_at/_by, backfill_done_at/_by (SPEC §13.3)."""
    vendor_responded_at: float | None = None
    vendor_responded_by: str | None = None
    vendor_eta: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Incident:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in record.items() if k in known})


@dataclass(slots=True)
class TimelineEntry:
    incident_id: str
    at: float
    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class OutboxMessage:
    """One message for one notifier, persisted before any send attempt."""

    idempotency_key: str
    notifier: str
    kind: MessageKind
    payload: dict[str, Any]
    """OutgoingMessage fields: title, text, incident, drill, status_url, recipient."""
    incident_id: str | None = None
    created_at: float = 0.0
    status: MessageStatus = MessageStatus.PENDING
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None
    sent_at: float | None = None
    answer: str | None = None
    id: int | None = None


@dataclass(slots=True)
class Silence:
    id: str
    systems: list[str]
    start: float
    end: float
    reason: str
    created_by: str | None = None
    announce: list[float] = field(default_factory=list)
    source: str = "api"  # api | config
