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

from monitor.core.timefmt import local_time
from monitor.people.review import build_review
from monitor.web.guard import side_of
from monitor.web.interfaces import ReadView

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
                                         site=view.config.site.name, printed=printed))


ROUTES = [Route("/api/v1/incidents/{id}/review", as_json, methods=["GET"]),
          Route("/incidents/{id}/review", as_html, methods=["GET"])]
