"""The pages behind the signed links (SPEC 13.2-13.4): `/a/`, `/d/`, `/v/`.

GET shows the incident and one plain form button and changes nothing (chat apps fetch link
previews). POST acts: no API token, the signed link is the credential. Any instance takes
a POST: the leader acts at once, a standby records it in the shared store for the leader
(it never answers 503 to a link and never changes an incident itself). A bad, expired or
spent link is a 403 page that changes nothing. Tokens are never logged: the log names the
incident and the recipient. The pages need no JavaScript and work on a phone.
"""

from __future__ import annotations

from typing import Any

import structlog
from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from monitor.config.i18n import text
from monitor.core.models import Incident
from monitor.core.timefmt import local_time
from monitor.links.tokens import BadToken, Claim, verify
from monitor.web.guard import Refusal, parse_form, read_body, side_of
from monitor.web.interfaces import ReadView

log = structlog.get_logger("hismon.links")
LINK_FORM_LIMIT = 8 * 1024
DEPARTMENT_GRACE = 7 * 86400.0
"""A department link works until 7 days after the incident resolved (back-entry takes time)."""

TEXT = {
    "zh": {
        "invalid_title": "链接已失效", "invalid": "此链接已过期、无效或事件已结束，未做任何更改。",
        "bad_form": "提交的内容无法识别（过长或不是 UTF-8 文本），未做任何更改。",
        "ack_button": "以 {name} 身份确认接手", "acked": "已由 {by} 于 {at} 确认接手。",
        "ack_done": "已确认接手：{by}。后续提醒已停止。",
        "since": "开始时间", "severity": "级别", "checks": "异常检查", "system": "系统",
        "on_paper": "我们已启用纸质流程", "backfill_done": "补录已完成",
        "on_paper_done": "已记录：{dept} 已启用纸质流程。",
        "backfill_done_done": "已记录：{dept} 补录已完成。",
        "already": "已记录过，无需重复操作。", "by": "姓名（可选）", "eta": "预计到达（可选）",
        "vendor_button": "工程师正在响应", "vendor_done": "已记录厂商响应。",
        "queued": "已收到，主节点将在几秒内处理。", "procedure": "应急流程",
        "critical": "故障", "warning": "预警", "resolved": "已恢复", "ended": "结束时间",
    },
    "en": {
        "invalid_title": "Link no longer valid",
        "invalid": "This link has expired, is not valid, or its incident is over. "
                   "Nothing was changed.",
        "bad_form": "What was sent could not be read (too long, or not UTF-8 text). "
                    "Nothing was changed.",
        "ack_button": "Acknowledge as {name}", "acked": "Already acknowledged by {by} at {at}.",
        "ack_done": "Acknowledged by {by}. The reminders stop.",
        "since": "Since", "severity": "Severity", "checks": "Failing checks", "system": "System",
        "on_paper": "We are on paper", "backfill_done": "Back-entry done",
        "on_paper_done": "Recorded: {dept} is on paper.",
        "backfill_done_done": "Recorded: {dept} finished back-entry.",
        "already": "Already recorded; nothing more to do.", "by": "Your name (optional)",
        "eta": "ETA (optional)", "vendor_button": "Engineer responding",
        "vendor_done": "Vendor response recorded.",
        "queued": "Received; the hismon leader records it within seconds.",
        "procedure": "Downtime procedure", "critical": "outage", "warning": "warning",
        "resolved": "resolved", "ended": "Ended",
    },
}

PAGE = """<!doctype html>
<html lang="{{ 'zh-CN' if lang == 'zh' else 'en' }}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><meta name="referrer" content="no-referrer">
<title>{{ title }}</title>
<style>body{font:17px/1.5 system-ui,sans-serif;max-width:36em;margin:1em auto;padding:0 1em}
h1{font-size:1.3em}.box{border:1px solid #ccc;border-radius:8px;padding:.8em;margin:.8em 0}
button{font-size:1.1em;padding:.8em 1.2em;width:100%;margin:.4em 0;border-radius:8px;
border:0;background:#0a58ca;color:#fff}.msg{background:#e8f5e9;padding:.8em;border-radius:8px}
.bad{background:#fdecea}input{font-size:1em;padding:.5em;width:95%}dt{color:#555}</style>
</head><body><h1>{{ title }}</h1>
{% if message %}<p class="msg{{ ' bad' if bad else '' }}">{{ message }}</p>{% endif %}
{% if incident %}<div class="box"><dl>
<dt>{{ t.system }}</dt><dd>{{ incident.system_name }} ({{ incident.id }})</dd>
<dt>{{ t.severity }}</dt><dd>{{ t[incident.severity] }}
{%- if incident.resolved %}, {{ t.resolved }}{% endif %}</dd>
<dt>{{ t.since }}</dt><dd>{{ incident.since }}</dd>
{% if incident.ended %}<dt>{{ t.ended }}</dt><dd>{{ incident.ended }}</dd>{% endif %}
{% if incident.checks %}<dt>{{ t.checks }}</dt>
<dd>{% for c in incident.checks %}{{ c }}<br>{% endfor %}</dd>{% endif %}
{% if incident.procedure %}<dt>{{ t.procedure }}</dt><dd>{{ incident.procedure }}</dd>{% endif %}
</dl></div>{% endif %}
{% for form in forms %}<form method="post">
<input type="hidden" name="what" value="{{ form.what }}">
{% for field in form.fields %}<label>{{ t[field] }}<br>
<input name="{{ field }}"></label><br>{% endfor %}
<button type="submit">{{ form.label }}</button></form>{% endfor %}
</body></html>"""

