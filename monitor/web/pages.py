"""Status pages for people (SPEC §7): the hospital overview, one department's view, incidents.

Server-rendered HTML from Jinja2 templates in `monitor/web/templates/pages/`, with inline CSS and
no JavaScript, because the readers are ward PCs that may run an old browser, phones on the
ward Wi-Fi, and printers. Every state is written out as text, never shown by colour alone.

Pages only read the daemon's `ReadView`. The one write is the acknowledgement form on the
incident page, behind the same `@write` gate as the API (token, standby, validated body), so
a standby refuses it as the API does instead of writing an ack the leader then overwrites.
Handlers are top-level functions; `ROUTES` lists them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from monitor.config.i18n import text
from monitor.core import timefmt
from monitor.core.durations import format_duration
from monitor.core.models import Incident
from monitor.delivery.context import maintenance_reason
from monitor.history.query import empty_history
from monitor.incidents.maintenance import Window
from monitor.people.words import CAUSES, TIMELINE_KINDS, entry_text
from monitor.web import charts, whattodo
from monitor.web.bodies import AckForm
from monitor.web.guard import Refusal, side_of, write
from monitor.web.interfaces import ReadView, WebSide

if TYPE_CHECKING:
    from monitor.config.model import Config, System
    from monitor.probing.state import CheckState

log = structlog.get_logger("hismon.pages")
TEMPLATE_DIR = Path(__file__).parent / "templates" / "pages"
REFRESH_SECONDS = 30
RECOVERY_WINDOW = 24 * 3600.0
"""Resolved incidents stay on the department view this long: the back-fill reminder."""
HISTORY_TIMEOUT = 3.0
"""The history bars wait this long for the store; then the page shows them as no data."""

# States a system can be in on the pages, worst first (the order of the summary).
STATES = ("down", "caused", "degraded", "maintenance", "unknown", "ok")
UNAVAILABLE = {"down", "caused", "maintenance"}
"""States in which staff cannot use the system and follow the downtime procedure."""

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "html_lang": "en",
        "status_title": "System status",
        "updated": "Updated",
        "refresh_note": "This page refreshes itself every {n} seconds.",
        "summary_all_ok": "All systems are working.",
        "cannot_record": "hismon cannot record since {since}: the state store refuses writes.",
        "cannot_record_detail": ("Incidents and messages go on from memory ({n} changes wait "
                                 "to be written); IT has been told."),
        "summary_problems": "{n} systems with problems",
        "summary_problems_one": "1 system with problems",
        "summary_maintenance": "Planned maintenance in progress: {systems}. Follow the "
                               "announced procedure below.",
        "campus": "Campus",
        "no_campus": "Shared systems (no campus)",
        "state_ok": "OK",
        "state_degraded": "DEGRADED",
        "state_down": "DOWN",
        "state_maintenance": "MAINTENANCE",
        "state_caused": "DOWN (caused by {system})",
        "state_unknown": "NOT CHECKED YET",
        "state_stale": "UNKNOWN",
        "explain_ok": "Working normally.",
        "explain_degraded": "Slow or partly failing. IT has been warned.",
        "explain_down": "Not working. IT is on it.",
        "explain_maintenance": "Planned maintenance until {end}.",
        "explain_caused": "Not working because {system} is down.",
        "explain_unknown": "No result yet.",
        "explain_stale": "Not probed since {since}: hismon cannot see this system right now. "
                         "IT has been told.",
        "explain_stale_down": "Not probed since {since}: hismon cannot see this system right "
                              "now. When last seen it was not working.",
        "check_stale": "not probed since {since}",
        "incident_unseen": "hismon cannot see this system: its failing checks have not been "
                           "probed since {since}. The cause below is what it saw last.",
        "depends_down": "Depends on {systems}, which is not working.",
        "open_incidents": "Current incidents",
        "no_open_incidents": "No current incidents.",
        "recent_incidents": "Resolved in the last 24 hours",
        "severity_warning": "Early warning",
        "severity_critical": "Outage",
        "since": "Since",
        "duration": "Duration",
        "acknowledged_by": "Acknowledged by {name} at {at}",
        "not_acknowledged": "Not yet acknowledged by IT",
        "caused_by": "Caused by {incident} ({system})",
        "suspected_cause": "Suspected cause",
        "affected_departments": "Affected departments",
        "details": "Details",
        "maintenance": "Maintenance windows",
        "no_maintenance": "No maintenance planned.",
        "maintenance_active": "IN PROGRESS",
        "maintenance_planned": "PLANNED",
        "from_to": "{start} to {end}",
        "reason": "Reason",
        "systems": "Systems",
        "departments": "Departments",
        "department_title": "{name}: systems and what to do",
        "department_systems": "Systems this department uses",
        "via": "needed by {systems}",
        "procedure_title": "{system} is not working: follow the downtime procedure",
        "procedure_missing": "No downtime procedure is on file for {system}. Call IT.",
        "still_works": "Still works",
        "all_systems_ok": "All systems of this department are working. No downtime procedure "
                          "is needed.",
        "recovery_title": "{system} is back: back-fill paper records",
        "recovery_text": "Enter everything recorded on paper between {start} and {end} "
                         "({duration}) into the system.",
        "planned_downtime": "Planned downtime",
        "print_hint": "Print this page to post it on the ward.",
        "back_to_status": "All systems",
        "incident_title": "Incident {id}: {system}",
        "status_open": "OPEN",
        "status_resolved": "RESOLVED",
        "resolved_at": "Resolved",
        "failing_checks": "Failing checks",
        "check": "Check",
        "type": "Type",
        "state": "State",
        "message": "Message",
        "timeline": "Timeline",
        "time": "Time",
        "event": "Event",
        "messages": "Messages sent",
        "no_messages": "No messages sent.",
        "recipient": "Recipient",
        "kind": "Message",
        "delivery": "Delivery",
        "attempts": "Attempts",
        "sent_at": "Sent at",
        "error": "Error",
        "ack_title": "Acknowledge (IT)",
        "ack_by": "Your name",
        "ack_note": "Note (optional)",
        "ack_token": "API token",
        "ack_submit": "Acknowledge",
        "ack_closed": "This incident is resolved; nothing to acknowledge.",
        "not_found_title": "Not found",
        "not_found_department": "There is no department \"{id}\".",
        "not_found_incident": "There is no incident \"{id}\".",
        "not_open_incident": "Incident \"{id}\" is not open any more.",
        "unauthorized_title": "Not authorised",
        "unauthorized_text": "The token is missing or wrong. Nothing was changed.",
        "invalid_title": "Incomplete form",
        "invalid_by": "Please enter your name.",
        "too_large": "The form is too large.",
        "invalid_value": "Please check the form: {detail}",
        "standby_title": "Standby instance",
        "standby_text": "This hismon instance is a standby and records nothing. Nothing was "
                        "changed: open this page on the leading instance and try again.",
        "try_again": "Back to the incident",
        "delivery_pending": "waiting",
        "delivery_sent": "delivered",
        "delivery_failed": "failed, retrying",
        "delivery_undeliverable": "NOT DELIVERED",
        "held": "Notifications held: {reason}",
        "drill": "DRILL",
    },
    "zh": {
        "html_lang": "zh-CN",
        "status_title": "系统运行状态",
        "updated": "更新时间",
        "refresh_note": "本页每 {n} 秒自动刷新。",
        "summary_all_ok": "所有系统运行正常。",
        "cannot_record": "自 {since} 起 hismon 无法记录：状态库拒绝写入。",
        "cannot_record_detail": "事件与消息暂存内存继续处理（{n} 项变更待写入），已通知信息科。",
        "summary_problems": "{n} 个系统存在问题",
        "summary_problems_one": "1 个系统存在问题",
        "summary_maintenance": "正在进行计划维护：{systems}。请按下方公布的应急流程执行。",
        "campus": "院区",
        "no_campus": "共用系统（不分院区）",
        "state_ok": "正常",
        "state_degraded": "性能下降",
        "state_down": "故障",
        "state_maintenance": "维护中",
        "state_caused": "故障（受 {system} 影响）",
        "state_unknown": "尚未检测",
        "state_stale": "状态未知",
        "explain_ok": "运行正常。",
        "explain_degraded": "响应变慢或部分异常，已通知信息科。",
        "explain_down": "无法使用，信息科正在处理。",
        "explain_maintenance": "计划维护，预计 {end} 结束。",
        "explain_caused": "因 {system} 故障而无法使用。",
        "explain_unknown": "暂无检测结果。",
        "explain_stale": "自 {since} 起未能检测：hismon 目前无法看到该系统的状态，已通知信息科。",
        "explain_stale_down": "自 {since} 起未能检测：hismon 目前无法看到该系统的状态；"
                              "最后一次检测时无法使用。",
        "check_stale": "自 {since} 起未能检测",
        "incident_unseen": "hismon 目前无法看到该系统：异常检测项自 {since} 起未能检测。"
                           "以下原因为最后一次检测时的判断。",
        "depends_down": "所依赖的 {systems} 无法使用。",
        "open_incidents": "当前事件",
        "no_open_incidents": "当前没有事件。",
        "recent_incidents": "最近 24 小时内已恢复",
        "severity_warning": "预警",
        "severity_critical": "故障",
        "since": "开始时间",
        "duration": "持续时间",
        "acknowledged_by": "{name} 已于 {at} 确认",
        "not_acknowledged": "信息科尚未确认",
        "caused_by": "由 {incident}（{system}）引起",
        "suspected_cause": "初步判断原因",
        "affected_departments": "受影响科室",
        "details": "详情",
        "maintenance": "维护计划",
        "no_maintenance": "近期没有维护计划。",
        "maintenance_active": "正在维护",
        "maintenance_planned": "计划维护",
        "from_to": "{start} 至 {end}",
        "reason": "原因",
        "systems": "系统",
        "departments": "科室",
        "department_title": "{name}：相关系统及应对措施",
        "department_systems": "本科室使用的系统",
        "via": "{systems} 依赖此系统",
        "procedure_title": "{system} 无法使用：请执行应急预案",
        "procedure_missing": "{system} 没有登记应急预案，请联系信息科。",
        "still_works": "仍可使用",
        "all_systems_ok": "本科室相关系统均运行正常，无需启用应急预案。",
        "recovery_title": "{system} 已恢复：请补录纸质记录",
        "recovery_text": "请将 {start} 至 {end}（共 {duration}）期间的纸质记录补录进系统。",
        "planned_downtime": "计划停机",
        "print_hint": "可打印本页张贴在科室。",
        "back_to_status": "全部系统",
        "incident_title": "事件 {id}：{system}",
        "status_open": "处理中",
        "status_resolved": "已恢复",
        "resolved_at": "恢复时间",
        "failing_checks": "异常检测项",
        "check": "检测项",
        "type": "类型",
        "state": "状态",
        "message": "结果",
        "timeline": "处理记录",
        "time": "时间",
        "event": "事件",
        "messages": "已发送通知",
        "no_messages": "尚未发送通知。",
        "recipient": "接收方",
        "kind": "通知类型",
        "delivery": "送达状态",
        "attempts": "尝试次数",
        "sent_at": "送达时间",
        "error": "错误",
        "ack_title": "确认事件（信息科）",
        "ack_by": "姓名",
        "ack_note": "备注（可选）",
        "ack_token": "API 令牌",
        "ack_submit": "确认",
        "ack_closed": "事件已恢复，无需确认。",
        "not_found_title": "未找到",
        "not_found_department": "没有科室“{id}”。",
        "not_found_incident": "没有事件“{id}”。",
        "not_open_incident": "事件“{id}”已不在处理中。",
        "unauthorized_title": "未授权",
        "unauthorized_text": "令牌缺失或错误，未做任何更改。",
        "invalid_title": "表单不完整",
        "invalid_by": "请填写姓名。",
        "too_large": "表单内容过大。",
        "invalid_value": "请检查表单内容：{detail}",
        "standby_title": "备用实例",
        "standby_text": "当前 hismon 实例为备用实例，不记录任何操作，未做任何更改。"
                        "请在主实例上打开本页面重试。",
        "try_again": "返回事件页面",
        "delivery_pending": "等待发送",
        "delivery_sent": "已送达",
        "delivery_failed": "失败，重试中",
        "delivery_undeliverable": "未能送达",
        "held": "通知暂缓：{reason}",
        "drill": "演练",
    },
}

for _language, _extra in whattodo.STRINGS.items():  # the history and what-to-do strings
    STRINGS[_language].update(_extra)

def strings(language: str) -> dict[str, str]:
    return STRINGS.get(language, STRINGS["en"])


def local_time(ts: float | None, tz: dt.tzinfo, seconds: bool = False) -> str:
    """`monitor.core.timefmt.local_time` for templates: an empty cell rather than None."""
    return timefmt.local_time(ts, tz, seconds) or ""


def human_duration(seconds: float, language: str) -> str:
    return format_duration(max(seconds, 0.0), language)


@dataclass(slots=True)
class SystemView:
    """One system as the pages show it: its state in words and why."""

    id: str
    name: str
    criticality: str
    state: str
    label: str
    explain: str
    campuses: list[str]
    incident: Incident | None = None
    maintenance: Window | None = None
    failing: list[dict[str, Any]] = field(default_factory=list)
    depends_down: list[str] = field(default_factory=list)
    downtime_procedure: str | None = None
    still_works: str | None = None
    stale_since: float | None = None
    """Set when hismon cannot see the system (SPEC 9): its oldest stale check's last result."""
    last_seen_down: bool = False
    """Stale, with an open outage: staff stay on the downtime procedure until it is seen."""

    @property
    def unavailable(self) -> bool:
        return self.state in UNAVAILABLE or self.last_seen_down


