"""`hismon report --vendor NAME --month YYYY-MM`: the monthly vendor SLA statement (SPEC 13.4).

The statement a hospital attaches when it deducts from a vendor's maintenance fee: one row
per incident of the vendor's systems that *started* in the month — escalated at, responded
at, response time against `response_sla`, kept or overrun, resolved at, outage minutes.
Incidents that started inside a maintenance window and incidents `caused_by` another
system are listed apart and not counted. Availability is over the monitored time of the
month only (the figures of `monitor/commands/report.py`, which this builds on); the SLA
verdict is `vendor_sla_status`, the one the messages and the report use.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

from jinja2 import Environment

from monitor.commands.report import build_report, overlap, planned
from monitor.config.i18n import text
from monitor.config.model import Config
from monitor.core.models import Incident, Silence
from monitor.core.timefmt import iso
from monitor.delivery.context import vendor_sla_status


def month_bounds(month: str, tz: dt.tzinfo) -> tuple[float, float]:
    """`2026-11` → [start, end) of that month in the site's time zone."""
    try:
        first = dt.datetime.strptime(month, "%Y-%m").replace(tzinfo=tz)
    except ValueError:
        raise ValueError(f"--month must look like 2026-11, got {month!r}") from None
    after = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    return first.timestamp(), after.timestamp()


def vendor_names(config: Config, wanted: str) -> tuple[str, list[str]]:
    """The vendor's display name and its systems; `wanted` matches any language, any case."""
    needle = wanted.strip().casefold()
    systems, shown = [], None
    for system in config.systems:
        vendor = system.vendor
        if vendor is None:
            continue
        names = {vendor.name, *((vendor.texts("name") or {}).values())}
        if needle in {n.casefold() for n in names}:
            systems.append(system.id)
            shown = shown or str(text(vendor, "name", config.site.language))
    if shown is None:
        raise LookupError(f"no vendor named {wanted!r}")
    return shown, systems


def statement(config: Config, incidents: Iterable[Incident], vendor: str, month: str,
              now: float, silences: Iterable[Silence] = (),
              monitored_since: Mapping[str, float] | None = None) -> dict[str, Any]:
    tz = config.site.tz
    since, until = month_bounds(month, tz)
    until_now = min(until, now)
    name, system_ids = vendor_names(config, vendor)
    windows = planned(config, list(silences), since, until)
    rows: list[dict[str, Any]] = []
    apart: list[dict[str, Any]] = []
    mine = [i for i in incidents if i.system in system_ids and not i.drill
            and since <= i.started_at < until]
    for incident in sorted(mine, key=lambda i: i.started_at):
        system = config.system(incident.system)
        sla = system.vendor.response_sla if system.vendor else None
        end = incident.resolved_at if incident.resolved_at is not None else until_now
        responded = incident.vendor_responded_at
        escalated = incident.vendor_escalated_at
        status = vendor_sla_status(escalated, responded, incident.resolved_at, sla, now)
        response = (responded - escalated) if responded is not None and escalated else None
        overrun = None
        if status == "missed" and sla and escalated is not None:
            stop = responded if responded is not None else min(end, now)
            overrun = max(stop - escalated - sla, 0.0)
        row: dict[str, Any] = {
            "incident": incident.id, "system": incident.system,
            "system_name": str(text(system, "name", config.site.language)),
            "started_at": iso(incident.started_at, tz), "escalated_at": iso(escalated, tz),
            "responded_at": iso(responded, tz), "responded_by": incident.vendor_responded_by,
            "response_seconds": round(response, 1) if response is not None else None,
            "sla_seconds": sla, "sla": status,
            "overrun_seconds": round(overrun, 1) if overrun is not None else None,
            "resolved_at": iso(incident.resolved_at, tz),
            "outage_minutes": round(max(end - incident.started_at, 0) / 60, 1)
            if incident.severity == "critical" else 0.0,
        }
        in_window = overlap(incident.started_at, incident.started_at + 1e-6,
                            windows.get(incident.system, [])) > 0
        if incident.caused_by or in_window:
            row["why_apart"] = (f"caused by {incident.caused_by_system or incident.caused_by}"
                                if incident.caused_by else "started in a maintenance window")
            apart.append(row)
        else:
            rows.append(row)
    report = build_report(config, list(incidents), since, until_now, silences, monitored_since)
    figures = next((v for v in report.vendors if set(v.systems) == set(system_ids)), None)
    return {
        "vendor": name, "month": month, "systems": system_ids,
        "since": iso(since, tz), "until": iso(until, tz),
        "incidents": rows, "not_counted": apart,
        "totals": {
            "incidents": len(rows),
            "sla_kept": sum(r["sla"] == "kept" for r in rows),
            "sla_missed": sum(r["sla"] == "missed" for r in rows),
            "outage_minutes": round(sum(float(r["outage_minutes"]) for r in rows), 1),
            "availability_percent": figures.availability_percent if figures else None,
            "monitored_seconds": round(figures.monitored_seconds, 1) if figures else None,
        },
    }


