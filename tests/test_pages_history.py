"""The front page says what to do, history as pictures, both languages: in a real Chromium.

A live outage of the real daemon (a real HTTP target answering 503): the core network and
the two systems behind it go down. The browser is Debian's chromium driven by Playwright,
as in tests/test_pages.py. Accessibility: axe-core (npm, installed into .ci/axe by
.ci/run) runs inside the page; serious or critical violations fail the test. Screenshots
(desktop and phone width) land in tests/artifacts/.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, DaemonProcess, HttpTarget, free_port

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "tests" / "artifacts"
AXE = REPO / ".ci" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
HIS_EN = "Switch to paper prescriptions (form B-3)."
HIS_ZH = "改用纸质处方（B-3 表）。"
LIS_EN = "Send samples with paper request forms; results by phone."
PACS_EN = "View images on the modality workstation."

needs_browser = pytest.mark.skipif(
    importlib.util.find_spec("playwright") is None or not CHROMIUM.exists(),
    reason="needs `pip install playwright` and the Debian chromium package (/usr/bin/chromium)")


def config(target: HttpTarget, port: int) -> str:
    return f"""
site:
  name: History Hospital
  timezone: Asia/Shanghai
  language: en
  campuses: [{{id: main, name: {{zh: 本部院区, en: Main campus}}}}, north]
server: {{listen: "127.0.0.1:{port}", api_tokens: [t]}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 500ms, retry_interval: 250ms, confirm: 2, recover: 2}}
departments:
  - {{id: er, name: {{zh: 急诊科, en: Emergency}}, campus: main, language: zh}}
  - {{id: lab, name: {{zh: 检验科, en: Laboratory}}, campus: north}}
systems:
  - {{id: core-net, name: {{zh: 核心网络, en: Core network}}, criticality: critical}}
  - id: his
    name: {{zh: 门诊医生站, en: Outpatient doctor station}}
    departments: [er]
    depends_on: [core-net]
    downtime_procedure: {{zh: "{HIS_ZH}", en: "{HIS_EN}"}}
  - id: lis
    name: LIS
    departments: [lab]
    depends_on: [core-net]
    downtime_procedure: "{LIS_EN}"
  - id: pacs
    name: PACS
    departments: [er]
    downtime_procedure: "{PACS_EN}"
checks:
  - {{id: core-switch, system: core-net, type: tcp, host: 127.0.0.1, port: {target.port}}}
  - {{id: core-web, system: core-net, type: http, url: "{target.url}core"}}
  - {{id: his-web, system: his, type: http, url: "{target.url}his"}}
  - {{id: lis-web, system: lis, type: http, url: "{target.url}lis"}}
  - {{id: pacs-port, system: pacs, type: tcp, host: 127.0.0.1, port: {target.port}}}
maintenance:
  - {{systems: [pacs], start: "2030-03-01T22:00:00+08:00", end: "2030-03-02T02:00:00+08:00",
     reason: {{zh: 存储扩容, en: storage upgrade}}, announce: [24h]}}
