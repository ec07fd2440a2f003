"""`backfill_reminder: 4h` (SPEC 13.3): once, that long after recovery, to the departments
that were told of the outage and have not confirmed back-entry. Pure, like the other rules."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from monitor.core.models import Incident
from monitor.core.types import MessageKind
from monitor.incidents import plans
from monitor.incidents.compose import step_messages
from monitor.incidents.effects import Effect, SendStep
from monitor.incidents.facts import Facts

STEP = "backfill"


def reminder(facts: Facts, incident: Incident, recorded: Mapping[tuple[str, int], str],
             told: Collection[str], now: float) -> list[Effect]:
    plan = facts.plan_of(incident)
    if plan is None or plan.backfill_reminder is None or incident.is_open or incident.drill:
        return []
    if incident.resolved_at is None or incident.caused_by or (STEP, 0) in recorded:
        return []
    if now < incident.resolved_at + plan.backfill_reminder or not told:
        return []
    due = plans.DueStep(STEP, 0, MessageKind.BACKFILL_REMINDER, ("departments:backfill_pending",))
    return [SendStep(incident.id, due, tuple(step_messages(facts, incident, due, now, told)))]


def horizon(facts: Facts) -> float | None:
    """How far back a resolved incident may still be owed a reminder (None: no plan has one)."""
    delays = [p.backfill_reminder for p in facts.config.plans if p.backfill_reminder]
    return max(delays) + 7 * 86400 if delays else None
