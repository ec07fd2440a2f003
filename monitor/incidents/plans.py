"""Which plan steps are due, and who receives them: pure functions of (incident, plan, now).

Step keys are stable (`early`, `step-N`, `recovery`, `ack`) and an `every` step counts its
occurrences from the plan clock, so a restarted daemon recomputes exactly what is due and
the store's record of sent steps makes each occurrence happen once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from monitor.config.model import Config, Plan
from monitor.core.models import Incident


@dataclass(frozen=True, slots=True)
class DueStep:
    key: str
    occurrence: int
    kind: str
    targets: tuple[str, ...]
    skip_reason: str | None = None
    """Set when the step is due but must not send (e.g. `unless: acknowledged`)."""


@dataclass(frozen=True, slots=True)
class Recipient:
    notifier: str
    department: str | None = None


def due_steps(
    incident: Incident, plan: Plan, recorded: dict[tuple[str, int], str], now: float
) -> list[DueStep]:
    """Steps whose time has come and that are not recorded yet, oldest first."""
    due: list[DueStep] = []
    if incident.severity == "warning":
        if plan.early_warning and ("early", 0) not in recorded:
            due.append(DueStep("early", 0, "early_warning", tuple(plan.early_warning)))
        return due
    base = incident.plan_started_at if incident.plan_started_at is not None else incident.started_at
    elapsed = now - base
    for index, step in enumerate(plan.steps):
        key = f"step-{index}"
        if step.after is not None:
            if elapsed < step.after or (key, 0) in recorded:
                continue
            occurrence = 0
        else:
            assert step.every is not None
            occurrence = math.floor(elapsed / step.every)
            # Only the latest missed occurrence: three catch-up progress updates in a row
            # after a restart would be noise, not information.
            if occurrence < 1 or (key, occurrence) in recorded:
                continue
        acked = step.unless == "acknowledged" and incident.acknowledged_by is not None
        skip = "acknowledged" if acked else None
        due.append(DueStep(key, occurrence, step.message, tuple(step.notify), skip))
    return due


def anything_sent(recorded: dict[tuple[str, int], str]) -> bool:
    return any(status == "sent" for status in recorded.values())


def resolve_targets(targets: tuple[str, ...] | list[str], config: Config,
                    incident: Incident) -> list[Recipient]:
    """Expand notify targets to notifiers, each at most once; departments keep their id."""
    recipients: list[Recipient] = []
    seen: set[str] = set()

    def add(notifier: str, department: str | None = None) -> None:
        if notifier not in seen:
            seen.add(notifier)
            recipients.append(Recipient(notifier, department))

    system = config.system(incident.system)
    for target in targets:
        if target == "departments":
            for dept_id in incident.affected_departments:
                for notifier in config.department(dept_id).notify:
                    add(notifier, dept_id)
        elif target.startswith("department:"):
            dept_id = target.removeprefix("department:")
            for notifier in config.department(dept_id).notify:
                add(notifier, dept_id)
        elif target.startswith("role:"):
            for notifier in config.roles.get(target.removeprefix("role:"), []):
                add(notifier)
        elif target == "vendor":
            for notifier in system.vendor.notify if system.vendor else []:
                add(notifier)
        else:
            add(target)
    return recipients


def it_targets(plan: Plan) -> tuple[str, ...]:
    """Who is IT on-call for this plan: the first `outage_it` step's targets."""
    for step in plan.steps:
        if step.message == "outage_it":
            return tuple(step.notify)
    return tuple(plan.steps[0].notify) if plan.steps else tuple(plan.early_warning)