def stale_since(checks: list[CheckState]) -> float | None:
    """The oldest last result among stale checks, or None when none is stale."""
    return min((c.last_run or 0.0 for c in checks if c.stale), default=None)


def blind(incident: Incident, states: Mapping[str, CheckState]) -> list[CheckState]:
    """The incident's failing checks if every one of them is stale, else []: hismon cannot
    see the system, so pages say "not probed since T", never the old failing text."""
    found = [states.get(str(c["id"])) for c in incident.failing_checks]
    if found and all(s is not None and s.stale for s in found):
        return [s for s in found if s is not None]
    return []


def campuses_of(system: System, config: Config) -> list[str]:
    """A system's campuses are those of the departments that use it."""
    known = {d.id: d for d in config.departments}
    found: list[str] = []
    for dept_id in system.departments:
        dept = known.get(dept_id)
        if dept is not None and dept.campus and dept.campus not in found:
            found.append(dept.campus)
    return found


def build_views(view: ReadView, now: float, language: str) -> dict[str, SystemView]:
    """Every configured system's state, computed once per request from live state."""
    config = view.config
    s = strings(language)
    tz = config.site.tz
    site_language = config.site.language
    names = {sys.id: text(sys, "name", language, site_language) for sys in config.systems}
    open_by_system = {i.system: i for i in view.open_incidents() if not i.drill}
    active = [w for w in view.windows(now) if w.start <= now < w.end]
    views: dict[str, SystemView] = {}
    for system in config.systems:
        incident = open_by_system.get(system.id)
        window = next((w for w in active if system.id in w.systems), None)
        checks = [view.states[c.id] for c in config.checks_of(system.id)
                  if c.id in view.states]
        if window is not None:
            state = "maintenance"
            label = s["state_maintenance"]
            explain = s["explain_maintenance"].format(end=local_time(window.end, tz))
        elif incident is not None and incident.caused_by:
            cause = names.get(incident.caused_by_system or "", incident.caused_by_system or "?")
            state = "caused"
            label = s["state_caused"].format(system=cause)
            explain = s["explain_caused"].format(system=cause)
        elif incident is not None and (unseen := blind(incident, view.states)):
            since = stale_since(unseen)
            was_down = incident.severity == "critical"
            state, label = "unknown", s["state_stale"]
            explain = s["explain_stale_down" if was_down else "explain_stale"].format(
                since=local_time(since, tz))
        elif incident is not None:
            state = "down" if incident.severity == "critical" else "degraded"
            label, explain = s[f"state_{state}"], s[f"explain_{state}"]
        elif (since := stale_since(checks)) is not None:
            state, label = "unknown", s["state_stale"]
            explain = s["explain_stale"].format(since=local_time(since, tz))
        elif checks and not any(c.probed or c.last_run for c in checks):
            state, label, explain = "unknown", s["state_unknown"], s["explain_unknown"]
        else:
            state, label, explain = "ok", s["state_ok"], s["explain_ok"]
        procedure = text(system, "downtime_procedure", language, site_language)
        works = text(system, "still_works", language, site_language)
        views[system.id] = SystemView(
            id=system.id, name=names[system.id], criticality=system.criticality, state=state,
            label=label, explain=explain, campuses=campuses_of(system, config),
            incident=incident, maintenance=window,
            failing=list(incident.failing_checks) if incident else [],
            downtime_procedure=(procedure or "").strip() or None,
            still_works=(works or "").strip() or None,
            stale_since=stale_since(checks) if state == "unknown" else None,
            last_seen_down=state == "unknown" and incident is not None
            and incident.severity == "critical")
    for system in config.systems:
        down = [views[d].name for d in config.dependencies(system.id)
                if d in views and views[d].unavailable]
        views[system.id].depends_down = down
    return views


