"""Status pages during a live outage of the real daemon, in a real browser and over plain HTTP.

The browser is the Debian `chromium` package driven by Playwright (`pip install playwright`;
the browser is never downloaded: `executable_path=/usr/bin/chromium`). Screenshots of each
page land in `tests/artifacts/` (gitignored) for a human to look at.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, DaemonProcess, HttpTarget, Receiver, free_port

pytestmark = pytest.mark.slow
TOKEN = "pages-token"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "tests" / "artifacts"
PROCEDURE = "Switch to paper prescriptions (form B-3). Keep every slip for back-fill."
STILL_WORKS = "PACS viewing and the lab results printer"


def config(target: HttpTarget, receiver: Receiver, port: int, language: str = "en",
           his_name: str = "Outpatient doctor station", db_port: int | None = None) -> str:
    return f"""
site: {{name: Pages Hospital, timezone: Asia/Shanghai, language: {language},
        campuses: [main, north]}}
server: {{listen: "127.0.0.1:{port}", api_tokens: [{TOKEN}]}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 500ms, retry_interval: 250ms, confirm: 2, recover: 2}}
roles: {{it_oncall: [it]}}
departments:
  - {{id: er, name: Emergency, campus: main, notify: [er-hook]}}
  - {{id: lab, name: Laboratory, campus: north, notify: [er-hook], language: en}}
systems:
  - id: his
    name: "{his_name}"
    criticality: critical
    departments: [er]
    depends_on: [his-db]
    plan: p
    downtime_procedure: "{PROCEDURE}"
    still_works: "{STILL_WORKS}"
  - {{id: his-db, name: HIS database, plan: p}}
  - {{id: lis, name: LIS, departments: [lab], plan: p}}
checks:
  - {{id: his-web, system: his, type: http, url: "{target.url}",
     expect: {{status: [200]}}}}
  - {{id: his-db-port, system: his-db, type: tcp, host: 127.0.0.1,
     port: {db_port or target.port}}}
  - {{id: lis-port, system: lis, type: tcp, host: 127.0.0.1, port: {target.port}}}
notifiers:
  - {{id: it, type: webhook, url: "{receiver.url('it')}"}}
  - {{id: er-hook, type: webhook, url: "{receiver.url('er')}"}}
plans:
  - id: p
    steps:
      - {{after: 0s, notify: [role:it_oncall], message: outage_it}}
      - {{after: 0s, notify: [departments], message: department_outage}}
    on_recovery: [role:it_oncall, departments]
maintenance:
  - {{systems: [lis], start: "2030-03-01T22:00:00+08:00", end: "2030-03-02T02:00:00+08:00",
     reason: LIS database migration}}
