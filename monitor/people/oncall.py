"""Who is on duty in each schedule, and the coming handovers (`hismon oncall`, the API)."""

from __future__ import annotations

from typing import Any

from monitor.core.models import iso
from monitor.people.rotation import Rotation, handovers, on_duty


def _who(config: Any, person_id: str) -> dict[str, str]:
    try:
        return {"id": person_id, "name": config.person(person_id).name}
    except KeyError:
        return {"id": person_id, "name": person_id}


def oncall(config: Any, at: float, days: float = 0) -> list[dict[str, Any]]:
    """One entry per schedule: `id`, `on_duty`, `next`, `until`, `override`, `handovers`."""
    tz = config.site.tz
    found = []
    for schedule in config.schedules:
        rotation = Rotation.of(schedule)
        duty = on_duty(rotation, at)
        entry: dict[str, Any] = {
            "id": schedule.id, "on_duty": _who(config, duty.person),
            "next": _who(config, duty.next), "until": iso(duty.until, tz),
            "override": duty.override,
        }
        if days > 0:
            entry["handovers"] = [
                {"at": iso(h.at, tz), "to": _who(config, h.person), "override": h.override}
                for h in handovers(rotation, at, at + days * 86400)]
        found.append(entry)
    return found


def render_table(entries: list[dict[str, Any]]) -> str:
    """Plain text for a terminal: who now, the backup, then the handovers."""
    lines: list[str] = []
    for entry in entries:
        until = (entry["until"] or "")[:16].replace("T", " ")
        cover = " (override)" if entry["override"] else ""
        lines.append(f"{entry['id']}: {entry['on_duty']['name']} ({entry['on_duty']['id']})"
                     f"{cover} until {until}; next: {entry['next']['name']}")
        for handover in entry.get("handovers", []):
            at = handover["at"][:16].replace("T", " ")
            mark = " (override)" if handover["override"] else ""
            lines.append(f"  {at}  → {handover['to']['name']} ({handover['to']['id']}){mark}")
    if not entries:
        lines.append("no schedules in this config")
    return "\n".join(lines) + "\n"
