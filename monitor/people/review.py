"""The post-incident review (SPEC 13.6): one pure function of what the store holds.

What the hospital takes to its review meeting: systems and departments affected (per
campus), the outage window, detection (first failed probe to the first IT message
delivered), every message and what became of it, the acknowledgement, each department's
confirmations and who never answered, the vendor against its SLA, suspected and confirmed
cause with evidence, progress notes, root cause and actions, and the whole timeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monitor.config.i18n import text
from monitor.core.durations import format_duration
from monitor.core.models import Incident, OutboxMessage, TimelineEntry, iso
from monitor.core.types import MessageKind
from monitor.delivery.context import vendor_sla_status

IT_KINDS: tuple[MessageKind, ...] = (MessageKind.EARLY_WARNING, MessageKind.OUTAGE_IT)


def _campus_name(config: Any, campus: str | None, language: str) -> str:
    """The campus as the reader calls it (SPEC 7: never its id where a name exists)."""
    found = next((c for c in config.site.campuses if c.id == campus), None)
    if found is None:
        return campus or "-"
    return str(text(found, "name", language, config.site.language))


def _dependent_systems(config: Any, root: Incident, dependents: Sequence[Incident],
                       language: str) -> list[dict[str, Any]]:
    """Each system whose incident was caused by `root`, once, in the order they opened."""
    found: list[dict[str, Any]] = []
    seen = {root.system}
    for dependent in sorted(dependents, key=lambda i: i.started_at):
        if dependent.caused_by != root.id or dependent.system in seen:
            continue
        seen.add(dependent.system)
        name = str(text(config.system(dependent.system), "name", language,
                        config.site.language)) if config.has_system(dependent.system) \
            else dependent.system
        found.append({"id": dependent.system, "name": name, "incident": dependent.id,
                      "caused_by": root.id})
    return found


def build_review(config: Any, incident: Incident, timeline: list[TimelineEntry],
                 messages: list[OutboxMessage], now: float,
                 language: str | None = None,
                 dependents: Sequence[Incident] = ()) -> dict[str, Any]:
    """`language`: the reader's (the printed page's `?lang=`); names fall back to the site's.
    The JSON keeps ids (`campus`) beside the names (`campus_name`). `dependents`: the
    incidents `caused_by` this one, whose systems were down with it (SPEC 4, 13.6)."""
    tz = config.site.tz
    site = config.site.language
    language = language or site
    known = config.has_system(incident.system)
    system = config.system(incident.system) if known else None
    departments = []
    by_campus: dict[str, list[str]] = {}
    for dept_id in incident.affected_departments:
        try:
            dept = config.department(dept_id)
            name, campus = str(text(dept, "name", language, site)), dept.campus or "-"
            campus_name = _campus_name(config, dept.campus, language)
        except KeyError:
            name, campus, campus_name = dept_id, "-", "-"
        confirmed = incident.departments_confirmed.get(dept_id) or {}
        departments.append({
            "id": dept_id, "name": name, "campus": campus,
            "campus_name": campus_name,
            "on_paper_at": iso(confirmed.get("on_paper_at"), tz),
            "on_paper_by": confirmed.get("on_paper_by"),
            "backfill_done_at": iso(confirmed.get("backfill_done_at"), tz),
            "backfill_done_by": confirmed.get("backfill_done_by")})
        by_campus.setdefault(campus, []).append(name)
    end = incident.resolved_at
    ordered = sorted(messages, key=lambda m: (m.created_at, m.id or 0))
    it_delivered = [m.sent_at for m in ordered if m.kind in IT_KINDS and m.sent_at is not None
                    and m.status == "sent" and not m.payload.get("department")]
    first_it = min(it_delivered) if it_delivered else None
    vendor = system.vendor if system is not None else None
    sla = vendor.response_sla if vendor is not None else None
    notes = [{"at": iso(e.at, tz), "by": e.data.get("by"), "text": e.text}
             for e in timeline if e.kind == "note"]
    return {
        "incident": {"id": incident.id, "title": incident.title, "source": incident.source,
                     "severity": incident.severity, "status": incident.status,
                     "drill": incident.drill},
        "systems": [{"id": incident.system,
                     "name": str(text(system, "name", language, site)) if system
                     else incident.system, "incident": incident.id, "caused_by": None},
                    *_dependent_systems(config, incident, dependents, language)],
        "departments": departments,
        "departments_by_campus": by_campus,
        "departments_unanswered": [d["name"] for d in departments if not d["on_paper_at"]],
        "departments_backfill_pending": [d["name"] for d in departments
                                         if not d["backfill_done_at"]],
        "window": {"start": iso(incident.started_at, tz), "end": iso(end, tz),
                   "duration_seconds": round((end or now) - incident.started_at, 1),
                   "duration": format_duration(max((end or now) - incident.started_at, 0),
                                               language),
                   "ongoing": end is None},
        "detection": {"first_failed_probe": iso(incident.started_at, tz),
                      "first_it_message_delivered": iso(first_it, tz),
                      "seconds": round(first_it - incident.started_at, 1)
                      if first_it is not None else None},
        "messages": [{"kind": m.kind, "notifier": m.notifier,
                      "recipient": m.payload.get("recipient", m.notifier),
                      "department": m.payload.get("department"),
                      "due": iso(m.created_at, tz), "delivered": iso(m.sent_at, tz),
                      "status": m.status, "attempts": m.attempts,
                      "why_not": None if m.status == "sent" else (
                          m.last_error or m.status)} for m in ordered],
        "acknowledgement": {"by": incident.acknowledged_by,
                            "at": iso(incident.acknowledged_at, tz),
                            "seconds": round(incident.acknowledged_at - incident.started_at, 1)
                            if incident.acknowledged_at is not None else None,
                            "note": incident.ack_note},
        "vendor": None if vendor is None else {
            "name": str(text(vendor, "name", language, site)),
            "escalated_at": iso(incident.vendor_escalated_at, tz),
            "responded_at": iso(incident.vendor_responded_at, tz),
            "responded_by": incident.vendor_responded_by, "eta": incident.vendor_eta,
            "response_sla": format_duration(sla, language) if sla else None,
            "sla": vendor_sla_status(incident.vendor_escalated_at, incident.vendor_responded_at,
                                     incident.resolved_at, sla, now)},
        "cause": {"suspected": incident.suspected_cause,
                  "evidence": list(incident.cause_evidence),
                  "confirmed": incident.confirmed_cause},
        "progress_notes": notes,
        "root_cause": incident.root_cause,
        "actions": list(incident.actions),
        "timeline": [{"at": iso(e.at, tz), "kind": e.kind, "text": e.text} for e in timeline],
    }


def review_markdown(review: dict[str, Any]) -> str:
    """The review as Markdown, for `hismon review --format md` and a meeting's minutes."""
    inc, window = review["incident"], review["window"]
    lines = [f"# Post-incident review: {inc['id']}"
             + (f" — {inc['title']}" if inc.get("title") else ""), ""]
    lines += [f"- System: {', '.join(s['name'] for s in review['systems'])}",
              f"- Severity: {inc['severity']}, source: {inc['source']}",
              f"- Outage window: {window['start']} to {window['end'] or 'ongoing'} "
              f"({window['duration']})",
              f"- Detection: first failed probe {review['detection']['first_failed_probe']}, "
              f"first IT message delivered {review['detection']['first_it_message_delivered']}",
              f"- Acknowledged: {review['acknowledgement']['by'] or 'never'}"
              + (f" at {review['acknowledgement']['at']}" if review['acknowledgement']['at']
                 else ""), ""]
    lines += ["## Departments", ""]
    for d in review["departments"]:
        lines.append(f"- {d['name']} ({d['campus_name']}): on paper {d['on_paper_at'] or '—'}"
                     f"{' by ' + d['on_paper_by'] if d['on_paper_by'] else ''}; back-entry "
                     f"{d['backfill_done_at'] or '—'}")
    if review["departments_unanswered"]:
        lines.append(f"- Never answered: {', '.join(review['departments_unanswered'])}")
    vendor = review["vendor"]
    if vendor:
        lines += ["", "## Vendor", "",
                  f"- {vendor['name']}: escalated {vendor['escalated_at'] or '—'}, responded "
                  f"{vendor['responded_at'] or '—'}, SLA {vendor['response_sla'] or '—'}: "
                  f"{vendor['sla'] or 'not judged'}"]
    cause = review["cause"]
    lines += ["", "## Cause", "", f"- Suspected: {cause['suspected']}",
              *[f"  - {e}" for e in cause["evidence"]],
              f"- Confirmed: {cause['confirmed'] or '—'}",
              f"- Root cause: {review['root_cause'] or '—'}", "", "## Actions", ""]
    lines += [f"- {a}" for a in review["actions"]] or ["- —"]
    lines += ["", "## Progress notes", ""]
    lines += [f"- {n['at']} {n['by'] or ''}: {n['text']}" for n in review["progress_notes"]] \
        or ["- —"]
    lines += ["", "## Messages", "", "| kind | recipient | due | delivered / why not |",
              "|---|---|---|---|"]
    for m in review["messages"]:
        lines.append(f"| {m['kind']} | {m['recipient']} | {m['due']} | "
                     f"{m['delivered'] or m['why_not']} |")
    lines += ["", "## Timeline", ""]
    lines += [f"- {e['at']} {e['kind']}: {e['text']}" for e in review["timeline"]]
    return "\n".join(lines) + "\n"
