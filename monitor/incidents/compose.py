"""Who receives a due step and with which text: pure, from the facts the rules see.

Kept apart from the rules so the question "what does a department read" has one home; the
rules decide *that* a step is sent, this module decides *what* goes to *whom*.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from monitor.config.model import Config
from monitor.core.models import Incident, OutboxMessage
from monitor.core.timefmt import local_time as local
from monitor.core.types import MessageKind
from monitor.delivery import drill as drill_route
from monitor.delivery.context import maintenance_context, message_context
from monitor.delivery.grouping import GROUP_ITEM
from monitor.delivery.messages import MessageRenderer
from monitor.incidents import maintenance, plans
from monitor.incidents.facts import Facts
from monitor.links.make import link_lines, links_for
from monitor.people.addressing import for_person
from monitor.people.targets import person_card


def step_messages(facts: Facts, incident: Incident, due: plans.DueStep, now: float,
                  told: Collection[str] | None = None) -> list[OutboxMessage]:
    """The outbox messages of one step occurrence (one per notifier, stable keys).

    `told` restricts a recovery to the notifiers that heard of the outage."""
    config = facts.config
    targets = list(due.targets)
    extra: list[str] = []
    """IT asked for a note: not the step's own recipients (a drill routes them apart)."""
    note, note_missing = None, False
    if due.kind == "progress_update":
        note = facts.notes.get(incident.id)
        since = incident.last_update_sent_at or incident.started_at
        note_missing = note is None or note["at"] <= since
        plan = facts.plan_of(incident)
        if note_missing and plan is not None:
            extra = [t for t in plans.it_targets(plan) if t not in targets]
    affected = [incident.system] + [
        i.system for i in facts.open.values() if i.caused_by == incident.id]
    recipients = plans.resolve_targets(targets + extra, config, incident, now)
    if incident.drill:
        pairs: list[tuple[str, str | None]] = []
        for group in (targets, extra):
            found = plans.resolve_targets(group, config, incident, now) if group else []
            for pair in drill_route.route(found, config, facts.live).recipients:
                if group and pair[0] not in {n for n, _ in pairs}:
                    pairs.append(pair)
        recipients = [plans.Recipient(n, d) for n, d in pairs]
    system = config.system(incident.system) if config.has_system(incident.system) else None
    vendor_notifiers = set(system.vendor.notify) if system and system.vendor else set()
    asked = set()
    if note_missing and (plan_ := facts.plan_of(incident)) is not None:
        asked = {r.key for r in plans.resolve_targets(plans.it_targets(plan_), config, incident,
                                                      now)}
    messages = []
    for recipient in recipients:
        notifier, department = recipient.notifier, recipient.department
        if told is not None and notifier not in told:
            continue
        language = config.site.language
        if department:
            language = config.department(department).language or language
        context = message_context(
            due.kind, incident, config, now, department_id=department,
            language=language, note=public_note(note, config), note_missing=note_missing,
            affected_systems=affected, also_departments=recipient.also)
        title, text = facts.renderer.render(due.kind, language, context)
        payload: dict[str, Any] = {
            "title": title, "text": text, "incident": context["incident"],
            "drill": incident.drill, "status_url": context["status_url"], "recipient": notifier}
        if department:
            # For the review (SPEC 13.6), a fallback copy (per department) and grouping (6).
            payload["department"] = department
            if recipient.also:
                payload["departments"] = list(recipient.departments)
        elif recipient.vendor or notifier in vendor_notifiers:
            # Its delivery starts the vendor's response clock (SPEC 13.4).
            payload["vendor"] = True
        payload[GROUP_ITEM] = group_item(context)
        if recipient.person:
            for_person(payload, person_card(config, recipient.person), config.notifier(notifier))
        links = links_for(config, facts.link_key, incident, due.kind,
                          departments=recipient.departments, person=recipient.person,
                          notifier=notifier, vendor=recipient.vendor,
                          note_missing=recipient.key in asked, now=now)
        if links:
            payload["links"] = links
            payload["links_text"] = link_lines(
                links, language, {d["id"]: d["name"] for d in context["departments_spoken_for"]})
            payload["text"] += payload["links_text"]
        messages.append(OutboxMessage(
            idempotency_key=f"{incident.id}:{due.key}:{recipient.key}:{due.occurrence}",
            notifier=notifier, kind=MessageKind(due.kind), incident_id=incident.id,
            created_at=now, next_attempt_at=now, payload=payload))
    return messages


def maintenance_messages(config: Config, renderer: MessageRenderer, kind: str,
                         window: maintenance.Window, key: str,
                         now: float, back: float | None = None) -> list[OutboxMessage]:
    """A planned-downtime notice (or "maintenance over") for each affected department.

    `back`: when the systems came back after an overrunning window (maintenance_over)."""
    departments: list[str] = []
    for system_id in window.systems:
        if not config.has_system(system_id):
            continue
        for dept_id in config.system(system_id).departments:
            if dept_id not in departments:
                departments.append(dept_id)
    # One notice per notifier; departments that share one (a ward-group chat) read one
    # notice that greets each of them and names the systems any of them uses.
    speaks_for: dict[str, list[str]] = {}
    for dept_id in departments:
        for notifier in config.department(dept_id).notify:
            speaks_for.setdefault(notifier, []).append(dept_id)
    messages: list[OutboxMessage] = []
    for notifier, depts in speaks_for.items():
        first = depts[0]
        language = config.department(first).language or config.site.language
        affected = [s for s in window.systems if config.has_system(s)
                    and any(d in config.system(s).departments for d in depts)]
        context = maintenance_context(kind, config, affected, window.start, window.end,
                                      window.reason, department_id=first, language=language,
                                      window_key=window.key, back=back,
                                      also_departments=tuple(depts[1:]))
        title, text = renderer.render(kind, language, context)
        payload: dict[str, Any] = {
            "title": title, "text": text, "incident": None,
            "maintenance": context["maintenance"],
            # `department`: a fallback copy is per department (SPEC 6), so two wards whose
            # channels share a fallback each get their own notice.
            "department": first, "status_url": context["status_url"], "recipient": notifier}
        if len(depts) > 1:
            payload["departments"] = list(depts)
        messages.append(OutboxMessage(
            idempotency_key=f"maint:{key}:{notifier}", notifier=notifier,
            kind=MessageKind(kind), created_at=now, next_attempt_at=now, payload=payload))
    return messages


def group_item(context: dict[str, Any]) -> dict[str, Any]:
    """What a grouped text needs of this message (SPEC 6; monitor/delivery/grouped.py)."""
    return {key: context[key] for key in ("language", "system", "department",
                                          "department_systems", "incident_url",
                                          "department_url")}


def public_note(note: dict[str, Any] | None, config: Config) -> dict[str, Any] | None:
    if note is None:
        return None
    return {"by": note["by"], "text": note["text"],
            "at_local": local(note["at"], config.site.tz)}