_TEMPLATE = Environment(autoescape=True).from_string(PAGE)


def _language(request: Request, view: ReadView, reader: str | None = None) -> str:
    """`?lang=`, else the reader's (a department's `language`), else the site's (SPEC 7)."""
    lang = request.query_params.get("lang") or reader or view.config.site.language
    return lang if lang in TEXT else "en"


def _department_language(view: ReadView, department: str) -> str | None:
    try:
        return view.config.department(department).language
    except KeyError:
        return None


async def _posted(request: Request) -> dict[str, str] | Refusal:
    """The link form's fields, read as strictly as every other form (guard.parse_form).

    The link is the credential, so these POSTs skip the API's write gate; they still must
    not buffer a large body or store text that is not UTF-8. The forms have at most two
    short fields (`by`, `eta`), hence the small limit.
    """
    try:
        fields = parse_form(await read_body(request, LINK_FORM_LIMIT))
    except Refusal as refusal:
        log.info("link_form_refused", status=refusal.status, reason=refusal.detail)
        return refusal
    return {k: v.strip()[:200] for k, v in fields.items() if v.strip()}


def _refused(request: Request, title: str, incident: Incident, refusal: Refusal,
             reader: str | None = None) -> HTMLResponse:
    t = TEXT[_language(request, side_of(request), reader)]
    return page(request, title, incident=incident, status=refusal.status, bad=True,
                message=t["bad_form"], reader=reader)


