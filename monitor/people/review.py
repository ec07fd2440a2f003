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

from monitor.config.i18n import join_names, text
from monitor.core.durations import format_duration
from monitor.core.models import Incident, OutboxMessage, TimelineEntry, iso
from monitor.core.types import MessageKind
from monitor.delivery.context import vendor_sla_status
from monitor.people.words import (
    CAUSES,
    MESSAGE_KINDS,
    REVIEW_TEXT,
    TIMELINE_KINDS,
    WORDS,
    entry_text,
    name_of,
)

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
        name = name_of(config, "system", dependent.system, language)
        found.append({"id": dependent.system, "name": name, "incident": dependent.id,
                      "caused_by": root.id})
    return found


def _recipient_name(config: Any, message: OutboxMessage, language: str) -> str:
    """Who a message went to, as people call them: the person, the department(s) (one post
    to a notifier departments share speaks for each), else the notifier."""
    payload = message.payload
    person = payload.get("person")
    if isinstance(person, dict) and person.get("id"):
        return name_of(config, "person", str(person["id"]), language)
    departments = payload.get("departments") or (
        [payload["department"]] if payload.get("department") else [])
    if departments:
        return join_names([name_of(config, "department", str(d), language)
                           for d in departments], language)
    return str(payload.get("recipient") or message.notifier)


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
        "language": language,
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
                      "recipient_name": _recipient_name(config, m, language),
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
        "timeline": [{"at": iso(e.at, tz), "kind": e.kind,
                      "text": entry_text(e, config, language)} for e in timeline],
    }


def review_markdown(review: dict[str, Any]) -> str:
    """The review as Markdown, for `hismon review --format md` and a meeting's minutes, in
    the review's language (its JSON `language`: the site's, or the one asked for)."""
    language = str(review.get("language"))
    language = language if language in REVIEW_TEXT else "en"
    t, words = REVIEW_TEXT[language], WORDS[language]
    colon = "：" if language == "zh" else ": "

    def word(token: str | None) -> str:
        return words.get(token, token) if token else "—"

    def cause(code: str | None) -> str:
        return CAUSES[language].get(code, code) if code else "—"

    inc, window, ack = review["incident"], review["window"], review["acknowledgement"]
    detection = review["detection"]
    lines = [f"# {t['title']}{colon}{inc['id']}"
             + (f" — {inc['title']}" if inc.get("title") else ""), ""]
    lines += [f"- {t['systems']}{colon}{', '.join(s['name'] for s in review['systems'])}",
              f"- {t['severity']}{colon}{word(inc['severity'])} ({word(inc['source'])})",
              f"- {t['window']}{colon}{window['start']} → {window['end'] or t['ongoing']} "
              f"({window['duration']})",
              f"- {t['detection']}{colon}{detection['first_failed_probe']} → "
              f"{detection['first_it_message_delivered'] or t['never']}"
              + (f" ({detection['seconds']} s)" if detection.get("seconds") is not None
                 else ""),
              f"- {t['ack']}{colon}" + (f"{ack['by']}, {ack['at']}" if ack["by"]
                                        else t["never"]), ""]
    lines += [f"## {t['departments']}", "",
              f"| {t['department']} | {t['campus']} | {t['on_paper']} | {t['backfill']} |",
              "|---|---|---|---|"]
    for d in review["departments"]:
        paper = (d["on_paper_at"] + (f" ({d['on_paper_by']})" if d["on_paper_by"] else "")
                 ) if d["on_paper_at"] else t["no_answer"]
        back = (d["backfill_done_at"] + (f" ({d['backfill_done_by']})"
                                         if d["backfill_done_by"] else "")
                ) if d["backfill_done_at"] else t["pending"]
        lines.append(f"| {d['name']} | {d['campus_name']} | {paper} | {back} |")
    vendor = review["vendor"]
    if vendor:
        lines += ["", f"## {t['vendor']}", "",
                  f"- {vendor['name']}{colon}{t['escalated']} {vendor['escalated_at'] or '—'}; "
                  f"{t['responded']} {vendor['responded_at'] or '—'}"
                  + (f" ({vendor['responded_by']})" if vendor.get("responded_by") else "")
                  + f"; SLA {vendor['response_sla'] or '—'}{colon}{word(vendor['sla'])}"]
    found = review["cause"]
    lines += ["", f"## {t['cause']}", "", f"- {t['suspected']}{colon}{cause(found['suspected'])}",
              *[f"  - {e}" for e in found["evidence"]],
              f"- {t['confirmed']}{colon}{cause(found['confirmed'])}",
              f"- {t['root']}{colon}{review['root_cause'] or '—'}", "",
              f"## {t['actions']}", ""]
    lines += [f"- {a}" for a in review["actions"]] or ["- —"]
    lines += ["", f"## {t['notes']}", ""]
    lines += [f"- {n['at']} {n['by'] or ''}{colon}{n['text']}"
              for n in review["progress_notes"]] or ["- —"]
    lines += ["", f"## {t['messages']}", "",
              f"| {t['kind']} | {t['recipient']} | {t['due']} | {t['delivered']} |",
              "|---|---|---|---|"]
    for m in review["messages"]:
        lines.append(f"| {MESSAGE_KINDS[language].get(m['kind'], m['kind'])} | "
                     f"{m.get('recipient_name') or m['recipient']} | {m['due']} | "
                     f"{m['delivered'] or m['why_not']} |")
    lines += ["", f"## {t['timeline']}", ""]
    lines += [f"- {e['at']} {TIMELINE_KINDS[language].get(e['kind'], e['kind'])}{colon}"
              f"{e['text']}" for e in review["timeline"]]
    return "\n".join(lines) + "\n"
