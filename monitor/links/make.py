"""Which links a message carries and the lines that show them (SPEC §13.2-13.4).

Only with `server.public_url` set explicitly: a link built from the listen address would
point phones at 127.0.0.1. Drill messages carry none.

- IT (a recipient not reached through departments or the vendor): an acknowledgement link
  in `early_warning`, `outage_it` and a `progress_update` that asks for a note, while the
  incident is open and unacknowledged; one per recipient (person, else notifier).
- A department: its department link in `early_warning`, `department_outage`,
  `progress_update`, `recovery` and `backfill_reminder`. One post to a notifier several
  departments share speaks for each: `department` is the first one's link and
  `department:ID` each one's, every one on its own labelled line.
- The vendor: the vendor link in `vendor_escalation`.
"""

from __future__ import annotations

from typing import Any

from monitor.core.models import Incident
from monitor.core.types import MessageKind
from monitor.links.tokens import Claim, sign

ACK_KINDS: tuple[MessageKind, ...] = (
    MessageKind.EARLY_WARNING, MessageKind.OUTAGE_IT, MessageKind.PROGRESS_UPDATE)
DEPARTMENT_KINDS: tuple[MessageKind, ...] = (
    MessageKind.EARLY_WARNING, MessageKind.DEPARTMENT_OUTAGE, MessageKind.PROGRESS_UPDATE,
    MessageKind.RECOVERY, MessageKind.BACKFILL_REMINDER)
ASKING_KINDS: tuple[MessageKind, ...] = (MessageKind.EARLY_WARNING, MessageKind.OUTAGE_IT)
"""Kinds that always ask IT to take the incident (a progress update asks only for a note)."""
LABELS = {
    "zh": {"ack": "一键确认接手", "department": "科室确认（已启用纸质流程 / 补录完成）",
           "vendor": "厂商工程师响应", "named": "{name}确认（已启用纸质流程 / 补录完成）"},
    "en": {"ack": "Acknowledge", "department": "Confirm for your department (on paper / "
           "back-entry done)", "vendor": "Engineer responding",
           "named": "Confirm for {name} (on paper / back-entry done)"},
}
NAMED = "department:"
"""Key prefix of each department's link in a post that speaks for several."""


def links_for(config: Any, key: bytes | None, incident: Incident, kind: str, *,
              departments: tuple[str, ...], person: str | None, notifier: str, vendor: bool,
              note_missing: bool, now: float) -> dict[str, str]:
    """`{"ack"|"department"|"vendor": url}` for one message, empty when none apply."""
    base = config.server.public_url
    if key is None or not base or incident.drill or not incident.id:
        return {}
    base = base.rstrip("/")
    ttl = int(now + config.server.link_ttl)
    if departments:
        if kind not in DEPARTMENT_KINDS:
            return {}
        urls = {d: f"{base}/d/" + sign(key, Claim("department", incident.id, d, 0))
                for d in departments}
        found = {"department": urls[departments[0]]}
        if len(departments) > 1:
            found |= {NAMED + d: url for d, url in urls.items()}
        return found
    if vendor:
        if kind == "vendor_escalation" and incident.is_open:
            return {"vendor": f"{base}/v/" + sign(key, Claim("vendor", incident.id, notifier,
                                                             ttl))}
        return {}
    asks = kind in ASKING_KINDS or (kind == MessageKind.PROGRESS_UPDATE and note_missing)
    if asks and incident.is_open and incident.acknowledged_by is None:
        return {"ack": f"{base}/a/" + sign(key, Claim("ack", incident.id, person or notifier,
                                                      ttl))}
    return {}


def link_lines(links: dict[str, str], language: str,
               names: dict[str, str] | None = None) -> str:
    """The text's last lines: the links, which a channel's length limit never cuts.

    `names`: department names, for the one line per department of a shared post."""
    if not links:
        return ""
    labels = LABELS.get(language, LABELS["en"])
    named = any(k.startswith(NAMED) for k in links)
    lines = []
    for k, url in links.items():
        if k.startswith(NAMED):
            dept = k.removeprefix(NAMED)
            lines.append(f"{labels['named'].format(name=(names or {}).get(dept, dept))}: {url}")
        elif not (named and k == "department"):
            lines.append(f"{labels[k]}: {url}")
    return "\n\n" + "\n".join(lines)