def page(request: Request, title: str, *, message: str = "", bad: bool = False,
         incident: Incident | None = None, forms: list[dict[str, Any]] | None = None,
         status: int = 200, reader: str | None = None) -> HTMLResponse:
    view = side_of(request)
    lang = _language(request, view, reader)
    shown = None
    if incident is not None:
        tz = view.config.site.tz
        config = view.config
        system = config.system(incident.system) if config.has_system(incident.system) \
            else None

        def when(ts: float | None) -> str | None:
            return local_time(ts, tz)

        site = view.config.site.language
        shown = {"id": incident.id, "severity": incident.severity,
                 "system_name": text(system, "name", lang, site) if system
                 else incident.system,
                 "since": when(incident.started_at), "ended": when(incident.resolved_at),
                 "resolved": not incident.is_open,
                 "checks": [f"{c.get('id')}: {c.get('message')}"
                            for c in incident.failing_checks],
                 "procedure": text(system, "downtime_procedure", lang, site)
                 if system and system.downtime_procedure else None}
    html = _TEMPLATE.render(lang=lang, t=TEXT[lang], title=title, message=message, bad=bad,
                            incident=shown, forms=forms or [])
    return HTMLResponse(html, status_code=status,
                        headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"})


def invalid(request: Request, claim: Claim | None, reason: str) -> HTMLResponse:
    log.info("link_refused", incident=claim.incident if claim else None,
             recipient=claim.recipient if claim else None, reason=reason)
    t = TEXT[_language(request, side_of(request))]
    return page(request, t["invalid_title"], message=t["invalid"], bad=True, status=403)


async def check(request: Request, kind: str) -> tuple[Claim, Incident] | HTMLResponse:
    view = side_of(request)
    key = view.link_key
    claim = None
    try:
        if key is None:
            raise BadToken("no key yet")
        claim = verify(key, request.path_params["token"], kind)
    except BadToken as exc:
        return invalid(request, None, str(exc))
    incident = await view.get_incident(claim.incident)
    now = view.clock()
    if incident is None or incident.drill:
        return invalid(request, claim, "no such incident")
    if kind == "department":
        if incident.resolved_at is not None and now > incident.resolved_at + \
                DEPARTMENT_GRACE:
            return invalid(request, claim, "expired")
        if claim.recipient not in incident.affected_departments:
            return invalid(request, claim, "department not affected")
    else:
        if not incident.is_open:
            return invalid(request, claim, "resolved")
        if now > claim.expires:
            return invalid(request, claim, "expired")
    return claim, incident


async def act(request: Request, action: dict[str, Any]) -> Incident | None:
    """The leader acts now; a standby leaves it in the store for the leader."""
    return await side_of(request).link_action(action)


def ack_name(view: ReadView, claim: Claim, form: dict[str, str]) -> str:
    try:
        return view.config.person(claim.recipient).name
    except KeyError:
        return form.get("by") or claim.recipient


def _acked(view: ReadView, t: dict[str, str], incident: Incident) -> str:
    """"Already acknowledged by X at T", in the site's time zone."""
    at = local_time(incident.acknowledged_at or 0, view.config.site.tz)
    return t["acked"].format(by=incident.acknowledged_by, at=at)


async def ack_link(request: Request) -> Response:
    view = side_of(request)
    found = await check(request, "ack")
    if isinstance(found, HTMLResponse):
        return found
    claim, incident = found
    lang = _language(request, side_of(request))
    t = TEXT[lang]
    title = f"{incident.id}"
    if incident.acknowledged_by is not None:
        return page(request, title, incident=incident, message=_acked(view, t, incident))
    if request.method == "GET":
        person = claim.recipient in {p.id for p in view.config.people}
        name = ack_name(side_of(request), claim, {})
        return page(request, title, incident=incident, forms=[{
            "what": "ack", "label": t["ack_button"].format(name=name),
            "fields": [] if person else ["by"]}])
    form = await _posted(request)
    if isinstance(form, Refusal):
        return _refused(request, title, incident, form)
    by = ack_name(side_of(request), claim, form)
    log.info("link_used", kind="ack", incident=incident.id, recipient=claim.recipient)
    done = await act(request, {"kind": "ack", "incident": incident.id, "by": by,
                      "recipient": claim.recipient})
    if done is None and view.leading:
        return invalid(request, claim, "refused by the engine")
    if done is None:
        return page(request, title, incident=incident, message=t["queued"])
    if done.acknowledged_by != by:
        return page(request, title, incident=done, message=_acked(view, t, done))
    return page(request, title, incident=done, message=t["ack_done"].format(by=by))


async def department_link(request: Request) -> Response:
    view = side_of(request)
    found = await check(request, "department")
    if isinstance(found, HTMLResponse):
        return found
    claim, incident = found
    dept = claim.recipient
    reader = _department_language(view, dept)
    lang = _language(request, view, reader)
    t = TEXT[lang]
    try:
        dept_name = text(view.config.department(dept), "name", lang,
                         view.config.site.language)
    except KeyError:
        dept_name = dept
    title = f"{dept_name} · {incident.id}"
    what = "on_paper" if incident.is_open else "backfill_done"
    confirmed = incident.departments_confirmed.get(dept) or {}
    if request.method == "GET":
        forms = [] if confirmed.get(f"{what}_at") else [
            {"what": what, "label": t[what], "fields": ["by"]}]
        return page(request, title, incident=incident, forms=forms, reader=reader,
                    message=t["already"] if confirmed.get(f"{what}_at") else "")
    form = await _posted(request)
    if isinstance(form, Refusal):
        return _refused(request, title, incident, form, reader)
    asked = form.get("what", what)
    if asked not in ("on_paper", "backfill_done") or (
            asked == "on_paper" and not incident.is_open):
        return page(request, title, incident=incident, status=422, bad=True,
                    message=t["invalid"], reader=reader)
    if confirmed.get(f"{asked}_at"):
        return page(request, title, incident=incident, message=t["already"], reader=reader)
    log.info("link_used", kind="department", incident=incident.id, recipient=dept,
             what=asked)
    done = await act(request, {"kind": "department", "incident": incident.id, "department": dept,
                      "what": asked, "by": form.get("by"), "recipient": dept})
    if done is None and view.leading:
        return invalid(request, claim, "refused by the engine")
    message = t["queued"] if done is None else t[f"{asked}_done"].format(dept=dept_name)
    return page(request, title, incident=done or incident, message=message, reader=reader)


async def vendor_link(request: Request) -> Response:
    found = await check(request, "vendor")
    if isinstance(found, HTMLResponse):
        return found
    claim, incident = found
    t = TEXT[_language(request, side_of(request))]
    title = f"{incident.id}"
    if incident.vendor_responded_at is not None:
        return page(request, title, incident=incident, message=t["already"])
    if request.method == "GET":
        return page(request, title, incident=incident, forms=[
            {"what": "respond", "label": t["vendor_button"], "fields": ["by", "eta"]}])
    form = await _posted(request)
    if isinstance(form, Refusal):
        return _refused(request, title, incident, form)
    log.info("link_used", kind="vendor", incident=incident.id, recipient=claim.recipient)
    done = await act(request, {"kind": "vendor", "incident": incident.id, "by": form.get("by"),
                      "eta": form.get("eta"), "recipient": claim.recipient})
    if done is None and side_of(request).leading:
        return invalid(request, claim, "refused by the engine")
    return page(request, title, incident=done or incident,
                message=t["queued"] if done is None else t["vendor_done"])


ROUTES = [
    Route("/a/{token}", ack_link, methods=["GET", "POST"]),
    Route("/d/{token}", department_link, methods=["GET", "POST"]),
    Route("/v/{token}", vendor_link, methods=["GET", "POST"]),
]
