"""Build what a message template sees (documented in docs/messages.md) and the SPEC §6 payload."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from monitor.config.i18n import join_names, text
from monitor.config.model import Config
from monitor.core.durations import format_duration
from monitor.core.models import Incident
from monitor.core.timefmt import iso
from monitor.core.timefmt import local_time as local
from monitor.people.shape import confirmation_context, people_fields


def incident_payload(incident: Incident, config: Config) -> dict[str, Any]:
    """The `incident` object of the webhook body and the API (SPEC §6, §7)."""
    tz = config.site.tz
    system = config.system(incident.system) if config.has_system(incident.system) else None
    return {
        "id": incident.id,
        "system": incident.system,
        "system_name": system.name if system else incident.system,
        "severity": incident.severity,
        "status": incident.status,
        "started_at": iso(incident.started_at, tz),
        "acknowledged_by": incident.acknowledged_by,
        "acknowledged_at": iso(incident.acknowledged_at, tz),
        "resolved_at": iso(incident.resolved_at, tz),
        "suspected_cause": incident.suspected_cause,
        "cause_evidence": list(incident.cause_evidence),
        "caused_by": incident.caused_by,
        "caused_by_system": incident.caused_by_system,
        "affected_departments": list(incident.affected_departments),
        "failing_checks": [_check_payload(c, tz) for c in incident.failing_checks],
        "held": incident.held,
        "drill": incident.drill,
        **people_fields(incident, tz),
    }


def _check_payload(check: dict[str, Any], tz: Any) -> dict[str, Any]:
    """A failing check as the payload shows it; a stale one with its last result's time."""
    entry = dict(check)
    if isinstance(entry.get("last_run"), (int, float)):
        entry["last_run_local"] = local(float(entry["last_run"]), tz)
        entry["last_run"] = iso(float(entry["last_run"]), tz)
    return entry


def unseen_since(incident: Incident) -> tuple[bool, float | None]:
    """(every failing check is stale, the oldest of their last results).

    Then hismon cannot see the system (SPEC 9): messages say "not probed since T", never
    "still down" (issue 10 item 10)."""
    failing = incident.failing_checks
    if not failing or not all(c.get("stale") for c in failing):
        return False, None
    times = [float(t) for c in failing if isinstance(t := c.get("last_run"), (int, float))]
    return True, min(times) if times else None


def message_context(
    kind: str,
    incident: Incident,
    config: Config,
    now: float,
    *,
    department_id: str | None = None,
    language: str,
    note: dict[str, Any] | None = None,
    note_missing: bool = False,
    affected_systems: list[str] | None = None,
    also_departments: tuple[str, ...] = (),
) -> dict[str, Any]:
    """`also_departments`: other departments one post to a shared notifier speaks for; the
    greeting names them all and `department_systems` holds the systems any of them uses."""
    tz = config.site.tz
    site_language = config.site.language

    def tr(item: Any, field: str) -> Any:
        """The reader's language (SPEC §7): theirs, else the site's, else any."""
        return text(item, field, language, site_language)

    system = config.system(incident.system)
    end = incident.resolved_at if incident.resolved_at is not None else now
    departments = [config.department(d) for d in incident.affected_departments]
    by_campus: OrderedDict[str, list[str]] = OrderedDict()
    for department in departments:
        by_campus.setdefault(campus_name(config, department.campus, language) or "-",
                             []).append(tr(department, "name"))
    payload = incident_payload(incident, config)
    payload["system_name"] = tr(system, "name")
    unseen, since = unseen_since(incident)
    payload.update(
        started_at_local=local(incident.started_at, tz),
        resolved_at_local=local(incident.resolved_at, tz),
        acknowledged_at_local=local(incident.acknowledged_at, tz),
        ack_note=incident.ack_note,
        duration=format_duration(max(end - incident.started_at, 0)),
    )
    vendor = None
    if system.vendor is not None:
        vendor = {
            "name": tr(system.vendor, "name"),
            "contact": system.vendor.contact,
            "response_sla": format_duration(system.vendor.response_sla)
            if system.vendor.response_sla else None,
            "sla_status": sla_status(incident, system.vendor.response_sla, now),
        }
    base_url = config.server.base_url
    own, spoken_for = speaking_for(config, department_id, also_departments, language)
    return {
        "kind": kind,
        "drill": incident.drill,
        "language": language,
        "site": site_context(config),
        "status_url": f"{base_url}/",
        "next_update_local": local(next_update_at(incident, config, now), tz),
        "incident_url": f"{base_url}/incidents/{incident.id}",
        "department_url": f"{base_url}/departments/{department_id}" if department_id else None,
        "department": own,
        "departments_spoken_for": spoken_for,
        "incident": payload,
        "system": {
            "id": system.id, "name": tr(system, "name"), "criticality": system.criticality,
            "downtime_procedure": (tr(system, "downtime_procedure") or "").strip() or None,
            "still_works": (tr(system, "still_works") or "").strip() or None,
        },
        "affected_systems": [
            {"id": s, "name": tr(config.system(s), "name")}
            for s in (affected_systems or [incident.system])
        ],
        "department_systems": department_systems(
            config, affected_systems or [incident.system], [d["id"] for d in spoken_for],
            incident.system, language),
        "departments": [department_context(config, d, language) for d in departments],
        "departments_by_campus": dict(by_campus),
        "cause": {"code": incident.suspected_cause, "evidence": list(incident.cause_evidence)},
        "vendor": vendor,
        "note": note,
        "note_missing": note_missing,
        "unseen": unseen,
        "unseen_since_local": local(since, tz) if since is not None else None,
        "confirmations": confirmation_context(
            incident, {d.id: text(d, "name", language, config.site.language)
                       for d in departments}),
    }