def group_by_campus(
    views: dict[str, SystemView], config: Config
) -> list[tuple[str | None, list[SystemView]]]:
    """Campuses in the site's order; a system used on two campuses shows under both."""
    order = list(config.site.campus_ids)
    for view in views.values():
        order.extend(c for c in view.campuses if c not in order)
    groups: list[tuple[str | None, list[SystemView]]] = []
    rank = {state: i for i, state in enumerate(STATES)}
    for campus in order:
        members = [v for v in views.values() if campus in v.campuses]
        if members:
            groups.append((campus, sorted(members, key=lambda v: (rank[v.state], v.name))))
    shared = [v for v in views.values() if not v.campuses]
    if shared:
        groups.append((None, sorted(shared, key=lambda v: (rank[v.state], v.name))))
    return groups


@functools.cache
def environment() -> jinja2.Environment:
    """One Jinja2 environment for the process (templates are compiled once)."""
    return _environment()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,  # names, messages and notes come from config and operators
        undefined=jinja2.StrictUndefined,  # a typo in a page must fail its test, not vanish
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def language_of(request: Request, default: str | None = None) -> str:
    wanted = request.query_params.get("lang")
    if wanted in STRINGS:
        return wanted
    return default or side_of(request).config.site.language


def lang_query(language: str, config: Config) -> str:
    """`?lang=xx` for links when the page is not in the site's language, so a reader who
    chose English stays in English from page to page; "" otherwise (links stay short)."""
    return "" if language == config.site.language else f"?lang={language}"


