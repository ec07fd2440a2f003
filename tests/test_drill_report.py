"""`hismon drill` against a real webhook receiver, and `hismon report` figures."""

from __future__ import annotations

import asyncio
import json
import re
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
    # SPEC §10: the vendor step names no drill notifier, so every drill notifier gets it.
    assert [k for k in PLAN_KINDS if k in kinds] == PLAN_KINDS
    assert receiver.kinds("vendor") == [], "vendor-hook is not drill: true"
    assert sorted(m["_path"] for m in receiver.messages
                  if m["kind"] == "vendor_escalation") == ["/boss", "/er", "/it"]
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


# ---- issue 10 items 1-3: a drill never reaches a real channel --------------------------


def _local_iso(ts: float) -> str:
    import datetime as dt
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def guarded_config(receiver: Receiver, tmp: Path) -> str:
    """A hospital where the only drill notifiers are a test group and a broken test hook.

    No plan step names the test group; a maintenance window is announced for the next hour
    on another system and one announced window ended ten minutes ago, so a drill that let
    the daemon's other traffic through would send planned-downtime and "maintenance over"
    notices to the real ward.
    """
    import time
    now = time.time()
    return f"""
site: {{name: Drill Hospital, timezone: Asia/Shanghai, language: en}}
state: {{url: "sqlite:///{tmp}/state.db"}}
server: {{public_url: "http://hismon.test"}}
roles: {{it_oncall: [it, drill-broken], leadership: [boss]}}
departments:
  - {{id: er, name: Emergency, notify: [er-ward]}}
systems:
  - id: his
    name: Doctor station
    departments: [er]
    plan: standard
    downtime_procedure: Paper prescriptions (form B-3).
  - {{id: pacs, name: PACS, departments: [er]}}
checks:
  - {{id: his-web, system: his, type: http, url: "http://127.0.0.1:1/"}}
notifiers:
  - {{id: it, type: webhook, url: "{receiver.url('it')}"}}
  - {{id: boss, type: webhook, url: "{receiver.url('boss')}"}}
  - {{id: er-ward, type: webhook, url: "{receiver.url('er')}"}}
  - {{id: drill-group, type: webhook, url: "{receiver.url('group')}", drill: true}}
  - id: drill-broken
    type: webhook
    url: "{receiver.url('broken')}"
    drill: true
    fallback: er-ward
maintenance:
  - systems: [pacs]
    start: "{_local_iso(now + 1800)}"
    end: "{_local_iso(now + 5400)}"
    reason: PACS upgrade
    announce: [24h, 1h]
  - systems: [pacs]
    start: "{_local_iso(now - 4200)}"
    end: "{_local_iso(now - 600)}"
    reason: PACS archive
    announce: [1h]
plans:
  - id: standard
    steps:
      - {{after: 0m,  notify: [role:it_oncall],  message: outage_it}}
      - {{after: 5m,  notify: [departments],     message: department_outage}}
      - {{after: 15m, notify: [role:leadership], message: leadership_report}}
      - {{every: 30m, notify: [role:leadership, departments], message: progress_update}}
    on_recovery: [role:it_oncall, departments, role:leadership]
"""


async def test_a_drill_sends_nothing_to_real_channels_and_every_step_to_the_test_group(
    receiver: Receiver, tmp_path: Path
) -> None:
    """Issue 10 items 1 and 2: no maintenance traffic, no fallback to a real channel, and a
    step none of whose recipients is a drill notifier goes to every drill notifier."""
    receiver.fail_with, receiver.fail_paths = 400, {"/broken"}
    path = tmp_path / "h.yaml"
    path.write_text(guarded_config(receiver, tmp_path))
    code, out = await run_cli("drill", "-c", str(path), "--system", "his", "--speed", "900")
    assert code == 0, out
    real = [(m["_path"], m["kind"]) for m in receiver.messages
            if m["_path"] not in ("/group", "/broken")]
    assert real == [], f"a drill reached real channels: {real}\n{out}"
    assert not [m for m in receiver.messages if m["kind"].startswith("maintenance")]
    group = receiver.kinds("group")
    for kind in ("department_outage", "leadership_report", "progress_update"):
        assert kind in group, (kind, group, out)
    assert all("DRILL" in m["title"] and m["drill"] is True for m in receiver.messages)
    notice = next(m for m in receiver.messages if m["kind"] == "department_outage")
    assert "Paper prescriptions" in notice["text"]
    # The output says where each step went, and that the test group stood in for the ward.
    assert "outage_it" in out and "drill-broken" in out
    line = next(x for x in out.splitlines()
                if "department_outage" in x and not x.startswith("{"))
    assert "drill-group" in line and "drill-broken" in line, out


async def test_each_drill_has_its_own_id_keys_and_links(
    receiver: Receiver, tmp_path: Path
) -> None:
    """Issue 10 item 3: `drill-N` is never reused; keys differ; links name the stored id."""
    path = tmp_path / "h.yaml"
    path.write_text(guarded_config(receiver, tmp_path))
    ids: list[list[str]] = []
    seen: set[str] = set()
    for _ in range(2):
        code, out = await run_cli("drill", "-c", str(path), "--system", "his",
                                  "--speed", "900")
        assert code == 0, out
        new = {m["incident"]["id"] for m in receiver.messages if m.get("incident")} - seen
        ids.append(sorted(new))
        seen |= new
    first, second = ids[0], ids[1]
    assert len(first) == 1 and len(second) == 1 and first != second, ids
    assert all(re.fullmatch(r"drill-\d+", i) for i in first + second), "SPEC 10: drill-N"
    keys = [m["idempotency_key"] for m in receiver.messages]
    assert len(keys) == len(set(keys)), keys
    for m in receiver.messages:
        assert f"/incidents/{m['incident']['id']}" in m["text"] or "/incidents/" not in m["text"]
    from monitor.store.sqlite import SqliteStore
    store = SqliteStore(f"sqlite:///{tmp_path}/state.db")
    await store.open()
    try:
        for incident_id in first + second:
            stored = await store.get_incident(incident_id)
            assert stored is not None and stored.drill, incident_id
            assert await store.list_messages(incident_id=incident_id)
    finally:
        await store.close()


