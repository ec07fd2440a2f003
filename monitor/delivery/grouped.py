"""What a group says (SPEC 6): one message listing every incident of its members.

Rendered when the group is sent, from what each member stored when it was composed (its
`incident`, links and `group_item`), so it needs neither the engine nor the incidents'
current state. The built-in templates `group_<kind>.j2` (outage_it, department_outage,
recovery) and `group.j2` for every other kind (each member's own text in turn) receive the
context of `group_context` (docs/messages.md); a department's notice names each system it
uses that is down, each with its own downtime procedure.
"""

from __future__ import annotations

from typing import Any

from monitor.config.model import Config
from monitor.core.models import OutboxMessage
from monitor.core.types import MessageKind
from monitor.delivery.context import site_context
from monitor.delivery.grouping import GROUP_ITEM, Batch
from monitor.delivery.messages import MessageRenderer
from monitor.people.addressing import addresses_person
from notifiers.base import NotifierBase, OutgoingMessage

OWN_TEMPLATES: frozenset[MessageKind] = frozenset({
    MessageKind.OUTAGE_IT, MessageKind.DEPARTMENT_OUTAGE, MessageKind.RECOVERY})
"""Kinds with a group template of their own; the others list their members' texts."""


def _item(message: OutboxMessage) -> dict[str, Any]:
    payload = message.payload
    stored = payload.get(GROUP_ITEM)
    item: dict[str, Any] = dict(stored) if isinstance(stored, dict) else {}
    incident = payload.get("incident") or {}
    item.setdefault("system", {"id": incident.get("system"),
                               "name": incident.get("system_name")})
    item.setdefault("department_systems", [])
    text = str(payload.get("text", ""))
    person = payload.get("person")
    if isinstance(person, dict) and text.startswith(f"@{person.get('name')}\n"):
        text = text.split("\n", 1)[1]
    links_text = str(payload.get("links_text") or "")
    if links_text and text.endswith(links_text):
        text = text[: -len(links_text)]
    item.update(incident=incident, title=payload.get("title", ""), body=text.strip(),
                links=dict(payload.get("links") or {}),
                links_text=links_text.strip())
    return item


def group_context(batch: Batch, config: Config, language: str) -> dict[str, Any]:
    """What a group template sees: the members as `items`, in the order they fell due."""
    items = [_item(m) for m in batch.members]
    first = items[0]
    systems: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in items:
        incident = item["incident"]
        for system in item["department_systems"] or [item["system"]]:
            if system.get("id") in seen:
                continue
            seen.add(str(system.get("id")))
            systems.append({**system, "since_local": incident.get("started_at_local"),
                            "duration": incident.get("duration"),
                            "incident_id": incident.get("id")})
    payload = batch.members[0].payload
    return {
        "kind": str(batch.members[0].kind),
        "drill": bool(payload.get("drill")),
        "language": language,
        "site": site_context(config),
        "status_url": payload.get("status_url"),
        "department": first.get("department"),
        "department_url": first.get("department_url"),
        "count": len(items),
        "items": items,
        "systems": systems,
    }


def template_name(kind: str) -> str:
    return f"group_{kind}" if kind in OWN_TEMPLATES else "group"


def grouped_outgoing(batch: Batch, config: Config, renderer: MessageRenderer,
                     notifier: NotifierBase, note: str = "") -> OutgoingMessage:
    """The one message a group sends: `incident` the first member's, `incidents` all.

    `note` ends the text: for fallback copies, the channels that could not deliver them."""
    first = batch.members[0]
    payload = first.payload
    stored = payload.get(GROUP_ITEM)
    language = (stored.get("language") if isinstance(stored, dict) else None) \
        or config.site.language
    context = group_context(batch, config, language)
    title, text = renderer.render(template_name(str(first.kind)), language, context)
    if note:
        text = f"{text}\n\n{note}"
    person = payload.get("person")
    extra: dict[str, Any] = {"incidents": [
        dict(m.payload.get("incident") or {})
        | ({"links": dict(m.payload["links"])} if m.payload.get("links") else {})
        for m in batch.members]}
    if isinstance(person, dict):
        extra["person"] = person
        if not addresses_person(notifier):
            text = f"@{person.get('name')}\n{text}"
    if payload.get("links"):
        extra["links"] = dict(payload["links"])
    return OutgoingMessage(
        kind=first.kind, idempotency_key=batch.key,
        recipient=payload.get("recipient", first.notifier), title=title, text=text,
        incident=payload.get("incident"), drill=bool(payload.get("drill")),
        status_url=payload.get("status_url"), extra=extra)