"""


async def open_incidents(url: str, count: int) -> list[dict[str, Any]]:
    """Wait until `count` incidents are open and all but the root are caused by it."""
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=5) as api:
        found: list[dict[str, Any]] = []
        for _ in range(300):  # 30 s
            found = (await api.get("/api/v1/incidents", params={"status": "open"})).json()[
                "incidents"]
            if len(found) == count and sum(1 for i in found if i["caused_by"]) == count - 1:
                return found
            await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} incidents, one root: {found}")


async def no_open_incidents(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=5) as api:
        for _ in range(300):  # 30 s
            found = (await api.get("/api/v1/incidents", params={"status": "open"})).json()
            if not found["incidents"]:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"still open: {found}")


@pytest.fixture
async def outage(http_target: HttpTarget,
                 daemon_factory: Any) -> AsyncIterator[tuple[DaemonProcess, dict[str, Any]]]:
    port = free_port()
    daemon = await daemon_factory(config(http_target, port), port)
    await asyncio.sleep(2.5)  # some OK history first
    http_target.status = 503
    incidents = await open_incidents(daemon.url, 3)
    root = next(i for i in incidents if not i["caused_by"])
    assert root["system"] == "core-net"
    yield daemon, root


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


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Run axe-core in the page; the serious and critical violations it finds.

    One rule is off: `meta-refresh`. SPEC §7 requires the status pages to refresh themselves
    (they hang on ward wall screens), and without JavaScript a meta refresh is the way.
    """
    await page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = await page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations'],
                                           rules: {'meta-refresh': {enabled: false}}});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.slice(0, 3).map(n => n.target)}));
    }""")
    return [v for v in result if v["impact"] in ("serious", "critical")]


@needs_browser
async def test_front_page_during_a_live_outage_says_what_to_do(
    browser: Any, outage: tuple[DaemonProcess, dict[str, Any]], http_target: HttpTarget
) -> None:
    daemon, root = outage
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    external: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(daemon.url) else external.append(r.url))
    await page.goto(f"{daemon.url}/")

    # The banner names the root cause first, not a list of every dependent.
    first_line = await page.locator(".banner .root").first.inner_text()
    assert first_line == "Core network down: 3 systems affected"
    # The root incident comes first and carries its dependents' procedures and departments.
    cards = page.locator("ul.incidents > li")
    assert await cards.count() == 3
    first = cards.first
    assert await first.get_attribute("id") == f"incident-{root['id']}"
    text = await first.inner_text()
    assert HIS_EN in text and LIS_EN in text, text
    assert HIS_ZH not in text
    links = await first.locator(".depts a").evaluate_all("es => es.map(e => e.href)")
    assert {link.rsplit("/", 1)[1] for link in links} == {"er", "lab"}
    # Planned maintenance with the procedure it announces.
    planned = await page.locator("#maintenance + ul").inner_text()
    assert "storage upgrade" in planned and PACS_EN in planned

    # The 24-hour bar: 48 cells, the one holding now is down, and it says so in text.
    bar = page.locator("li.system-his svg.bar24")
    cells = bar.locator("g.cell")
    assert await cells.count() == 48
    last = cells.last
    assert "down" in (await last.get_attribute("class") or "")
    assert (await last.locator("title").text_content() or "").endswith(": down")
    label = await bar.get_attribute("aria-label") or ""
    assert "down" in label and "Last 24 hours" in label
    assert "Availability" in await page.locator("li.system-his .avail").inner_text()
    # Campus names, not ids.
    assert await page.locator("h2", has_text="Campus: Main campus").count() == 1
    await page.screenshot(path=str(ARTIFACTS / "history-status-desktop.png"), full_page=True)

    phone = await browser.new_page(viewport={"width": 375, "height": 740},
                                   device_scale_factor=2, is_mobile=True)
    await phone.goto(f"{daemon.url}/")
    overflow = await phone.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"page scrolls sideways by {overflow}px on a phone"
    assert HIS_EN in await phone.locator("ul.incidents > li").first.inner_text()
    await phone.screenshot(path=str(ARTIFACTS / "history-status-phone.png"), full_page=True)
    await phone.locator("li.system-his").screenshot(
        path=str(ARTIFACTS / "history-card-phone.png"))
    await phone.locator("ul.incidents > li").first.screenshot(
        path=str(ARTIFACTS / "history-incident-phone.png"))

    # The system page: 90 daily cells (today down), a response-time chart per HTTP/TCP check.
    await page.goto(f"{daemon.url}/systems/his")
    days = page.locator("svg.days g.cell")
    assert await days.count() == 90
    assert "down" in (await days.last.get_attribute("class") or "")
    chart = page.locator("#chart-his-web svg.latency")
    await chart.wait_for()
    assert await chart.locator("polyline").count() == 1
    box = await chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 80
    assert "ms" in (await chart.get_attribute("aria-label") or "")
    incidents = await page.locator("table.incidents").inner_text()
    assert "his" in incidents.lower() or "inc-" in incidents
    await page.screenshot(path=str(ARTIFACTS / "history-system-desktop.png"), full_page=True)
    await page.locator("#chart-his-web").screenshot(
        path=str(ARTIFACTS / "history-chart-desktop.png"))
    await phone.goto(f"{daemon.url}/systems/his")
    overflow = await phone.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"system page scrolls sideways by {overflow}px on a phone"
    # 90 days in one row are 3 px a day on a phone: there they are three rows of 30.
    assert await page.locator("svg.days").is_visible()
    assert not await page.locator("svg.days-grid").is_visible()
    assert not await phone.locator("svg.days").is_visible()
    grid = phone.locator("svg.days-grid")
    assert await grid.is_visible() and await grid.locator("g.cell").count() == 90
    assert "down" in (await grid.locator("g.cell").last.get_attribute("class") or "")
    today = await grid.locator("g.cell").last.bounding_box()
    assert today is not None and today["width"] >= 7 and today["height"] >= 20, today
    # The incident table is one block per incident on a phone: every column in view.
    row = phone.locator("table.incidents tr").nth(1)
    row_box, table_box = await row.bounding_box(), await phone.locator(
        "div.scroll:has(table.incidents)").bounding_box()
    assert row_box and table_box and row_box["width"] <= table_box["width"] + 1
    assert "OPEN" in (await row.inner_text()).upper()
    await phone.screenshot(path=str(ARTIFACTS / "history-system-phone.png"), full_page=True)

    # The incident page links to its system page.
    await page.goto(f"{daemon.url}/incidents/{root['id']}")
    review = await page.locator("a.review-link").get_attribute("href")
    assert review == f"/incidents/{root['id']}/review"
    await page.click("a.system-link")
    await page.wait_for_url("**/systems/core-net")
    assert external == [], f"pages loaded external assets: {external}"

    # The API agrees with the picture.
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False, timeout=5) as api:
        history = (await api.get("/api/v1/systems/his/history", params={"days": 3})).json()
    assert history["slots_24h"][-1]["worst"] == "down"
    assert history["days"][-1]["worst"] == "down"
    assert len(history["days"]) == 3

    # After the outage: the system is OK again and the bar keeps the outage's slot down
    # (found by its time, so a slot boundary passing during the test changes nothing).
    http_target.status = 200
    await no_open_incidents(daemon.url)
    await page.goto(f"{daemon.url}/")
    card = page.locator("li.system-his")
    assert (await card.locator(".badge").inner_text()) == "OK"
    started = dt.datetime.fromisoformat(root["started_at"])
    slot = started.replace(minute=started.minute - started.minute % 30)
    title = f"{slot:%m-%d %H:%M}–"
    cell = card.locator("svg.bar24 g.cell", has=page.locator(f"title:text-matches('^{title}')"))
    assert await cell.count() == 1
    assert "down" in (await cell.get_attribute("class") or "")
    assert (await cell.locator("title").text_content() or "").endswith(": down")
    assert "down" in (await card.locator("svg.bar24").get_attribute("aria-label") or "")
    await page.screenshot(path=str(ARTIFACTS / "history-status-after-desktop.png"),
                          full_page=True)


@needs_browser
async def test_both_languages_on_the_pages(
    browser: Any, outage: tuple[DaemonProcess, dict[str, Any]]
) -> None:
    daemon, _ = outage
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(f"{daemon.url}/?lang=zh")
    banner = await page.locator(".banner .root").first.inner_text()
    assert banner.startswith("核心网络故障")
    first = await page.locator("ul.incidents > li").first.inner_text()
    assert HIS_ZH in first and "急诊科" in first
    assert await page.locator("h2", has_text="本部院区").count() == 1
    await page.screenshot(path=str(ARTIFACTS / "history-status-zh.png"), full_page=True)
    phone = await browser.new_page(viewport={"width": 375, "height": 740},
                                   device_scale_factor=2, is_mobile=True)
    await phone.goto(f"{daemon.url}/?lang=zh")
    await phone.screenshot(path=str(ARTIFACTS / "history-status-zh-phone.png"), full_page=True)
    await phone.goto(f"{daemon.url}/departments/er")
    assert HIS_ZH in await phone.locator("#procedure-his .text").inner_text()
    await phone.screenshot(path=str(ARTIFACTS / "history-department-zh-phone.png"),
                           full_page=True)
    await phone.goto(f"{daemon.url}/systems/his?lang=zh")
    await phone.screenshot(path=str(ARTIFACTS / "history-system-zh-phone.png"),
                           full_page=True)
    # The emergency department reads Chinese (its `language`), the lab the site's English.
    await page.goto(f"{daemon.url}/departments/er")
    assert HIS_ZH in await page.locator("#procedure-his .text").inner_text()
    assert "急诊科" in await page.locator("h1").inner_text()
    await page.goto(f"{daemon.url}/departments/lab")
    assert "Laboratory" in await page.locator("h1").inner_text()
    assert LIS_EN in await page.locator("#procedure-lis .text").inner_text()
    await page.goto(f"{daemon.url}/systems/his?lang=zh")
    assert "门诊医生站" in await page.locator("h1").inner_text()
    assert "最近 90 天" in await page.locator("svg.days").get_attribute("aria-label")


@needs_browser
@pytest.mark.skipif(not AXE.exists(), reason="axe-core not installed (.ci/run installs it "
                    "with npm into .ci/axe)")
async def test_no_serious_accessibility_violations(
    browser: Any, outage: tuple[DaemonProcess, dict[str, Any]]
) -> None:
    daemon, root = outage
    # The pages' CSP (default-src 'none') forbids any script, so the checker can only be
    # injected with the browser told to bypass CSP; the page is otherwise as served.
    page = await browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    found: dict[str, list[dict[str, Any]]] = {}
    for path in ("/", "/?lang=zh", "/systems/his", "/departments/er",
                 f"/incidents/{root['id']}"):
        await page.goto(f"{daemon.url}{path}")
        violations = await axe_violations(page)
        if violations:
            found[path] = violations
    assert not found, json.dumps(found, ensure_ascii=False, indent=1)


async def test_history_survives_a_restart_of_the_daemon(
    outage: tuple[DaemonProcess, dict[str, Any]], http_target: HttpTarget
) -> None:
    """SIGTERM writes the bucket still going; the restarted daemon shows it."""
    import sqlite3

    daemon, _ = outage
    assert daemon.terminate() == 0
    state = daemon.config_path.parent / "state.db"
    with sqlite3.connect(state) as db:
        rows = db.execute("SELECT worst, n FROM history_checks WHERE check_id = 'his-web'"
                          ).fetchall()
    assert rows and max(worst for worst, _ in rows) == 2  # down, written at shutdown
    assert sum(n for _, n in rows) >= 3
    http_target.status = 200
    await daemon.start()
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False, timeout=5) as api:
        history = (await api.get("/api/v1/systems/his/history", params={"days": 1})).json()
    assert history["slots_24h"][-1]["worst"] == "down"
    assert history["days"] == [{"date": history["days"][0]["date"],
                                "availability": history["days"][0]["availability"],
                                "worst": "down"}]