def render(request: Request, name: str, language: str, status: int = 200,
           **context: Any) -> HTMLResponse:
    view = side_of(request)
    config = view.config
    now = view.clock()
    html = environment().get_template(name).render(
        s=strings(language), lang=language, lq=lang_query(language, config), site=config.site,
        now=now,
        updated=local_time(now, config.site.tz, seconds=True),
        recording=view.recording(),
        t_since=lambda ts: local_time(ts, config.site.tz, True),
        refresh=context.pop("refresh", None), **context)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def error_page(request: Request, language: str, status: int, title: str, text: str,
               back: str | None = None) -> HTMLResponse:
    return render(request, "error.j2", language, status=status, title=title, text=text,
                  back=back)


def fmt(view: ReadView, language: str) -> dict[str, Any]:
    """The helpers templates format with: local times, durations, names, labels."""
    config = view.config
    tz = config.site.tz
    return {
        "t": lambda ts, seconds=False: local_time(ts, tz, seconds),
        "dur": lambda seconds: human_duration(seconds, language),
        "cause": lambda code: CAUSES.get(language, CAUSES["en"]).get(code, code),
        "event": lambda kind: TIMELINE_KINDS.get(language, TIMELINE_KINDS["en"]).get(
            kind, kind),
        "entry": lambda entry: entry_text(entry, config, language),
        "dept_name": lambda dept_id: whattodo.department_name(config, dept_id, language),
        "system_name": lambda system_id: whattodo.system_name(config, system_id, language),
        "campus_name": lambda campus_id: whattodo.campus_name(config, campus_id, language),
        "reason_of": lambda window: maintenance_reason(config, window.key, window.reason,
                                                       language),
        "window_procedures": lambda window: whattodo.window_procedures(window, config,
                                                                       language),
        "pct": lambda share: charts.percent(share, strings(language)["no_data_yet"]),
        "legend_key": charts.legend_key,
        "stale_since": lambda check_id: _stale_check(view, check_id),
    }


