"""The small vocabulary shared by every stage, as StrEnums (values are what the store, API and
metrics show: a StrEnum compares equal to its string, so stored records stay plain text)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class HoldReason(StrEnum):
    """Why a due plan step is held back instead of sent (SPEC 8 `hismon_plan_steps_total`)."""

    ACKNOWLEDGED = "acknowledged"
    """`unless: acknowledged` and someone acknowledged: the step is recorded as skipped."""
    DEPENDENCY = "dependency"
    """The incident is caused by another system's, or waits `dependency_settle` for its roots."""
    MAINTENANCE = "maintenance"
    """A maintenance window or silence covers the system."""
    FLAPPING = "flapping"
    """A check of the system flaps or is unstable, and `flapping.max_hold` has not passed."""
    RECOVERING = "recovering"
    """Every failing check answers again and is confirming its recovery."""


class Severity(StrEnum):
    """An incident's severity (SPEC 4): hard WARN opens `warning`, hard CRIT `critical`."""

    WARNING = "warning"
    CRITICAL = "critical"


class IncidentStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class MessageKind(StrEnum):
    """What a message is for (SPEC 5); each has a template in zh and en."""

    EARLY_WARNING = "early_warning"
    OUTAGE_IT = "outage_it"
    DEPARTMENT_OUTAGE = "department_outage"
    LEADERSHIP_REPORT = "leadership_report"
    VENDOR_ESCALATION = "vendor_escalation"
    PROGRESS_UPDATE = "progress_update"
    RECOVERY = "recovery"
    ACKNOWLEDGED = "acknowledged"
    MAINTENANCE_NOTICE = "maintenance_notice"
    MAINTENANCE_OVER = "maintenance_over"
    BACKFILL_REMINDER = "backfill_reminder"
    """SPEC 13.3: departments are reminded to back-fill their paper records."""
    MONITOR_DEGRADED = "monitor_degraded"
    """SPEC 9: about hismon itself (stale checks, lost members, a store it cannot write)."""
    MONITOR_OK = "monitor_ok"


MESSAGE_KINDS: tuple[MessageKind, ...] = tuple(MessageKind)

INCIDENT_KINDS: tuple[MessageKind, ...] = (
    MessageKind.EARLY_WARNING, MessageKind.OUTAGE_IT, MessageKind.DEPARTMENT_OUTAGE,
    MessageKind.LEADERSHIP_REPORT, MessageKind.VENDOR_ESCALATION, MessageKind.PROGRESS_UPDATE,
    MessageKind.ACKNOWLEDGED,
)
"""Kinds that tell of an incident still going on (an Alertmanager alert fires for each)."""


class MessageStatus(StrEnum):
    """Where an outbox message stands (SPEC 6); only `pending` is still being tried."""

    PENDING = "pending"
    SENT = "sent"
    """Delivered, or declared meaningless by its channel (`NotifierBase.ignores`, answer
    `skipped: why`, counted `skipped`)."""
    FAILED = "failed"
    """A permanent error: retrying cannot help; the fallback (if any) has it."""
    UNDELIVERABLE = "undeliverable"
    """Still failing after `retry.max_age`; the fallback (if any) has it."""


class DeliveryResult(StrEnum):
    """The `result` label of `hismon_notifications_total` (SPEC 8)."""

    SENT = "sent"
    SKIPPED = "skipped"
    RETRY = "retry"
    FAILED = "failed"
    UNDELIVERABLE = "undeliverable"


class Cause(StrEnum):
    """An incident's suspected cause (SPEC 4), and the hint a probe result may carry."""

    NETWORK = "network"
    """ICMP/TCP to the host fail."""
    DATABASE = "database"
    """Database checks fail while the network answers."""
    APPLICATION = "application"
    """HTTP (HL7, DICOM) errors while TCP answers."""
    CERTIFICATE = "certificate"
    CAPACITY = "capacity"
    """A threshold on a resource (latency, connections %, free space)."""
    LATENCY = "latency"
    """A probe hint only (a slow answer); the cause rules blame the layer that answered."""
    TIMEOUT = "timeout"
    """A probe hint only (the target did not answer in time); never an incident's cause."""
    UNKNOWN = "unknown"


CauseName = Literal["network", "database", "application", "certificate", "capacity"]
"""What a check's `cause` key may say its failure means (command and prometheus checks)."""

INCIDENT_CAUSES: tuple[Cause, ...] = tuple(
    c for c in Cause if c not in (Cause.TIMEOUT, Cause.LATENCY))
"""The values an incident's `suspected_cause` takes (the API's enum)."""
