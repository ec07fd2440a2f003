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
from monitor.people.words import CAUSES, MESSAGE_KINDS, REVIEW_TEXT, TIMELINE_KINDS, WORDS
from monitor.web import whattodo
from monitor.web.guard import side_of
from monitor.web.interfaces import ReadView
from monitor.web.pages import STRINGS

PAGE = (Path(__file__).parent / "templates" / "people" / "review.j2").read_text("utf-8")


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


def _language(request: Request, view: ReadView) -> str:
    """`?lang=zh|en`, else the site's language (SPEC 7)."""
    lang = request.query_params.get("lang") or view.config.site.language
    return lang if lang in REVIEW_TEXT else "en"


async def as_json(request: Request) -> Response:
    view = side_of(request)
    found = await review_of(view, request.path_params["id"], _language(request, view))
    if found is None:
        return JSONResponse({"error": f"no incident {request.path_params['id']}",
                             "status": 404}, status_code=404)
    return JSONResponse(found)


async def as_html(request: Request) -> Response:
    view = side_of(request)
    lang = _language(request, view)
    found = await review_of(view, request.path_params["id"], lang)
    if found is None:
        return HTMLResponse("<!doctype html><title>404</title><p>no such incident</p>",
                            status_code=404)
    printed = local_time(view.clock(), view.config.site.tz)
    return HTMLResponse(_TEMPLATE.render(r=found, t=REVIEW_TEXT[lang], lang=lang,
                                         h=labels(view.config, lang),
                                         site=view.config.site.name, printed=printed))


ROUTES = [Route("/api/v1/incidents/{id}/review", as_json, methods=["GET"]),
          Route("/incidents/{id}/review", as_html, methods=["GET"])]