def _stale_check(view: ReadView, check_id: str) -> float | None:
    """A check's last result time when it is stale (shown as UNKNOWN "not probed since")."""
    state = view.states.get(check_id)
    return (state.last_run or 0.0) if state is not None and state.stale else None


async def status_page(request: Request) -> Response:
    view = side_of(request)
    language = language_of(request)
    now = view.clock()
    views = build_views(view, now, language)
    cards = whattodo.incident_cards(list(view.open_incidents()), view.config,
                                    language)
    s = strings(language)
    words = whattodo.worst_words(s)
    try:  # a store that cannot answer costs the bars, never the page
        overview = await asyncio.wait_for(
            view.history_reader.overview(list(views), now), HISTORY_TIMEOUT)
    except Exception as exc:
        log.warning("history_unavailable", error=f"{type(exc).__name__}: {exc}"[:200])
        overview = {sid: empty_history(sid, now, view.config.site.tz) for sid in views}
    bars = {sid: charts.bar_24h(h.slots, view.config.site.tz, words,
                                f"{views[sid].name}, {s['history_24h']}")
            for sid, h in overview.items()}
    recent = await view.list_incidents(
        status="resolved", since=now - RECOVERY_WINDOW, limit=50)
    windows = sorted((w for w in view.windows(now) if w.end > now),
                     key=lambda w: w.start)
    # A system in its announced window is expected to be down: it gets the blue planned
    # banner, never the red alarm, unless something else is wrong at the same time.
    problems = [v for v in views.values()
                if v.state not in ("ok", "unknown", "maintenance") or v.stale_since is not None]
    in_maintenance = [v for v in views.values() if v.state == "maintenance"]
    return render(
        request, "status.j2", language, refresh=REFRESH_SECONDS, groups=group_by_campus(
            views, view.config), views=views, cards=cards,
        banner=whattodo.banner_lines(cards, view.config, language, s, unseen={
            v.id: local_time(v.stale_since, view.config.site.tz) for v in views.values()
            if v.stale_since is not None}),
        history=overview, bars=bars, words=words,
        recent=[i for i in recent if not i.drill], windows=windows, problems=problems,
        in_maintenance=in_maintenance,
        departments=view.config.departments, **fmt(view, language))


