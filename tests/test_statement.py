"""The monthly vendor SLA statement (SPEC 13.4): rows, SLA verdicts, what is listed apart,
totals, the vendor matched in any language, and the command on a real SQLite store."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.commands.statement import month_bounds, statement
from monitor.config.loader import load_config_text
from monitor.core.models import Incident
from monitor.store.sqlite import SqliteStore

CST = dt.timezone(dt.timedelta(hours=8))
NOV = dt.datetime(2026, 11, 1, tzinfo=CST).timestamp()
DEC = dt.datetime(2026, 12, 1, tzinfo=CST).timestamp()
CONFIG = """\
site: {name: H, timezone: Asia/Shanghai, language: zh}
systems:
  - id: his
    name: 门诊医生站
    vendor: {name: {zh: 某某软件, en: Acme Software}, notify: [v], response_sla: 30m}
  - id: lis
    name: LIS
    vendor: {name: Other Co, notify: [v], response_sla: 1h}
  - {id: core, name: Core network}
checks:
  - {id: his-web, system: his, type: http, url: "http://127.0.0.1:1/"}
notifiers:
  - {id: v, type: console}
maintenance:
  - {systems: [his], start: "2026-11-20T22:00:00+08:00", end: "2026-11-21T02:00:00+08:00",
     reason: upgrade}
"""


def inc(n: int, day: float, **kw: object) -> Incident:
    start = NOV + day * 86400
    base: dict[str, object] = {"id": f"inc-{n}", "system": "his", "severity": "critical",
                               "started_at": start, "opened_at": start,
                               "status": "resolved", "resolved_at": start + 3600}
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


def incidents() -> list[Incident]:
    d2 = NOV + 2 * 86400
    d5 = NOV + 5 * 86400
    d8 = NOV + 8 * 86400
    return [
        inc(1, 2, vendor_escalated_at=d2 + 600, vendor_responded_at=d2 + 600 + 900,
            vendor_responded_by="Wu"),                                     # kept (15 min)
        inc(2, 5, vendor_escalated_at=d5 + 600, vendor_responded_at=d5 + 600 + 2700),  # missed
        inc(3, 8, vendor_escalated_at=d8 + 3000, resolved_at=d8 + 3600),    # resolved in SLA
        inc(4, 10, caused_by="inc-0", caused_by_system="core"),             # apart
        inc(5, 19.95),                                  # 2026-11-20T22:48+08: in the window
        inc(6, 12, drill=True),                                             # never counted
        inc(7, 31),                                                         # December
        inc(8, 3, system="lis"),                                            # another vendor
    ]


def test_the_statement_rows_verdicts_and_totals() -> None:
    config = load_config_text(CONFIG, "s.yaml", {})
    found = statement(config, incidents(), "ACME software", "2026-11", now=DEC + 86400)
    assert found["vendor"] == "某某软件" and found["systems"] == ["his"]
    rows = {r["incident"]: r for r in found["incidents"]}
    assert list(rows) == ["inc-1", "inc-2", "inc-3"]
    assert rows["inc-1"]["sla"] == "kept" and rows["inc-1"]["response_seconds"] == 900
    assert rows["inc-2"]["sla"] == "missed" and rows["inc-2"]["overrun_seconds"] == 900
    assert rows["inc-3"]["sla"] == "kept", "resolved within the SLA before any response"
    assert rows["inc-1"]["outage_minutes"] == 60
    apart = {r["incident"]: r["why_apart"] for r in found["not_counted"]}
    assert apart == {"inc-4": "caused by core", "inc-5": "started in a maintenance window"}
    totals = found["totals"]
    assert (totals["incidents"], totals["sla_kept"], totals["sla_missed"]) == (3, 2, 1)
    assert totals["outage_minutes"] == 180
    # Availability over monitored time only: the month less the 4-hour window, 180 min down.
    month = 30 * 86400 - 4 * 3600
    assert totals["monitored_seconds"] == month
    assert totals["availability_percent"] == round(100 * (1 - 180 * 60 / month), 3)
    # Monitoring began on day 1: the day before the first probe is not counted either.
    late = statement(config, incidents(), "ACME software", "2026-11", now=DEC + 86400,
                     monitored_since={"his": NOV + 86400})["totals"]
    assert late["monitored_seconds"] == month - 86400
    assert late["availability_percent"] == round(100 * (1 - 180 * 60 / (month - 86400)), 3)
    assert statement(config, incidents(), "某某软件", "2026-11", DEC)["totals"]["incidents"] == 3
    with pytest.raises(LookupError):
        statement(config, incidents(), "Nobody Ltd", "2026-11", DEC)


def test_month_bounds_are_the_site_month() -> None:
    assert month_bounds("2026-11", CST) == (NOV, DEC)
    assert month_bounds("2026-12", CST)[1] == dt.datetime(2027, 1, 1, tzinfo=CST).timestamp()
    with pytest.raises(ValueError):
        month_bounds("Nov 2026", CST)


def test_the_command_prints_table_csv_json_and_html(tmp_path: Path) -> None:
    path = tmp_path / "h.yaml"
    path.write_text(CONFIG + f'state: {{url: "sqlite:///{tmp_path}/s.db"}}\n')

    async def fill() -> None:
        store = SqliteStore(f"sqlite:///{tmp_path}/s.db")
        await store.open()
        for incident in incidents():
            await store.save_incident(incident)
        await store.close()

    asyncio.run(fill())

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "monitor", "report", "-c", str(path),
                               "--vendor", "acme software", "--month", "2026-11", *args],
                              capture_output=True, text=True, timeout=60)

    data = json.loads(run("--format", "json").stdout)
    assert data["totals"]["incidents"] == 3
    rows = list(csv.reader(io.StringIO(run("--format", "csv").stdout)))
    assert rows[0][0] == "incident" and len(rows) == 1 + 3 + 2
    assert rows[-1][-1].startswith("no: ")
    html = run("--format", "html").stdout
    assert "<table>" in html and "inc-2" in html and "Not counted" in html
    table = run()
    assert table.returncode == 0 and "SLA kept 2, missed 1" in table.stdout
    bad = subprocess.run([sys.executable, "-m", "monitor", "report", "-c", str(path),
                          "--vendor", "acme", "--month", "11/2026"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--month" in bad.stderr
