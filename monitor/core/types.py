"""The small vocabulary shared by every stage, as StrEnums (values are what the store, API and
metrics show: a StrEnum compares equal to its string, so stored records stay plain text)."""

from __future__ import annotations

from enum import StrEnum


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