async def department_page(request: Request) -> Response:
    view = side_of(request)
    config = view.config
    dept_id = request.path_params["id"]
    dept = next((d for d in config.departments if d.id == dept_id), None)
    if dept is None:
        language = language_of(request)
        s = strings(language)
        return error_page(request, language, 404, s["not_found_title"],
                          s["not_found_department"].format(id=dept_id), back="/")
    language = language_of(request, dept.language)
    now = view.clock()
    views = build_views(view, now, language)
    direct = [sys.id for sys in config.systems if dept.id in sys.departments]
    needed_by: dict[str, list[str]] = {}
    for system_id in direct:
        for dep in config.dependencies(system_id):
            if dep not in direct:
                needed_by.setdefault(dep, []).append(views[system_id].name)
    shown = [views[i] for i in direct] + [views[i] for i in needed_by]
    # A system the department uses is unusable when it is down itself or when something
    # it depends on is; either way staff follow that system's downtime procedure. A
    # database or switch behind it has a procedure of its own only if one is written.
    procedures = [v for v in shown if (v.id in direct and (v.unavailable or v.depends_down))
                  or (v.unavailable and v.downtime_procedure)]
    relevant = set(direct) | set(needed_by)
    recent = await view.list_incidents(
        status="resolved", since=now - RECOVERY_WINDOW, limit=200)
    recoveries = whattodo.backfill_notices(recent, view.windows(now), relevant,
                                           dept.id)
    planned = sorted((w for w in view.windows(now)
                      if w.end > now and relevant & set(w.systems)),
                     key=lambda w: w.start)
    return render(
        request, "department.j2", language, refresh=REFRESH_SECONDS, dept=dept, shown=shown,
        direct=direct, needed_by=needed_by, procedures=procedures, recoveries=recoveries,
        planned=planned, **fmt(view, language))


