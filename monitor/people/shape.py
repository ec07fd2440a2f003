"""The incident fields of SPEC §13 in the payload shape (API, webhook `incident`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from monitor.core.models import Incident, iso


def people_fields(incident: Incident, tz: dt.tzinfo) -> dict[str, Any]:
    return {
        "source": incident.source,
        "title": incident.title,
        "declared_by": incident.declared_by,
        "resolved_by": incident.resolved_by,
        "confirmed_cause": incident.confirmed_cause,
        "root_cause": incident.root_cause,
        "actions": list(incident.actions),
        "departments_confirmed": {
            dept: {key: iso(value, tz) if key.endswith("_at") else value
                   for key, value in entry.items()}
            for dept, entry in incident.departments_confirmed.items()},
        "vendor_responded_at": iso(incident.vendor_responded_at, tz),
        "vendor_responded_by": incident.vendor_responded_by,
        "vendor_eta": incident.vendor_eta,
    }


def confirmation_context(incident: Incident, names: dict[str, str]) -> dict[str, list[str]]:
    """Department names by what they confirmed (SPEC 13.3), for leadership and updates:
    `on_paper`, `unanswered` (told, no on-paper answer), `backfill_done`, `backfill_pending`."""
    confirmed = incident.departments_confirmed
    found: dict[str, list[str]] = {"on_paper": [], "unanswered": [], "backfill_done": [],
                                   "backfill_pending": []}
    for dept in incident.affected_departments:
        entry = confirmed.get(dept) or {}
        name = names.get(dept, dept)
        found["on_paper" if entry.get("on_paper_at") else "unanswered"].append(name)
        found["backfill_done" if entry.get("backfill_done_at") else "backfill_pending"].append(
            name)
    return found
