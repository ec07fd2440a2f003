"""What the pages put in front of a reader during an outage (SPEC §7), as plain data.

- `incident_cards`: open incidents, root causes first then by start time, each with the
  downtime procedures to follow now (for a root: those of the systems caused by it) and
  the departments affected;
- `banner_lines`: "Core network down: 3 systems affected", the root cause named first;
- `window_procedures`: a maintenance window with the procedures it announces;
- `backfill_notices`: one back-fill notice per system (its latest window), none for a
  maintenance window that was announced as planned.

Everything here is a pure function of config, incidents, windows and the reader's language;
names go through `monitor.config.i18n.text`, so templates receive plain strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from monitor.config.i18n import text
from monitor.core.models import Incident

if TYPE_CHECKING:
    from monitor.config.model import Config
    from monitor.incidents.maintenance import Window

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "what_to_do": "What to do now",
        "procedure_of": "{system}: downtime procedure",
        "no_procedure_on_file": "No downtime procedure is on file. Call IT.",
        "banner_root": "{system} {state}: {n} systems affected",
        "banner_root_one": "{system} {state}: 1 system affected",
        "state_word_down": "down",
        "state_word_degraded": "degraded",
        "state_word_unseen": "not probed since {since}",
        "dependents": "Also affected",
        "department_pages": "Department pages",
        "history_24h": "Last 24 hours",
        "history_90d": "Last 90 days",
        "availability": "Availability",
        "availability_24h": "24 h",
        "availability_30d": "30 days",
        "no_data_yet": "no data",
        "legend": "Legend",
        "axis_24h_ago": "24 h ago",
        "axis_now": "now",
        "axis_90d_ago": "90 days ago",
        "axis_today": "today",
        "worst_ok": "OK",
        "worst_degraded": "degraded",
        "worst_down": "down",
        "worst_maintenance": "maintenance",
        "worst_no_data": "no data",
        "system_page": "History",
        "system_title": "{name}: state and history",
        "checks": "Checks",
        "response_time": "Response time, last 24 hours: {check}",
        "chart_no_data": "No response times recorded in the last 24 hours.",
        "chart_legend": "Line: average per 5 minutes. Band: fastest to slowest. "
                        "Cross: check down.",
        "incidents_90d": "Incidents in the last 90 days",
        "no_incidents_90d": "No incidents in the last 90 days.",
        "not_found_system": "There is no system \"{id}\".",
        "planned_procedure": "During the maintenance, {system}: {procedure}",
        "system_link": "System page",
        "review_link": "Post-incident review (printable)",
        "last_run": "Last run",
    },
    "zh": {
        "what_to_do": "现在该怎么做",
        "procedure_of": "{system}：应急预案",
        "no_procedure_on_file": "没有登记应急预案，请联系信息科。",
        "banner_root": "{system}{state}：影响 {n} 个系统",
        "banner_root_one": "{system}{state}：影响 1 个系统",
        "state_word_down": "故障",
        "state_word_degraded": "性能下降",
        "state_word_unseen": "自 {since} 起未能检测",
        "dependents": "同时受影响",
        "department_pages": "科室页面",
        "history_24h": "最近 24 小时",
        "history_90d": "最近 90 天",
        "availability": "可用率",
        "availability_24h": "24 小时",
        "availability_30d": "30 天",
        "no_data_yet": "暂无数据",
        "legend": "图例",
        "axis_24h_ago": "24 小时前",
        "axis_now": "现在",
        "axis_90d_ago": "90 天前",
        "axis_today": "今天",
        "worst_ok": "正常",
        "worst_degraded": "性能下降",
        "worst_down": "故障",
        "worst_maintenance": "维护",
        "worst_no_data": "无数据",
        "system_page": "历史记录",
        "system_title": "{name}：状态与历史",
        "checks": "检测项",
        "response_time": "最近 24 小时响应时间：{check}",
        "chart_no_data": "最近 24 小时没有响应时间记录。",
        "chart_legend": "折线：每 5 分钟平均值。色带：最快到最慢。叉号：检测故障。",
        "incidents_90d": "最近 90 天的事件",
        "no_incidents_90d": "最近 90 天没有事件。",
        "not_found_system": "没有系统“{id}”。",
        "planned_procedure": "维护期间，{system}：{procedure}",
        "system_link": "系统页面",
        "review_link": "事后复盘报告（可打印）",
        "last_run": "最近检测",
    },
}


def worst_words(s: dict[str, str]) -> dict[str, str]:
    return {name: s[f"worst_{name}"] for name in
            ("ok", "degraded", "down", "maintenance", "no_data")}


@dataclass(slots=True)
class Procedure:
    system: str
    name: str
    text: str | None
    still_works: str | None = None


@dataclass(slots=True)
class IncidentCard:
    incident: Incident
    root: bool
    dependents: list[Incident] = field(default_factory=list)
    procedures: list[Procedure] = field(default_factory=list)
    departments: list[tuple[str, str]] = field(default_factory=list)
    """(id, name in the reader's language) of every affected department."""


def system_name(config: Config, system_id: str | None, language: str) -> str:
    if system_id is None:
        return ""
    if not config.has_system(system_id):
        return system_id
    return str(text(config.system(system_id), "name", language, config.site.language))


def department_name(config: Config, dept_id: str, language: str) -> str:
    found = next((d for d in config.departments if d.id == dept_id), None)
    if found is None:
        return dept_id
    return str(text(found, "name", language, config.site.language))


def campus_name(config: Config, campus_id: str | None, language: str) -> str | None:
    if campus_id is None:
        return None
    found = next((c for c in config.site.campuses if c.id == campus_id), None)
    return str(text(found, "name", language, config.site.language)) if found else campus_id


def procedure_of(config: Config, system_id: str, language: str) -> Procedure | None:
    """The system's downtime procedure in `language`, or None when it has none written."""
    if not config.has_system(system_id):
        return None
    system = config.system(system_id)
    site = config.site.language
    procedure = (text(system, "downtime_procedure", language, site) or "").strip()
    if not procedure:
        return None
    works = (text(system, "still_works", language, site) or "").strip() or None
    return Procedure(system_id, system_name(config, system_id, language), procedure, works)


def incident_cards(incidents: Sequence[Incident], config: Config,
                   language: str) -> list[IncidentCard]:
    """Root incidents first, then by start time; each with what to do and who is affected."""
    caused: dict[str, list[Incident]] = {}
    for incident in incidents:
        if incident.caused_by:
            caused.setdefault(incident.caused_by, []).append(incident)
    cards = []
    for incident in sorted(incidents, key=lambda i: (bool(i.caused_by), i.started_at, i.id)):
        dependents = sorted(caused.get(incident.id, []), key=lambda i: i.started_at)
        card = IncidentCard(incident, root=not incident.caused_by, dependents=dependents)
        for system_id in [incident.system, *(d.system for d in dependents)]:
            procedure = procedure_of(config, system_id, language)
            if procedure is not None and all(p.system != system_id for p in card.procedures):
                card.procedures.append(procedure)
        seen: list[str] = []
        for member in [incident, *dependents]:
            seen.extend(d for d in member.affected_departments if d not in seen)
        card.departments = [(d, department_name(config, d, language)) for d in seen]
        cards.append(card)
    return cards


def banner_lines(cards: Sequence[IncidentCard], config: Config, language: str,
                 s: dict[str, str], unseen: Mapping[str, str] | None = None) -> list[str]:
    """One line per root incident, the root cause named first (not every dependent).

    `unseen`: system id -> local time since which hismon cannot see it (every failing check
    stale, SPEC 9): its line says "not probed since T", never "down"."""
    lines = []
    for card in cards:
        if not card.root or card.incident.drill:
            continue
        state = "down" if card.incident.severity == "critical" else "degraded"
        word = s[f"state_word_{state}"]
        if unseen and card.incident.system in unseen:
            word = s["state_word_unseen"].format(since=unseen[card.incident.system])
        n = 1 + len({d.system for d in card.dependents})
        lines.append(s["banner_root" if n != 1 else "banner_root_one"].format(
            system=system_name(config, card.incident.system, language), state=word, n=n))
    return lines


def window_procedures(window: Window, config: Config, language: str) -> list[Procedure]:
    """What staff follow during a planned window: each system's procedure, if written."""
    found = []
    for system_id in window.systems:
        procedure = procedure_of(config, system_id, language)
        if procedure is not None:
            found.append(procedure)
    return found


def backfill_notices(resolved: Sequence[Incident], windows: Sequence[Window],
                     relevant: set[str], dept_id: str) -> list[Incident]:
    """One notice per system: its latest resolved outage; none inside an announced window.

    Paper records written during an announced maintenance window are covered by the
    window's own "resume electronic work" notice; a second, green box would only repeat it.
    """
    latest: dict[str, Incident] = {}
    for incident in resolved:
        if incident.drill or incident.resolved_at is None:
            continue
        if not (incident.system in relevant or dept_id in incident.affected_departments):
            continue
        if any(w.announce and incident.system in w.systems
               and w.start <= incident.started_at < w.end for w in windows):
            continue
        have = latest.get(incident.system)
        if have is None or (incident.resolved_at or 0) > (have.resolved_at or 0):
            latest[incident.system] = incident
    return sorted(latest.values(), key=lambda i: i.resolved_at or 0.0, reverse=True)