COLUMNS = ("incident", "system", "started_at", "escalated_at", "responded_at",
           "response_seconds", "sla", "overrun_seconds", "resolved_at", "outage_minutes")

HTML = """<!doctype html><html><head><meta charset="utf-8">
<title>{{ s.vendor }} {{ s.month }}</title>
<style>@page { size: A4 landscape; margin: 12mm; }
body { font: 10pt/1.4 system-ui, "WenQuanYi Micro Hei", sans-serif; }
table { border-collapse: collapse; width: 100%; } th, td { border: 1px solid #999;
padding: 2px 4px; text-align: left; } th { background: #eee; } .missed { color: #a40000; }
</style></head><body>
<h1>Vendor SLA statement: {{ s.vendor }}, {{ s.month }}</h1>
<p>Systems: {{ s.systems|join(', ') }}. Incidents: {{ s.totals.incidents }};
SLA kept {{ s.totals.sla_kept }}, missed {{ s.totals.sla_missed }}; outage
{{ s.totals.outage_minutes }} min; availability {{ s.totals.availability_percent }} %
(over monitored time).</p>
<table><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in s.incidents %}<tr class="{{ r.sla }}">{% for c in columns %}
<td>{{ r[c] if r[c] is not none else '' }}</td>{% endfor %}</tr>{% endfor %}</table>
{% if s.not_counted %}<h2>Not counted</h2><table><tr><th>incident</th><th>system</th>
<th>started_at</th><th>why</th></tr>{% for r in s.not_counted %}<tr><td>{{ r.incident }}</td>
<td>{{ r.system }}</td><td>{{ r.started_at }}</td><td>{{ r.why_apart }}</td></tr>
{% endfor %}</table>{% endif %}
</body></html>
"""


def render_statement(data: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*COLUMNS, "counted"])
        for row in data["incidents"]:
            writer.writerow([*("" if row[c] is None else row[c] for c in COLUMNS), "yes"])
        for row in data["not_counted"]:
            writer.writerow([*("" if row[c] is None else row[c] for c in COLUMNS),
                             f"no: {row['why_apart']}"])
        return out.getvalue()
    if fmt == "html":
        return Environment(autoescape=True).from_string(HTML).render(s=data, columns=COLUMNS)
    totals = data["totals"]
    lines = [f"{data['vendor']} {data['month']} ({', '.join(data['systems'])})",
             "  ".join(f"{c:<25}" if c.endswith("_at") else c for c in COLUMNS)]
    for row in data["incidents"]:
        lines.append("  ".join(
            f"{'' if row[c] is None else row[c]!s:<25}" if c.endswith("_at")
            else ("" if row[c] is None else str(row[c])) for c in COLUMNS))
    for row in data["not_counted"]:
        lines.append(f"not counted: {row['incident']} {row['system']} {row['started_at']} "
                     f"({row['why_apart']})")
    lines.append(f"totals: {totals['incidents']} incidents, SLA kept {totals['sla_kept']}, "
                 f"missed {totals['sla_missed']}, outage {totals['outage_minutes']} min, "
                 f"availability {totals['availability_percent']} % of monitored time")
    return "\n".join(lines) + "\n"


def run_statement(config: Config, vendor: str | None, month: str | None, fmt: str,
                  now: float) -> int:
    """`hismon report --vendor NAME --month YYYY-MM`: exit 0, or 2 for a bad argument."""
    import asyncio
    import sys

    from monitor.commands.report import first_probes
    from monitor.store import open_store

    if not vendor:
        print("--month needs --vendor NAME", file=sys.stderr)
        return 2
    month = month or dt.datetime.fromtimestamp(now, config.site.tz).strftime("%Y-%m")
    try:
        since, until = month_bounds(month, config.site.tz)
        vendor_names(config, vendor)
    except (ValueError, LookupError) as exc:
        print(str(exc).strip("'\""), file=sys.stderr)
        return 2

    async def load() -> dict[str, Any]:
        store = open_store(config.state.url)
        await store.open()
        try:
            incidents = await store.list_incidents(since=since - 86400, limit=100_000)
            silences = await store.list_silences()
            first = await first_probes(store, config, since, min(until, now))
            return statement(config, incidents, vendor, month, now, silences, first)
        finally:
            await store.close()

    sys.stdout.write(render_statement(asyncio.run(load()), fmt))
    return 0