def campus_name(config: Config, campus_id: str | None, language: str) -> str | None:
    """A campus's display name in `language` (its id when the site lists no such campus)."""
    if campus_id is None:
        return None
    found = next((c for c in config.site.campuses if c.id == campus_id), None)
    return text(found, "name", language, config.site.language) if found else campus_id


def department_systems(config: Config, affected: list[str], department_ids: list[str],
                       root: str, language: str) -> list[dict[str, Any]]:
    """The down systems a department itself uses, each with its own downtime procedure.

    When the core network (with no procedure of its own, as recommended) takes the doctor
    station and the LIS down, Outpatient reads "Doctor station and LIS", each with its
    procedure, not "Core network" and the generic text. A department that uses none of them
    directly (named in a step by id) reads the incident's own system. Several departments
    (one post to the notifier they share) read the systems any of them uses.
    """
    if not department_ids:
        return []
    site_language = config.site.language
    used = [s for s in dict.fromkeys(affected) if config.has_system(s)
            and any(d in config.system(s).departments for d in department_ids)]
    found = []
    for system_id in used or [root]:
        if not config.has_system(system_id):
            continue
        system = config.system(system_id)
        found.append({
            "id": system.id, "name": text(system, "name", language, site_language),
            "criticality": system.criticality,
            "downtime_procedure": (text(system, "downtime_procedure", language, site_language)
                                   or "").strip() or None,
            "still_works": (text(system, "still_works", language, site_language)
                            or "").strip() or None})
    return found