# ---- issue 10 item 9: vendor SLA figures a hospital can bill with -----------------------


def test_vendor_sla_is_judged_at_the_response_or_the_resolution() -> None:
    """SPEC §13.4: the vendor's response (not an IT ack) stops the clock, from the delivered
    escalation; an incident resolved before any response kept the SLA if it resolved in it."""
    from monitor.delivery.context import vendor_sla_status

    sla = 1800.0
    assert vendor_sla_status(100.0, None, 103.0, sla, now=10_000_000.0) == "kept"
    assert vendor_sla_status(100.0, None, 100.0 + sla + 1, sla, now=1e7) == "missed"
    assert vendor_sla_status(100.0, 700.0, None, sla, now=1e7) == "kept"
    assert vendor_sla_status(100.0, 100.0 + sla + 5, None, sla, now=1e7) == "missed"
    assert vendor_sla_status(100.0, None, None, sla, now=200.0) == "pending"
    assert vendor_sla_status(100.0, None, None, sla, now=100.0 + sla + 1) == "missed"
    assert vendor_sla_status(None, None, 50.0, sla, now=1e7) is None
    assert vendor_sla_status(100.0, None, 103.0, None, now=1e7) is None


def sla_config(tmp: Path) -> str:
    return f"""
site: {{name: H, timezone: UTC, language: en}}
state: {{url: "sqlite:///{tmp}/state.db"}}
systems:
  - {{id: core, name: Core network}}
  - id: his
    name: Doctor station
    depends_on: [core]
    vendor: {{name: Vendor A, notify: [v], response_sla: 30m}}
notifiers: [{{id: v, type: console}}]
maintenance:
  - systems: [his]
    start: "2026-11-06T02:00:00+00:00"
    end: "2026-11-06T04:00:00+00:00"
    reason: upgrade
"""


def test_vendor_figures_leave_out_maintenance_dependencies_and_unmonitored_time(
    tmp_path: Path,
) -> None:
    config = load_config_text(sla_config(tmp_path), "h.yaml", {})
    day = 86400.0
    base = 1_793_491_200.0  # 2026-11-01T00:00Z
    incidents = [
        # Escalated 3 s before it resolved, never answered: kept, not "missed at the end".
        incident(id="inc-1", started_at=base + 3 * day, resolved_at=base + 3 * day + 1803,
                 vendor_escalated_at=base + 3 * day + 1800),
        # Inside the upgrade window (03:00 on 6 Nov, 02:00-04:00): planned, not the vendor's.
        incident(id="inc-2", started_at=base + 5 * day + 3 * 3600,
                 resolved_at=base + 5 * day + 4 * 3600,
                 vendor_escalated_at=base + 5 * day + 3 * 3600 + 1800),
        # Caused by the core network: the system was down, but not by the vendor's doing.
        incident(id="inc-3", started_at=base + 7 * day, resolved_at=base + 7 * day + 1800,
                 caused_by="inc-9", caused_by_system="core"),
    ]
    report = build_report(config, incidents, base, base + 10 * day,
                          monitored_since={"his": base + 2 * day, "core": base + 2 * day})
    his = next(r for r in report.systems if r.name == "his")
    vendor = report.vendors[0]
    assert vendor.sla_kept == 1 and vendor.sla_missed == 0, vendor
    assert vendor.downtime_seconds == pytest.approx(1803)
    monitored = 8 * day - 7200  # from the first probe, less the planned window
    assert vendor.availability_percent == pytest.approx(100 * (1 - 1803 / monitored), abs=1e-3)
    # The system's own row counts the dependency's outage (its users could not work) but
    # not the planned window, and only over the monitored time.
    assert his.downtime_seconds == pytest.approx(1803 + 1800)
    assert his.availability_percent == pytest.approx(
        100 * (1 - (1803 + 1800) / monitored), abs=1e-3)


async def test_monitoring_starts_at_the_first_probe_in_the_history(tmp_path: Path) -> None:
    """`hismon report` takes the first probe from the stored history (real SQLite store)."""
    import time

    from monitor.commands.report import first_probes
    from monitor.history.model import CheckBucket
    from monitor.store.sqlite import SqliteStore

    config = load_config_text(sla_config(tmp_path), "h.yaml", {})
    store = SqliteStore(f"sqlite:///{tmp_path}/state.db")
    await store.open()
    now = time.time()
    start = now - now % 300 - 3600
    try:
        await store.save_check_buckets([CheckBucket("his-web", "his", start, 0, 3, 0.01, 0.03,
                                                    0.01)])
        first = await first_probes(store, config, now - 30 * 86400, now)
    finally:
        await store.close()
    assert first == {"his": start}
    report = build_report(config, [], now - 30 * 86400, now, monitored_since=first)
    his = next(r for r in report.systems if r.name == "his")
    assert his.monitored_seconds == pytest.approx(now - start)
    core = next(r for r in report.systems if r.name == "core")
    assert core.monitored_seconds == pytest.approx(30 * 86400)
