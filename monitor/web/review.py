"""The post-incident review as a printable page and as JSON (SPEC 13.6).

Plain server-rendered HTML with print CSS (A4, no JavaScript, no external asset): what the
hospital prints for its review meeting. Both read the same `build_review` answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from monitor.config.i18n import text
from monitor.core.timefmt import local_time
from monitor.people.review import build_review
from monitor.web import whattodo
from monitor.web.guard import side_of
from monitor.web.interfaces import ReadView
from monitor.web.pages import CAUSES, STRINGS, TIMELINE_KINDS

PAGE = (Path(__file__).parent / "templates" / "people" / "review.j2").read_text("utf-8")


TEXT = {
    "en": {"title": "Post-incident review", "printed": "printed", "summary": "Summary",
           "systems": "Systems", "severity": "Severity", "window": "Outage window",
           "ongoing": "ongoing", "detection": "Detection (first failed probe → first IT "
           "message delivered)", "never": "never", "ack": "Acknowledged",
           "suspected": "Suspected cause", "confirmed": "Confirmed cause",
           "root": "Root cause", "departments": "Departments", "department": "Department",
           "campus": "Campus", "on_paper": "On paper", "backfill": "Back-entry done",
           "no_answer": "never answered", "pending": "pending", "vendor": "Vendor",
           "escalated": "escalated", "responded": "responded", "actions": "Actions",
           "notes": "Progress notes", "messages": "Messages", "kind": "Kind",
           "recipient": "Recipient", "due": "Due", "delivered": "Delivered / why not",
           "timeline": "Timeline"},
    "zh": {"title": "故障复盘报告", "printed": "打印于", "summary": "概要", "systems": "系统",
           "severity": "级别", "window": "故障时段", "ongoing": "尚未恢复",
           "detection": "发现（首次探测失败 → 首条信息科消息送达）", "never": "从未",
           "ack": "确认接手", "suspected": "初步原因", "confirmed": "确认原因",
           "root": "根本原因", "departments": "科室", "department": "科室", "campus": "院区",
           "on_paper": "启用纸质流程", "backfill": "补录完成", "no_answer": "未回复",
           "pending": "未完成", "vendor": "厂商", "escalated": "升级于",
           "responded": "响应于", "actions": "整改措施", "notes": "进展记录",
           "messages": "消息", "kind": "类型", "recipient": "接收方", "due": "应发时间",
           "delivered": "送达 / 未送达原因", "timeline": "时间线"},
}
MESSAGE_KINDS = {
    "en": {"early_warning": "early warning", "outage_it": "outage (IT)",
           "department_outage": "outage (department)", "leadership_report": "leadership report",
           "vendor_escalation": "vendor escalation", "progress_update": "progress update",
           "recovery": "recovery", "acknowledged": "acknowledged",
           "maintenance_notice": "maintenance notice", "maintenance_over": "maintenance over",
           "backfill_reminder": "back-entry reminder", "monitor_degraded": "monitor degraded",
           "monitor_ok": "monitor ok"},
    "zh": {"early_warning": "预警", "outage_it": "故障（信息科）",
           "department_outage": "故障（科室）", "leadership_report": "领导报告",
           "vendor_escalation": "厂商升级", "progress_update": "进展通报",
           "recovery": "恢复通知", "acknowledged": "已确认接手",
           "maintenance_notice": "维护通知", "maintenance_over": "维护结束",
           "backfill_reminder": "补录提醒", "monitor_degraded": "监控自身异常",
           "monitor_ok": "监控恢复正常"},
}
"""The review's names for message kinds (the JSON keeps the kind)."""

WORDS = {
    "en": {"critical": "outage", "warning": "early warning", "checks": "checks",
           "manual": "declared by hand", "kept": "kept", "missed": "missed",
           "pending": "pending"},
    "zh": {"critical": "故障", "warning": "预警", "checks": "自动检测", "manual": "人工申报",
           "kept": "达标", "missed": "超时", "pending": "待定"},
}
"""Severity, source and vendor SLA verdicts as the reader says them."""


def labels(config: Any, language: str) -> dict[str, Any]:
    """How the page names the review's machine values in the reader's language: the JSON
    keeps ids and tokens, the printed page shows names (SPEC 7: never an id where a name
    exists). Reuses the incident page's cause, timeline and delivery words."""
    site = config.site.language
    words = WORDS[language]
    strings = STRINGS.get(language, STRINGS["en"])

    def person(who: str | None) -> str:
        if not who:
            return ""
        pid = who.removeprefix("person:").split("/", 1)[0]
        if who.startswith("person:") or pid in {p.id for p in config.people}:
            try:
                return str(text(config.person(pid), "name", language, site))
            except KeyError:
                return who
        return who

    def why_not(status: str, reason: str | None) -> str:
        word = strings.get(f"delivery_{status}")
        return word if word and (not reason or reason == status) else \
            f"{word or status}: {reason}" if reason else (word or status)

    return {
        "word": lambda token: words.get(token, token) if token else "—",
        "cause": lambda code: CAUSES[language].get(code, code) if code else "—",
        "event": lambda kind: TIMELINE_KINDS[language].get(kind, kind),
        "message": lambda kind: MESSAGE_KINDS[language].get(kind, kind),
        "person": person,
        "recipient": lambda who: person(who) if str(who).startswith("person:") else (
            whattodo.department_name(config, who.removeprefix("department:"), language)
            if str(who).startswith("department:") else who),
        "dept": lambda dept_id: whattodo.department_name(config, dept_id, language),
        "why_not": why_not,
    }


_TEMPLATE = Environment(autoescape=True).from_string(PAGE)


async def review_of(view: ReadView, incident_id: str,
                    language: str | None = None) -> dict[str, Any] | None:
    incident = await view.get_incident(incident_id)
    if incident is None:
        return None
    dependents = [i for i in await view.list_incidents(since=incident.started_at, limit=5000)
                  if i.caused_by == incident.id]
    return build_review(view.config, incident, await view.timeline(incident.id),
                        await view.list_messages(incident_id=incident.id, limit=5000),
                        view.clock(), language, dependents)


async def as_json(request: Request) -> Response:
    found = await review_of(side_of(request), request.path_params["id"])
    if found is None:
        return JSONResponse({"error": f"no incident {request.path_params['id']}",
                             "status": 404}, status_code=404)
    return JSONResponse(found)


async def as_html(request: Request) -> Response:
    view = side_of(request)
    lang = request.query_params.get("lang") or view.config.site.language
    lang = lang if lang in TEXT else "en"
    found = await review_of(view, request.path_params["id"], lang)
    if found is None:
        return HTMLResponse("<!doctype html><title>404</title><p>no such incident</p>",
                            status_code=404)
    printed = local_time(view.clock(), view.config.site.tz)
    return HTMLResponse(_TEMPLATE.render(r=found, t=TEXT[lang], lang=lang,
                                         h=labels(view.config, lang),
                                         site=view.config.site.name, printed=printed))


ROUTES = [Route("/api/v1/incidents/{id}/review", as_json, methods=["GET"]),
          Route("/incidents/{id}/review", as_html, methods=["GET"])]
