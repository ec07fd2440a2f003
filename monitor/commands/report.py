"""`hismon report`: availability, incidents, MTTA/MTTR per system and per vendor.

Computed from the stored incidents. Downtime is the time a system spent in a *critical*
incident (a warning is an early warning, not downtime), clipped to the report window.
Drills are listed but never counted as downtime.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from monitor.config.model import Config
from monitor.core.durations import format_duration
from monitor.core.models import Incident, iso
from monitor.delivery.context import sla_status


@dataclass
class Row:
    name: str
    systems: list[str] = field(default_factory=list)
    incidents: int = 0
    critical: int = 0
    drills: int = 0
    downtime_seconds: float = 0.0
    availability_percent: float = 100.0
    mtta_seconds: float | None = None
    mttr_seconds: float | None = None
    sla_kept: int = 0
    sla_missed: int = 0


@dataclass
class Report:
    since: float
    until: float
    systems: list[Row]
    vendors: list[Row]
    longest: list[dict[str, Any]]


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def build_report(config: Config, incidents: list[Incident], since: float, until: float) -> Report:
    window = max(until - since, 1.0)
    by_system: dict[str, list[Incident]] = {s.id: [] for s in config.systems}
    for incident in incidents:
        end = incident.resolved_at if incident.resolved_at is not None else until
        if end >= since and incident.started_at <= until and incident.system in by_system:
            by_system[incident.system].append(incident)

    def summarize(name: str, system_ids: list[str]) -> Row:
        row = Row(name=name, systems=system_ids)
        acks, repairs = [], []
        for system_id in system_ids:
            for incident in by_system[system_id]:
                if incident.drill:
                    row.drills += 1
                    continue
                row.incidents += 1
                if incident.acknowledged_at is not None:
                    acks.append(incident.acknowledged_at - incident.started_at)
                if incident.resolved_at is not None:
                    repairs.append(incident.resolved_at - incident.started_at)
                if incident.severity == "critical":
                    row.critical += 1
                    end = incident.resolved_at if incident.resolved_at is not None else until
                    row.downtime_seconds += max(min(end, until) - max(incident.started_at,
                                                                       since), 0.0)
                vendor = config.system(system_id).vendor
                status = sla_status(incident, vendor.response_sla if vendor else None, until)
                row.sla_kept += status == "kept"
                row.sla_missed += status == "missed"
        per_system_window = window * max(len(system_ids), 1)
        row.availability_percent = round(100.0 * (1 - row.downtime_seconds / per_system_window), 3)
        row.mtta_seconds, row.mttr_seconds = _mean(acks), _mean(repairs)
        return row

    systems = [summarize(s.id, [s.id]) for s in config.systems]
    vendor_systems: dict[str, list[str]] = {}
    for s in config.systems:
        if s.vendor is not None:
            vendor_systems.setdefault(s.vendor.name, []).append(s.id)
    vendors = [summarize(name, ids) for name, ids in sorted(vendor_systems.items())]
    real = [i for group in by_system.values() for i in group
            if not i.drill and i.severity == "critical"]
    real.sort(key=lambda i: (i.resolved_at or until) - i.started_at, reverse=True)
    tz = config.site.tz
    longest = [{"incident": i.id, "system": i.system,
                "started_at": iso(i.started_at, tz), "resolved_at": iso(i.resolved_at, tz),
                "duration_seconds": round((i.resolved_at or until) - i.started_at, 1),
                "suspected_cause": i.suspected_cause} for i in real[:10]]
    return Report(since, until, systems, vendors, longest)


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def render(report: Report, fmt: str, config: Config) -> str:
    if fmt == "json":
        return json.dumps({
            "since": iso(report.since, config.site.tz), "until": iso(report.until, config.site.tz),
            "systems": [asdict(r) for r in report.systems],
            "vendors": [asdict(r) for r in report.vendors],
            "longest_outages": report.longest}, ensure_ascii=False, indent=2)
    columns = ["scope", "name", "incidents", "critical", "drills", "downtime_seconds",
               "availability_percent", "mtta_seconds", "mttr_seconds", "sla_kept", "sla_missed"]
    rows = [("system", r) for r in report.systems] + [("vendor", r) for r in report.vendors]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        for scope, r in rows:
            writer.writerow([scope, r.name, r.incidents, r.critical, r.drills,
                             round(r.downtime_seconds, 1), r.availability_percent,
                             "" if r.mtta_seconds is None else round(r.mtta_seconds, 1),
                             "" if r.mttr_seconds is None else round(r.mttr_seconds, 1),
                             r.sla_kept, r.sla_missed])
        return buffer.getvalue()
    lines = [f"hismon report {iso(report.since, config.site.tz)} → "
             f"{iso(report.until, config.site.tz)}", ""]
    header = (f"{'SCOPE':<7} {'NAME':<26} {'AVAIL%':>8} {'INC':>4} {'CRIT':>4} {'DOWN':>10} "
              f"{'MTTA':>9} {'MTTR':>9} {'SLA ok/miss':>11} {'DRILLS':>6}")
    lines.append(header)
    for scope, r in rows:
        lines.append(f"{scope:<7} {r.name[:26]:<26} {r.availability_percent:>8.3f} "
                     f"{r.incidents:>4} {r.critical:>4} {_fmt(r.downtime_seconds):>10} "
                     f"{_fmt(r.mtta_seconds):>9} {_fmt(r.mttr_seconds):>9} "
                     f"{f'{r.sla_kept}/{r.sla_missed}':>11} {r.drills:>6}")
    if report.longest:
        lines += ["", "Longest outages:"]
        for item in report.longest:
            lines.append(f"  {item['incident']:<10} {item['system']:<24} "
                         f"{_fmt(item['duration_seconds']):>10} since {item['started_at']} "
                         f"cause={item['suspected_cause']}")
    return "\n".join(lines) + "\n"