"""


async def wait_for_incident(url: str, status: str = "open") -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=5) as api:
        for _ in range(200):  # 20 s
            found = (await api.get("/api/v1/incidents", params={"status": status})).json()
            if found["incidents"]:
                return dict(found["incidents"][0])
            await asyncio.sleep(0.1)
    raise AssertionError(f"no {status} incident")


def local_minute(stamp: str) -> str:
    """`2026-11-20T08:05:12+08:00` as the page writes it: `2026-11-20 08:05`."""
    return stamp[:16].replace("T", " ")


@pytest.fixture
async def outage(
    http_target: HttpTarget, receiver: Receiver, daemon_factory
) -> AsyncIterator[tuple[DaemonProcess, dict[str, Any]]]:
    """The real daemon with HIS answering 503: an open critical incident, notices sent."""
    port = free_port()
    http_target.status = 503
    daemon = await daemon_factory(config(http_target, receiver, port), port)
    incident = await wait_for_incident(daemon.url)
    await receiver.wait_for(lambda: "department_outage" in receiver.kinds("er"), timeout=15)
    yield daemon, incident


# ---- in a real browser ---------------------------------------------------------------------

needs_browser = pytest.mark.skipif(
    importlib.util.find_spec("playwright") is None or not CHROMIUM.exists(),
    reason="needs `pip install playwright` and the Debian chromium package (/usr/bin/chromium)")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run"])
        try:
            yield chromium
        finally:
            await chromium.close()


@needs_browser
async def test_pages_in_a_browser_during_an_outage_and_after_it(
    browser: Any, outage: tuple[DaemonProcess, dict[str, Any]], http_target: HttpTarget
) -> None:
    """Down with its start time, the procedure in large print, the timeline, ack, back-fill."""
    daemon, incident = outage
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    external: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(daemon.url) else external.append(r.url))

    # Status page: HIS is DOWN since the first failed probe, linked to its incident.
    await page.goto(f"{daemon.url}/")
    card = page.locator("li.system-his").first
    await card.wait_for()
    card_text = await card.inner_text()
    assert "DOWN" in card_text and "Outpatient doctor station" in card_text
    assert local_minute(incident["started_at"]) in card_text
    banner = await page.locator(".banner").first.inner_text()
    assert "1 system with problems" in banner
    maintenance = await page.locator("#maintenance + ul").inner_text()
    assert "PLANNED" in maintenance and "LIS database migration" in maintenance
    assert "2030-03-01 22:00" in maintenance
    await page.screenshot(path=str(ARTIFACTS / "status.png"), full_page=True)

    # Department view: the downtime procedure in large print, and what still works.
    await page.goto(f"{daemon.url}/departments/er")
    procedure = page.locator("#procedure-his")
    assert PROCEDURE in await procedure.locator(".text").inner_text()
    assert STILL_WORKS in await procedure.inner_text()
    size = await procedure.locator(".text").evaluate(
        "e => parseFloat(getComputedStyle(e).fontSize)")
    assert size >= 24, f"procedure text is {size}px: not large print"
    await page.screenshot(path=str(ARTIFACTS / "department.png"), full_page=True)
    await page.emulate_media(media="print")
    assert not await page.locator("header").is_visible(), "navigation is not printed"
    assert await procedure.is_visible()
    pdf = await page.pdf(format="A4")
    assert pdf.startswith(b"%PDF")
    (ARTIFACTS / "department.pdf").write_bytes(pdf)
    await page.emulate_media(media="screen")

    # Incident page, reached by the status page's link: timeline and delivered messages.
    await page.goto(f"{daemon.url}/")
    await page.click(f"a[href='/incidents/{incident['id']}']")
    await page.wait_for_url(f"**/incidents/{incident['id']}")
    timeline = await page.locator("table.timeline").inner_text()
    assert "Incident opened" in timeline
    assert "Check failed" in timeline and "HTTP 503" in timeline
    assert "Notification sent" in timeline
    messages = await page.locator("table.messages").inner_text()
    assert "department_outage" in messages and "er-hook" in messages
    assert "delivered" in messages
    await page.screenshot(path=str(ARTIFACTS / "incident.png"), full_page=True)

    # The ack form: a wrong token is refused and changes nothing; the right one records IT.
    await page.fill("#by", "Dr. Wang")
    await page.fill("#note", "restarting the app server")
    await page.fill("#token", "wrong")
    await page.click("button[type=submit]")
    assert "Not authorised" in await page.locator("h1").inner_text()
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False) as api:
        current = (await api.get(f"/api/v1/incidents/{incident['id']}")).json()
        assert current["acknowledged_by"] is None
    await page.goto(f"{daemon.url}/incidents/{incident['id']}")
    await page.fill("#by", "Dr. Wang")
    await page.fill("#note", "restarting the app server")
    await page.fill("#token", TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"**/incidents/{incident['id']}")
    assert "Acknowledged by Dr. Wang" in await page.locator("main").inner_text()
    assert "restarting the app server" in await page.locator("table.timeline").inner_text()
    await page.screenshot(path=str(ARTIFACTS / "incident-acknowledged.png"), full_page=True)

    # A phone: no sideways scrolling, the state still readable.
    phone = await browser.new_page(viewport={"width": 375, "height": 740},
                                   device_scale_factor=2, is_mobile=True)
    await phone.goto(f"{daemon.url}/")
    overflow = await phone.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"page scrolls sideways by {overflow}px on a phone"
    assert await phone.locator("li.card.down .badge", has_text="DOWN").first.is_visible()
    await phone.screenshot(path=str(ARTIFACTS / "status-phone.png"), full_page=True)

    # Recovery: the department sees the back-fill window.
    http_target.status = 200
    resolved = await wait_for_incident(daemon.url, status="resolved")
    await page.goto(f"{daemon.url}/departments/er")
    notice = await page.locator(f"#recovery-{resolved['id']}").inner_text()
    assert "back-fill" in notice.lower()
    assert local_minute(resolved["started_at"]) in notice
    assert local_minute(resolved["resolved_at"]) in notice
    assert await page.locator(".procedure").count() == 0
    await page.screenshot(path=str(ARTIFACTS / "department-recovered.png"), full_page=True)
    assert external == [], f"pages loaded external assets: {external}"


# ---- plain HTTP ----------------------------------------------------------------------------

EXTERNAL = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(|<script|<link""",
                      re.I)


