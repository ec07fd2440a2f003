"""Which plan steps are due, and who receives them: pure functions of (incident, plan, now).

Step keys are stable (`early`, `step-N`, `recovery`, `ack`) and an `every` step counts its
occurrences from the plan clock, so a restarted daemon recomputes exactly what is due and
the store's record of sent steps makes each occurrence happen once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from monitor.config.model import Config, Plan
from monitor.core.models import Incident
from monitor.core.types import HoldReason, MessageKind
from monitor.people.targets import person_of_target, recipient_key


@dataclass(frozen=True, slots=True)
class DueStep:
    key: str
    occurrence: int
    kind: MessageKind
    targets: tuple[str, ...]
    skip_reason: HoldReason | None = None
    """Set when the step is due but must not send (e.g. `unless: acknowledged`)."""


@dataclass(frozen=True, slots=True)
class Recipient:
    notifier: str
    department: str | None = None
    person: str | None = None
    """Set for `person:`/`schedule:` targets: the notifier sends to this person's address."""
    vendor: bool = False
    """Reached through the `vendor` target: the message carries the vendor link."""
    also: tuple[str, ...] = ()
    """Other departments this one post speaks for: they share the notifier (one ward-group
    chat for two departments), so the post greets each and carries each one's link."""

    @property
    def departments(self) -> tuple[str, ...]:
        """Every department this post speaks for, the first (`department`) first."""
        return (self.department, *self.also) if self.department else ()

    @property
    def key(self) -> str:
        """The recipient part of the idempotency key."""
        return recipient_key(self.person, self.notifier) if self.person else self.notifier


def due_steps(
    incident: Incident, plan: Plan, recorded: dict[tuple[str, int], str], now: float
) -> list[DueStep]:
    """Steps whose time has come and that are not recorded yet, oldest first."""
    due: list[DueStep] = []
    if incident.severity == "warning":
        if plan.early_warning and ("early", 0) not in recorded:
            due.append(DueStep("early", 0, MessageKind.EARLY_WARNING, tuple(plan.early_warning)))
        return due
    base = incident.plan_started_at if incident.plan_started_at is not None else incident.started_at
    elapsed = now - base
    for index, step in enumerate(plan.steps):
        key = f"step-{index}"
        occurrence = step_occurrence(step.after, step.every, step.times, elapsed)
        if occurrence is None or (key, occurrence) in recorded:
            continue
        acked = step.unless == "acknowledged" and incident.acknowledged_by is not None
        skip = HoldReason.ACKNOWLEDGED if acked else None
        due.append(DueStep(key, occurrence, step.message, tuple(step.notify), skip))
    return due


def step_occurrence(after: float | None, every: float | None, times: int | None,
                    elapsed: float) -> int | None:
    """The occurrence of a step due at `elapsed` seconds into the plan, or None yet.

    `after` alone: occurrence 0 at `after`. `every` alone: occurrence k at k × every
    (k ≥ 1). Both: occurrence k at after + k × every (k ≥ 0). Only the latest missed
    occurrence is returned: three catch-up reminders in a row after a restart would be
    noise, not information. `times: N` caps the occurrences at N sends in all.
    """
    if every is None:
        return 0 if after is not None and elapsed >= after else None
    first = 0 if after is not None else 1
    offset = after or 0.0
    if elapsed < offset + first * every:
        return None
    occurrence = math.floor((elapsed - offset) / every)
    if times is not None:
        occurrence = min(occurrence, first + times - 1)
    return occurrence


def anything_sent(recorded: dict[tuple[str, int], str]) -> bool:
    return any(status == "sent" for status in recorded.values())


def resolve_targets(targets: tuple[str, ...] | list[str], config: Config,
                    incident: Incident, now: float | None = None) -> list[Recipient]:
    """Expand notify targets to notifiers, each at most once; departments keep their id
    (several, when they share a notifier: the one post speaks for each).

    A person (`person:`, `schedule:` at `now`) is reached through each notifier of their
    `notify`, addressed to them; a role's post to a notifier that also carries a person's
    post of the same message is that one post (the person's, which names them).
    """
    recipients: list[Recipient] = []
    index: dict[str, int] = {}
    people: list[Recipient] = []
    at = incident.started_at if now is None else now

    def add(notifier: str, department: str | None = None, vendor: bool = False) -> None:
        if notifier not in index:
            index[notifier] = len(recipients)
            recipients.append(Recipient(notifier, department, vendor=vendor))
            return
        found = recipients[index[notifier]]
        if department and found.department and department not in found.departments:
            recipients[index[notifier]] = replace(found, also=(*found.also, department))

    system = config.system(incident.system)
    for target in targets:
        person = person_of_target(target, config, at)
        if person is not None:
            for notifier in config.person(person).notify:
                found = Recipient(notifier, person=person)
                if found not in people:
                    people.append(found)
        elif target.startswith("departments:"):
            for dept_id in department_selection(target, incident):
                for notifier in config.department(dept_id).notify:
                    add(notifier, dept_id)
        elif target == "departments":
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
                add(notifier, vendor=True)
        else:
            add(target)
    personal = {r.notifier for r in people}
    return [r for r in recipients if r.department or r.notifier not in personal] + people


def department_selection(target: str, incident: Incident) -> list[str]:
    """`departments:unconfirmed` and `departments:backfill_pending` (SPEC §13.3)."""
    confirmed = getattr(incident, "departments_confirmed", None) or {}
    if target == "departments:unconfirmed":
        return [d for d in incident.affected_departments
                if not (confirmed.get(d) or {}).get("on_paper_at")]
    if target == "departments:backfill_pending":
        return [d for d in incident.affected_departments
                if not (confirmed.get(d) or {}).get("backfill_done_at")]
    return []


def _not_departments(targets: list[str]) -> tuple[str, ...]:
    return tuple(t for t in targets if t not in ("departments", "vendor")
                 and not t.startswith(("department:", "departments:")))


def it_targets(plan: Plan) -> tuple[str, ...]:
    """Who is IT on-call for this plan (asked for a progress note, told of an
    acknowledgement): the first `outage_it` step's targets, else the early warning's, else
    the first step's that has any, never a department or the vendor (a clinic is not asked
    for IT's progress note)."""
    candidates = [s.notify for s in plan.steps if s.message == "outage_it"]
    candidates += [plan.early_warning, *(s.notify for s in plan.steps)]
    for targets in candidates:
        found = _not_departments(targets)
        if found:
            return found
    return ()