async def incident_page(request: Request) -> Response:
    view = side_of(request)
    language = language_of(request)
    s = strings(language)
    incident_id = request.path_params["id"]
    incident = next((i for i in view.open_incidents() if i.id == incident_id), None)
    if incident is None:
        incident = await view.get_incident(incident_id)
    if incident is None:
        return error_page(request, language, 404, s["not_found_title"],
                          s["not_found_incident"].format(id=incident_id), back="/")
    timeline = await view.timeline(incident.id)
    messages = list(reversed(await view.list_messages(incident_id=incident.id)))
    unseen = stale_since(blind(incident, view.states)) if incident.is_open else None
    return render(request, "incident.j2", language, incident=incident, timeline=timeline,
                  messages=messages, unseen_since=unseen, **fmt(view, language))


async def system_page(request: Request) -> Response:
    view = side_of(request)
    config = view.config
    system_id = request.path_params["id"]
    language = language_of(request)
    s = strings(language)
    if not config.has_system(system_id):
        return error_page(request, language, 404, s["not_found_title"],
                          s["not_found_system"].format(id=system_id), back="/")
    now = view.clock()
    views = build_views(view, now, language)
    card = views[system_id]
    reader = view.history_reader
    try:
        history = await asyncio.wait_for(reader.system(system_id, now, 90),
                                         HISTORY_TIMEOUT)
        series = await asyncio.wait_for(reader.latency(system_id, now), HISTORY_TIMEOUT)
    except Exception as exc:
        log.warning("history_unavailable", system=system_id,
                    error=f"{type(exc).__name__}: {exc}"[:200])
        history, series = empty_history(system_id, now, config.site.tz, 90), {}
    words = whattodo.worst_words(s)
    tz = config.site.tz
    checks = []
    for check in config.checks_of(system_id):
        chart = None
        if check.type in ("http", "tcp"):
            chart = charts.latency_chart(
                series.get(check.id, []), now, tz,
                s["response_time"].format(check=check.id), s["chart_no_data"])
        checks.append({"id": check.id, "type": check.type,
                       "state": view.states.get(check.id), "chart": chart})
    # The system's own incidents, asked of the store as such: a hospital-wide list cut at
    # 500 would drop this system's older ones on a busy site.
    incidents = [i for i in await view.list_incidents(since=now - 90 * 86400, limit=500,
                                                      system=system_id) if not i.drill]
    return render(
        request, "system.j2", language, refresh=REFRESH_SECONDS * 2, v=card, history=history,
        words=words, checks=checks, incidents=incidents,
        bar=charts.bar_24h(history.slots, tz, words, f"{card.name}, {s['history_24h']}"),
        strip=charts.strip_days([(d.date, d.worst, d.availability) for d in history.days],
                                words, f"{card.name}, {s['history_90d']}"),
        **fmt(view, language))


def form_refusal(request: Request, refusal: Refusal) -> Response:
    """A refused form, as a page in the reader's language with a way back."""
    language = language_of(request)
    s = strings(language)
    back = request.url.path.rsplit("/", 1)[0] or "/"
    title, text = {
        "unauthorized": (s["unauthorized_title"], s["unauthorized_text"]),
        "standby": (s["standby_title"], s["standby_text"]),
        "too_large": (s["invalid_title"], s["too_large"]),
    }.get(refusal.code, (s["invalid_title"], s["invalid_by"] if refusal.field == "by"
                          else s["invalid_value"].format(detail=refusal.detail)))
    return error_page(request, language, refusal.status, title, text, back)


@write(AckForm, form=True, refuse=form_refusal)
async def ack_form(request: Request, side: WebSide, body: AckForm) -> Response:
    language = language_of(request)
    s = strings(language)
    incident_id = request.path_params["id"]
    back = f"/incidents/{incident_id}"
    found = await side.acknowledge(incident_id, body.by, body.note or None)
    if found is None:
        known = await side.get_incident(incident_id)
        text = s["not_open_incident"] if known else s["not_found_incident"]
        return error_page(request, language, 404, s["not_found_title"],
                          text.format(id=incident_id), back if known else "/")
    return RedirectResponse(back + lang_query(language, side.config), status_code=303)


ROUTES = [
    Route("/", status_page, methods=["GET"]),
    Route("/systems/{id}", system_page, methods=["GET"]),
    Route("/departments/{id}", department_page, methods=["GET"]),
    Route("/incidents/{id}", incident_page, methods=["GET"]),
    Route("/incidents/{id}/ack", ack_form, methods=["POST"]),
]