async def test_pages_answer_with_the_right_status_language_and_refresh(
    outage: tuple[DaemonProcess, dict[str, Any]]
) -> None:
    """HTML in English for this site, refreshing, self-contained, 404 for unknown ids."""
    daemon, incident = outage
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False, timeout=5) as web:
        for path in ("/", "/departments/er", "/departments/lab",
                     f"/incidents/{incident['id']}"):
            answer = await web.get(path)
            assert answer.status_code == 200, path
            assert answer.headers["content-type"] == "text/html; charset=utf-8"
            html = answer.text
            assert '<html lang="en">' in html, path
            assert '<meta name="viewport"' in html
            assert not EXTERNAL.search(html), f"{path}: {EXTERNAL.search(html)}"
            assert all(h.startswith(("/", "#")) for h in re.findall(r'href="([^"]*)"', html))
            refresh = '<meta http-equiv="refresh" content="30">' in html
            assert refresh == (not path.startswith("/incidents/")), path
        status_html = (await web.get("/")).text
        assert "Campus: main" in status_html and "Campus: north" in status_html
        assert "Shared systems (no campus)" in status_html, "his-db serves no department"
        department = (await web.get("/departments/er")).text
        assert "HIS database" in department and "needed by Outpatient doctor station" in (
            department)

        for path in ("/departments/no-such-ward", "/incidents/inc-999"):
            missing = await web.get(path)
            assert missing.status_code == 404, path
            assert "text/html" in missing.headers["content-type"]
            assert "Not found" in missing.text

        # The footer tells the refresh the page really does (the system page: 60 s).
        system = (await web.get("/systems/his")).text
        assert '<meta http-equiv="refresh" content="60">' in system
        assert "refreshes itself every 60 seconds" in system
        assert "refreshes itself every 30 seconds" in status_html

        # A reader who chose the other language stays in it from link to link; in the
        # site's language links carry no ?lang= at all.
        pages = ("/", "/departments/er", "/systems/his", f"/incidents/{incident['id']}",
                 "/incidents/inc-999")
        for path in pages:
            plain = re.findall(r'href="(/[^"#]*)"', (await web.get(path)).text)
            assert plain and not [h for h in plain if "lang=" in h], path
            chosen = await web.get(path, params={"lang": "zh"})
            assert '<html lang="zh-CN">' in chosen.text, path
            links = re.findall(r'href="(/[^"#]*)"', chosen.text)
            assert links and all(h.endswith("?lang=zh") for h in links), (path, links)
            actions = re.findall(r'action="([^"]*)"', chosen.text)
            assert all(a.endswith("?lang=zh") for a in actions), (path, actions)


