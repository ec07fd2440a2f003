"""`hismon drill` against a real webhook receiver, and `hismon report` figures."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from monitor.commands.report import build_report, render
from monitor.config.loader import load_config_text
from monitor.core.models import Incident
from tests.conftest import Receiver

PLAN_KINDS = ["outage_it", "department_outage", "leadership_report", "vendor_escalation",
              "progress_update", "recovery"]


def drill_config(receiver: Receiver, tmp: Path) -> str:
    return f"""
site: {{name: Drill Hospital, timezone: Asia/Shanghai, language: zh, campuses: [main]}}
state: {{url: "sqlite:///{tmp}/state.db"}}
roles: {{it_oncall: [it], leadership: [boss]}}
departments:
  - {{id: er, name: 急诊科, campus: main, notify: [er-hook]}}
systems:
  - id: his
    name: 门诊医生站
    departments: [er]
    plan: standard
    vendor: {{name: Vendor A, notify: [vendor-hook], response_sla: 30m}}
    downtime_procedure: 启用纸质处方（B-3 表）。
checks:
  - {{id: his-web, system: his, type: http, url: "http://127.0.0.1:1/"}}
notifiers:
  - {{id: it, type: webhook, url: "{receiver.url('it')}", drill: true}}
  - {{id: boss, type: webhook, url: "{receiver.url('boss')}", drill: true}}
  - {{id: er-hook, type: webhook, url: "{receiver.url('er')}", drill: true}}
  - {{id: vendor-hook, type: webhook, url: "{receiver.url('vendor')}"}}
plans:
  - id: standard
    steps:
      - {{after: 0m,  notify: [role:it_oncall],  message: outage_it}}
      - {{after: 5m,  notify: [departments],     message: department_outage}}
      - {{after: 15m, notify: [role:leadership], message: leadership_report}}
      - {{after: 30m, notify: [vendor],          message: vendor_escalation, unless: acknowledged}}
      - {{every: 30m, notify: [role:leadership, departments], message: progress_update}}
    on_recovery: [role:it_oncall, departments, role:leadership]
"""


async def run_cli(*args: str, limit: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), limit)
    return proc.returncode or 0, out.decode()


async def test_a_drill_walks_the_whole_plan_to_drill_notifiers_only(
    receiver: Receiver, tmp_path: Path
) -> None:
    path = tmp_path / "h.yaml"
    path.write_text(drill_config(receiver, tmp_path))
    code, out = await run_cli("drill", "-c", str(path), "--system", "his", "--speed", "900")
    assert code == 0, out
    kinds = [m["kind"] for m in receiver.messages]
    assert [k for k in PLAN_KINDS if k in kinds] == [k for k in PLAN_KINDS
                                                      if k != "vendor_escalation"]
    assert receiver.kinds("vendor") == [], "vendor-hook is not drill: true"
    assert all(m.get("drill") is True for m in receiver.messages)
    assert all("DRILL" in m["title"] for m in receiver.messages)
    notice = next(m for m in receiver.messages if m["kind"] == "department_outage")
    assert "纸质处方" in notice["text"] and notice["recipient"] == "er-hook"
    assert notice["incident"]["id"].startswith("drill-")

    code, report = await run_cli("report", "-c", str(path), "--format", "json")
    assert code == 0, report
    his = json.loads(report)["systems"][0]
    assert his["drills"] == 1 and his["incidents"] == 0 and his["downtime_seconds"] == 0


async def test_a_live_drill_reaches_every_notifier(receiver: Receiver, tmp_path: Path) -> None:
    path = tmp_path / "h.yaml"
    path.write_text(drill_config(receiver, tmp_path))
    code, out = await run_cli("drill", "-c", str(path), "--system", "his", "--speed", "900",
                              "--live")
    assert code == 0, out
    assert receiver.kinds("vendor") == ["vendor_escalation"]


def incident(**fields: object) -> Incident:
    base = {"id": "inc-1", "system": "his", "severity": "critical", "started_at": 0.0,
            "opened_at": 0.0, "status": "resolved"}
    base.update(fields)
    return Incident(**base)  # type: ignore[arg-type]


def test_report_figures_per_system_and_vendor() -> None:
    config = load_config_text(drill_config(Receiver(), Path("/tmp")), "h.yaml", {})
    day = 86400.0
    incidents = [
        incident(id="inc-1", started_at=day, resolved_at=day + 3600, acknowledged_at=day + 600,
                 vendor_escalated_at=day + 1800, last_note_at=day + 2000),
        incident(id="inc-2", started_at=2 * day, resolved_at=2 * day + 1800,
                 acknowledged_at=2 * day + 300),
        incident(id="inc-3", severity="warning", started_at=3 * day, resolved_at=3 * day + 600),
        incident(id="drill-4", drill=True, started_at=4 * day, resolved_at=4 * day + 60),
        incident(id="inc-0", started_at=-3600.0, resolved_at=1800.0),  # starts before window
    ]
    report = build_report(config, incidents, 0.0, 10 * day)
    his = report.systems[0]
    assert his.incidents == 4 and his.critical == 3 and his.drills == 1
    assert his.downtime_seconds == pytest.approx(3600 + 1800 + 1800)
    assert his.availability_percent == pytest.approx(100 * (1 - 7200 / (10 * day)), abs=1e-3)
    assert his.mtta_seconds == pytest.approx((600 + 300) / 2)
    assert his.sla_kept == 1 and his.sla_missed == 0
    assert report.vendors[0].name == "Vendor A" and report.vendors[0].critical == 3
    assert [o["incident"] for o in report.longest] == ["inc-0", "inc-1", "inc-2"]
    table = render(report, "table", config)
    assert "his" in table and "Vendor A" in table and "Longest outages" in table
    csv_text = render(report, "csv", config)
    assert csv_text.splitlines()[0].startswith("scope,name,incidents")
