"""`hismon report`: availability, incidents, MTTA/MTTR per system and per vendor.

Computed from the stored incidents. Downtime is the time a system spent in a *critical*
incident (a warning is an early warning, not downtime), clipped to the report window and to
the monitored time (from the first probe of the system's checks: time before monitoring
started is neither up nor down). Planned downtime (maintenance windows and silences) is left
out of both downtime and monitored time, as the status history does.

A vendor is charged only with what it caused: not the time inside maintenance windows, not
incidents `caused_by` another system (the core network took the doctor station down), and
its response SLA is judged only for incidents counted against it, by
`monitor.delivery.context.vendor_sla_status`. Drills are listed but never counted.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from monitor.config.model import Config
from monitor.core.durations import format_duration
from monitor.core.models import Incident, Silence
from monitor.core.timefmt import iso
from monitor.delivery.context import sla_status
from monitor.incidents import maintenance
from monitor.store.base import Store


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
    monitored_seconds: float = 0.0
    """Report window from the first probe on, less planned maintenance."""
    not_counted: int = 0
    """Vendor rows: incidents inside a maintenance window or caused by another system."""


@dataclass
class Report:
    since: float
    until: float
    systems: list[Row]
    vendors: list[Row]
    longest: list[dict[str, Any]]


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


Interval = tuple[float, float]


def merge(intervals: list[Interval]) -> list[Interval]:
    """Sorted, non-overlapping union of intervals."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def overlap(start: float, end: float, intervals: list[Interval]) -> float:
    """Seconds of [start, end) covered by the (merged) intervals."""
    return sum(max(min(end, b) - max(start, a), 0.0) for a, b in intervals)


def planned(config: Config, silences: Iterable[Silence], since: float,
            until: float) -> dict[str, list[Interval]]:
    """Per system, the merged maintenance windows and silences over the report window."""
    found: dict[str, list[Interval]] = {}
    for window in maintenance.windows(config, list(silences), since,
                                      horizon=max(until - since, 0.0)):
        for system_id in window.systems:
            found.setdefault(system_id, []).append((window.start, window.end))
    return {k: merge(v) for k, v in found.items()}


def build_report(config: Config, incidents: list[Incident], since: float, until: float,
                 silences: Iterable[Silence] = (),
                 monitored_since: Mapping[str, float] | None = None) -> Report:
    """`monitored_since`: per system, its first probe (absent: monitored all along)."""
    windows = planned(config, silences, since, until)
    by_system: dict[str, list[Incident]] = {s.id: [] for s in config.systems}
    for incident in incidents:
        end = incident.resolved_at if incident.resolved_at is not None else until
        if end >= since and incident.started_at <= until and incident.system in by_system:
            by_system[incident.system].append(incident)

    def span(system_id: str) -> Interval:
        first = (monitored_since or {}).get(system_id, since)
        return max(since, first), until

    def monitored(system_id: str) -> float:
        start, end = span(system_id)
        return max(end - start, 0.0) - overlap(start, end, windows.get(system_id, []))

    def downtime(incident: Incident) -> float:
        start, end = span(incident.system)
        down_end = incident.resolved_at if incident.resolved_at is not None else until
        a, b = max(incident.started_at, start), min(down_end, end)
        if b <= a:
            return 0.0
        return (b - a) - overlap(a, b, windows.get(incident.system, []))

    def in_window(incident: Incident) -> bool:
        return overlap(incident.started_at, incident.started_at + 1e-6,
                       windows.get(incident.system, [])) > 0

    def summarize(name: str, system_ids: list[str], vendor: bool) -> Row:
        row = Row(name=name, systems=system_ids)
        acks, repairs = [], []
        for system_id in system_ids:
            row.monitored_seconds += monitored(system_id)
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
                charged = not (incident.caused_by or in_window(incident))
                if vendor and not charged:
                    row.not_counted += 1
                    continue
                if incident.severity == "critical":
                    row.downtime_seconds += downtime(incident)
                if not charged:
                    continue
                vendor_of = config.system(system_id).vendor
                status = sla_status(incident, vendor_of.response_sla if vendor_of else None,
                                    until)
                row.sla_kept += status == "kept"
                row.sla_missed += status == "missed"
        if row.monitored_seconds > 0:
            row.availability_percent = round(
                100.0 * (1 - row.downtime_seconds / row.monitored_seconds), 3)
        row.mtta_seconds, row.mttr_seconds = _mean(acks), _mean(repairs)
        return row

    systems = [summarize(s.id, [s.id], vendor=False) for s in config.systems]
    vendor_systems: dict[str, list[str]] = {}
    for s in config.systems:
        if s.vendor is not None:
            vendor_systems.setdefault(s.vendor.name, []).append(s.id)
    vendors = [summarize(name, ids, vendor=True) for name, ids in sorted(vendor_systems.items())]
    real = [i for group in by_system.values() for i in group
            if not i.drill and i.severity == "critical"]
    real.sort(key=lambda i: (i.resolved_at or until) - i.started_at, reverse=True)
    tz = config.site.tz
    longest = [{"incident": i.id, "system": i.system,
                "started_at": iso(i.started_at, tz), "resolved_at": iso(i.resolved_at, tz),
                "duration_seconds": round((i.resolved_at or until) - i.started_at, 1),
                "suspected_cause": i.suspected_cause} for i in real[:10]]
    return Report(since, until, systems, vendors, longest)


async def first_probes(store: Store, config: Config, since: float,
                       until: float) -> dict[str, float]:
    """Per system, when monitoring began, from the status history (SPEC §7).

    The 5-minute check buckets (kept 48 h) give it to 5 minutes; older starts come from the
    first daily row, whose seconds tell how much of that day was monitored. A system with
    no history at all is taken as monitored over the whole window.
    """
    found: dict[str, float] = {}
    for row in await store.load_system_buckets("day", since - 2 * 86400, until):
        if row.system in found:
            continue
        seen = row.ok_s + row.degraded_s + row.down_s + row.maint_s
        found[row.system] = row.start + max(86400.0 - seen, 0.0)
    for bucket in await store.load_check_buckets(max(since, until - 2 * 86400), until):
        if bucket.system not in found or bucket.start < found[bucket.system]:
            found[bucket.system] = bucket.start
    known = {s.id for s in config.systems}
    return {k: v for k, v in found.items() if k in known}


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
               "availability_percent", "mtta_seconds", "mttr_seconds", "sla_kept", "sla_missed",
               "monitored_seconds", "not_counted"]
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
                             r.sla_kept, r.sla_missed, round(r.monitored_seconds, 1),
                             r.not_counted])
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