async def test_the_ack_form_checks_the_token_like_the_api(
    outage: tuple[DaemonProcess, dict[str, Any]]
) -> None:
    """401 page and nothing changed on a bad token; 303 back to the incident on a good one."""
    daemon, incident = outage
    path = f"/incidents/{incident['id']}/ack"
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False, timeout=5) as web:
        for token in ("", "wrong", f"{TOKEN}x"):
            refused = await web.post(path, data={"by": "Mallory", "token": token})
            assert refused.status_code == 401 and "Nothing was changed" in refused.text
        api = (await web.get(f"/api/v1/incidents/{incident['id']}")).json()
        assert api["acknowledged_by"] is None
        nameless = await web.post(path, data={"by": " ", "token": TOKEN})
        assert nameless.status_code == 422
        accepted = await web.post(path, data={"by": "Dr. Wang", "note": "on it",
                                              "token": TOKEN})
        assert accepted.status_code == 303
        assert accepted.headers["location"] == f"/incidents/{incident['id']}"
        api = (await web.get(f"/api/v1/incidents/{incident['id']}")).json()
        assert api["acknowledged_by"] == "Dr. Wang"
        unknown = await web.post("/incidents/inc-999/ack", data={"by": "x", "token": TOKEN})
        assert unknown.status_code == 404
        huge = await web.post(path, content=b"by=" + b"x" * 100_000,
                              headers={"content-type": "application/x-www-form-urlencoded"})
        assert huge.status_code == 413


async def test_a_chinese_site_gets_chinese_pages_and_names_are_escaped(
    http_target: HttpTarget, receiver: Receiver, daemon_factory
) -> None:
    """`site.language: zh` pages in Chinese; a department with `language: en` in English."""
    port = free_port()
    http_target.status = 503
    text = config(http_target, receiver, port, language="zh",
                  his_name="门诊医生站 <script>alert(1)</script>")
    daemon = await daemon_factory(text, port)
    await wait_for_incident(daemon.url)
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False, timeout=5) as web:
        html = (await web.get("/")).text
        assert '<html lang="zh-CN">' in html
        assert "系统运行状态" in html and "故障" in html and "维护计划" in html
        assert "<script>" not in html and "&lt;script&gt;" in html
        department = (await web.get("/departments/er")).text
        assert "请执行应急预案" in department and PROCEDURE in department
        lab = (await web.get("/departments/lab")).text
        assert '<html lang="en">' in lab, "the department's own language wins"
        english = (await web.get("/", params={"lang": "en"})).text
        assert '<html lang="en">' in english and "System status" in english


async def test_a_system_down_because_of_its_database_says_so(
    http_target: HttpTarget, receiver: Receiver, daemon_factory
) -> None:
    """HIS fails because its database is down: 'caused by', and the ward still gets the
    HIS downtime procedure."""
    port = free_port()
    http_target.status = 503
    daemon = await daemon_factory(
        config(http_target, receiver, port, db_port=free_port()), port)
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False, timeout=5) as web:
        for _ in range(200):
            incidents = (await web.get("/api/v1/incidents", params={"status": "open"})).json()
            his = [i for i in incidents["incidents"] if i["system"] == "his"]
            if his and his[0]["caused_by"]:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"his never marked caused_by: {incidents}")
        status = (await web.get("/")).text
        his_card = status[status.index('system-his"'):][:600]
        assert "DOWN (caused by HIS database)" in his_card
        db_card = status[status.index('system-his-db"'):][:400]
        assert "DOWN" in db_card
        department = (await web.get("/departments/er")).text
        assert 'id="procedure-his"' in department and PROCEDURE in department
        assert "Not working because HIS database is down." in department
        assert 'id="procedure-his-db"' not in department, "no empty procedure for the DB"


def test_both_languages_have_every_string() -> None:
    """A string missing in one language would fail the page (StrictUndefined) for that site."""
    from monitor.web.pages import CAUSES, STRINGS, TIMELINE_KINDS

    for table in (STRINGS, TIMELINE_KINDS, CAUSES):
        assert set(table["en"]) == set(table["zh"])
        for language in ("en", "zh"):
            assert set(re.findall(r"{(\w+)}", " ".join(table[language].values()))) == set(
                re.findall(r"{(\w+)}", " ".join(table["en"].values())))