def speaking_for(config: Config, department_id: str | None, also: tuple[str, ...],
                 language: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(`department`, `departments_spoken_for`) of a message: one post to a notifier several
    departments share greets them all ("急诊科、门诊部" / "Emergency and Outpatient")."""
    spoken_for = [department_context(config, config.department(d), language)
                  for d in (department_id, *also) if d]
    own = spoken_for[0] if spoken_for else None
    if own is not None and also:
        own = {**own, "name": join_names([d["name"] for d in spoken_for], language)}
    return own, spoken_for


def department_context(config: Config, dept: Any, language: str) -> dict[str, Any]:
    return {"id": dept.id, "name": text(dept, "name", language, config.site.language),
            "campus": dept.campus, "campus_name": campus_name(config, dept.campus, language)}


def maintenance_reason(config: Config, window_key: str | None, reason: str,
                       language: str) -> str:
    """A config window's `reason` in `language`; run-time silences have one text."""
    if window_key and window_key.startswith("config-"):
        index = window_key.removeprefix("config-").split("@", 1)[0]
        if index.isdigit() and int(index) < len(config.maintenance):
            found = text(config.maintenance[int(index)], "reason", language,
                         config.site.language)
            return str(found)
    return reason


def site_context(config: Config) -> dict[str, Any]:
    return {"name": config.site.name, "timezone": config.site.timezone,
            "it_contact": config.site.it_contact}


def maintenance_context(
    kind: str,
    config: Config,
    systems: list[str],
    start: float,
    end: float,
    reason: str,
    *,
    department_id: str | None,
    language: str,
    window_key: str | None = None,
    back: float | None = None,
    also_departments: tuple[str, ...] = (),
) -> dict[str, Any]:
    """What `maintenance_notice` and `maintenance_over` templates see (no incident).

    `back`: the systems came back only then, after the window's planned end (the held
    `maintenance_over`); the back-fill window runs to it."""
    site_language = config.site.language
    tz = config.site.tz
    base_url = config.server.base_url
    own, spoken_for = speaking_for(config, department_id, also_departments, language)
    return {
        "kind": kind,
        "drill": False,
        "language": language,
        "site": site_context(config),
        "status_url": f"{base_url}/",
        "department_url": f"{base_url}/departments/{department_id}" if department_id else None,
        "department": own,
        "departments_spoken_for": spoken_for,
        "incident": None,
        "maintenance": {
            "reason": maintenance_reason(config, window_key, reason, language),
            "start_local": local(start, tz),
            "end_local": local(end, tz),
            "start": iso(start, tz),
            "end": iso(end, tz),
            "duration": format_duration(end - start),
            "overran": back is not None and back > end,
            "back_local": local(back, tz) if back is not None and back > end else None,
            "systems": [
                {"id": s.id, "name": text(s, "name", language, site_language),
                 "downtime_procedure": (text(s, "downtime_procedure", language, site_language)
                                        or "").strip() or None,
                 "still_works": (text(s, "still_works", language, site_language)
                                 or "").strip() or None}
                for s in (config.system(x) for x in systems)],
        },
    }


def vendor_sla_status(escalated_at: float | None, responded_at: float | None,
                      resolved_at: float | None, sla: float | None,
                      now: float) -> str | None:
    """The vendor's response SLA (SPEC §13.4): kept, missed, pending, or None (nothing to judge).

    Pure, so the report, the messages and the vendor statement judge alike:

    - the clock starts when `vendor_escalation` was delivered (`escalated_at`); no escalation
      (IT handled it first) or no agreed `response_sla`: None;
    - the vendor's own response (`responded_at`, from the vendor link or a response taken by
      phone), not an IT acknowledgement, stops it: kept if within the SLA;
    - an incident that resolved before any response kept the SLA if it resolved within it:
      an escalation 3 s before the recovery is never "missed" because the report ends later;
    - still open and unanswered: missed once the SLA has passed at `now`, else pending.
    """
    if not sla or escalated_at is None:
        return None
    if responded_at is not None:
        return "kept" if responded_at - escalated_at <= sla else "missed"
    if resolved_at is not None:
        return "kept" if resolved_at - escalated_at <= sla else "missed"
    return "missed" if now - escalated_at > sla else "pending"


def sla_status(incident: Incident, sla: float | None, now: float) -> str | None:
    """`vendor_sla_status` for a stored incident (its vendor response, once recorded)."""
    responded: float | None = getattr(incident, "vendor_responded_at", None)
    return vendor_sla_status(incident.vendor_escalated_at, responded, incident.resolved_at,
                             sla, now)


def next_update_at(incident: Incident, config: Config, now: float) -> float | None:
    """When the plan's next `every` step falls due, for the leadership report."""
    system = config.system(incident.system)
    if not system.plan or incident.severity != "critical":
        return None
    base = incident.plan_started_at or incident.started_at
    times = []
    for step in config.plan(system.plan).steps:
        if step.every:
            elapsed = max(now - base, 0.0)
            times.append(base + (int(elapsed // step.every) + 1) * step.every)
    return min(times) if times else None
