"""The post-incident review (SPEC 13.6): JSON and printable HTML from one incident with an
acknowledgement, department confirmations, a vendor response, notes, cause and actions; the
HTML prints to PDF in headless Chromium, and page 1 as printed is saved as a PNG artifact."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from monitor.core.result import Result, State
from monitor.probing.state import advance
from tests.conftest import REPO
from tests.test_links import T0, app, first  # noqa: F401  # the in-process daemon fixture

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "tests" / "artifacts"


async def _delivered(daemon: Any) -> None:
    """Let the real outbox deliver what is due (console channels) and the engine hear of it."""
    for _ in range(200):
        if not [m for m in await daemon.store.list_messages() if m.status == "pending"]:
            break
        await asyncio.sleep(0.02)
    await daemon.engine.tick()


async def _incident_with_everything(daemon: Any, clock: Any) -> None:
    engine = daemon.engine
    inc = first(daemon)
    clock.now = T0 + 3  # the channels take the first messages 3 s after they fell due
    daemon.outbox.start()
    await _delivered(daemon)
    clock.now = T0 + 120
    await engine.acknowledge(inc, "李娜", "on it", via="link")
    await engine.confirm_department(inc, "er", "on_paper", "护士长 吴")
    await engine.vendor_response(inc, "Engineer Wu", "30m", via="link")
    await engine.add_note(inc, "李娜", "数据库主节点切换中")
    clock.now = T0 + 1800
    for _ in range(2):
        advance(engine.states["his-web"], Result(State.OK, "up"), clock.now, 3, 2)
    engine.system_changed("his")
    await engine.tick()
    await engine.confirm_department(inc, "er", "backfill_done", "护士长 吴")
    await engine.patch(inc, "王主任", {"confirmed_cause": "database",
                                          "root_cause": "主库磁盘写满",
                                          "actions": ["磁盘容量告警阈值改为 80%"]})
    await _delivered(daemon)
    await daemon.outbox.stop()


async def test_the_review_as_json_and_html(app) -> None:  # noqa: F811
    daemon, client, clock = app
    await _incident_with_everything(daemon, clock)
    review = (await client.get(f"/api/v1/incidents/{first(daemon)}/review")).json()
    assert review["window"]["start"].startswith("2027-01-15T")
    assert review["window"]["duration_seconds"] > 0
    assert review["acknowledgement"]["by"] == "李娜"
    er = review["departments"][0]
    assert er["on_paper_by"] == "护士长 吴" and er["backfill_done_at"] is not None
    assert review["departments_unanswered"] == []
    assert review["vendor"]["responded_by"] == "Engineer Wu" and review["vendor"]["sla"] == "kept"
    assert review["cause"] == {"suspected": review["cause"]["suspected"],
                               "evidence": review["cause"]["evidence"], "confirmed": "database"}
    assert review["root_cause"] == "主库磁盘写满"
    assert review["progress_notes"][0]["text"] == "数据库主节点切换中"
    kinds = {m["kind"] for m in review["messages"]}
    assert {"outage_it", "department_outage", "vendor_escalation"} <= kinds
    assert all(m["due"] for m in review["messages"])
    assert all(m["status"] == "sent" and m["delivered"] for m in review["messages"]), \
        review["messages"]
    assert review["detection"]["seconds"] == 3.0, "first failed probe -> first IT delivery"
    assert review["vendor"]["escalated_at"] == review["window"]["start"].replace(
        ":00+08:00", ":03+08:00"), "the vendor's clock starts at the delivery (SPEC 13.4)"
    page = await client.get(f"/incidents/{first(daemon)}/review")
    assert page.status_code == 200
    for text in ("故障复盘报告", "李娜", "护士长 吴", "Engineer Wu", "主库磁盘写满",
                 "磁盘容量告警阈值改为 80%"):
        assert text in page.text, text
    assert (await client.get("/api/v1/incidents/nope/review")).status_code == 404
    # Human text in the reader's language; the JSON keeps its tokens (SPEC 7, 13.6).
    zh = (await client.get(f"/incidents/{first(daemon)}/review?lang=zh")).text
    for leftover in ("critical (", ">kept<", ">database<", ">outage_it<",
                     ">department_outage<", ">vendor_escalation<", ">acknowledged<",
                     ">department_on_paper<", ">opened<"):
        assert leftover not in zh, leftover
    for word in ("故障 (自动检测)", "达标", "数据库", "故障（信息科）", "厂商升级",
                 "科室已启用纸质流程"):
        assert word in zh, word
    en = (await client.get(f"/incidents/{first(daemon)}/review?lang=en")).text
    for word in ("outage (checks)", ">kept<", ">database<", "vendor escalation",
                 "Department on paper"):
        assert word in en, word


async def test_the_review_and_the_incident_page_say_the_record_in_the_readers_language(
        app) -> None:  # noqa: F811
    """The timeline is stored in English with machine data ("outage_it → it", "急诊科: on
    paper (…)"); the review (JSON, HTML, `--format md`) and the incident page say each entry
    again in the reader's language, with names for kinds, causes and departments."""
    from monitor.people.review import review_markdown

    daemon, client, clock = app
    await _incident_with_everything(daemon, clock)
    inc = first(daemon)
    zh = (await client.get(f"/api/v1/incidents/{inc}/review?lang=zh")).json()
    en = (await client.get(f"/api/v1/incidents/{inc}/review?lang=en")).json()
    assert (zh["language"], en["language"]) == ("zh", "en")
    assert (await client.get(f"/api/v1/incidents/{inc}/review")).json()["language"] == "zh", \
        "without ?lang= the site's language"
    zh_lines, en_lines = [e["text"] for e in zh["timeline"]], [e["text"] for e in en["timeline"]]
    for said in ("急诊科：已启用纸质流程（护士长 吴）", "急诊科：补录完成（护士长 吴）",
                 "李娜 已确认接手：on it", "王主任 确认原因：数据库", "王主任 填写根本原因",
                 "王主任 记录整改措施 1 项", "厂商已响应：Engineer Wu，预计 30m",
                 "全部检测恢复正常", "故障事件开始"):
        assert said in zh_lines, (said, zh_lines)
    assert any(t.startswith("故障（信息科） → ") for t in zh_lines), zh_lines
    assert not [t for t in zh_lines if "acknowledged by" in t or "on paper" in t
                or "outage_it" in t], zh_lines
    for said in ("急诊科: on paper (护士长 吴)", "acknowledged by 李娜: on it",
                 "cause confirmed by 王主任: database", "vendor responding: Engineer Wu, ETA 30m",
                 "Outage opened"):
        assert said in en_lines, (said, en_lines)
    assert any(t.startswith("outage (IT) → ") for t in en_lines), en_lines
    recipients = {m["recipient_name"] for m in zh["messages"]}
    assert {"李娜", "急诊科"} <= recipients, recipients

    md_zh, md_en = review_markdown(zh), review_markdown(en)
    for said in (f"# 故障复盘报告：{inc}", "## 科室", "## 时间线", "| 急诊科 |",
                 "| 故障（信息科） | 李娜 |", "故障 (自动检测)", "达标",
                 "科室已启用纸质流程：急诊科：已启用纸质流程（护士长 吴）"):
        assert said in md_zh, (said, md_zh)
    for leftover in ("Post-incident review", "## Timeline", "on paper", "| outage_it |",
                     "acknowledged by", "critical"):
        assert leftover not in md_zh, (leftover, md_zh)
    for said in (f"# Post-incident review: {inc}", "## Timeline", "| outage (IT) | 李娜 |",
                 "outage (checks)", "Department on paper: 急诊科: on paper (护士长 吴)"):
        assert said in md_en, (said, md_en)
    assert "时间线" not in md_en and "已确认接手" not in md_en

    page_zh = (await client.get(f"/incidents/{inc}?lang=zh")).text
    page_en = (await client.get(f"/incidents/{inc}?lang=en")).text
    assert "急诊科：已启用纸质流程（护士长 吴）" in page_zh and "on paper (" not in page_zh
    assert "急诊科: on paper (护士长 吴)" in page_en


@pytest.mark.skipif(importlib.util.find_spec("playwright") is None or not CHROMIUM.exists(),
                    reason="needs playwright and the Debian chromium package")
async def test_the_review_prints_to_pdf(app) -> None:  # noqa: F811
    from playwright.async_api import async_playwright

    daemon, client, clock = app
    await _incident_with_everything(daemon, clock)
    html = (await client.get(f"/incidents/{first(daemon)}/review")).text
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = await browser.new_page(viewport={"width": 794, "height": 1123})
            await page.set_content(html)
            pdf = await page.pdf(format="A4", print_background=True)
            await page.emulate_media(media="print")
            # Page 1 as printed: an A4 sheet at 96 dpi (794 × 1123 CSS px).
            await page.screenshot(path=str(ARTIFACTS / "review-page1.png"),
                                  clip={"x": 0, "y": 0, "width": 794, "height": 1123})
            width = await page.evaluate("document.documentElement.scrollWidth")
        finally:
            await browser.close()
    assert pdf.startswith(b"%PDF-") and len(pdf) > 10_000
    assert pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") >= 1
    (ARTIFACTS / "review.pdf").write_bytes(pdf)
    assert width <= 794, "nothing wider than the printed page"
    assert (ARTIFACTS / "review-page1.png").stat().st_size > 10_000


DEPENDENT = """\
site: {name: H, timezone: Asia/Shanghai, language: en}
defaults: {dependency_settle: 0s}
departments:
  - {id: er, name: Emergency, notify: [it]}
  - {id: opd, name: Outpatient, notify: [it]}
systems:
  - {id: his-db, name: HIS database, departments: [er], plan: p}
  - {id: his, name: Outpatient doctor station, departments: [opd], depends_on: [his-db], plan: p}
checks:
  - {id: db-tcp, system: his-db, type: tcp, host: 127.0.0.1, port: 1}
  - {id: his-web, system: his, type: http, url: "http://127.0.0.1:1/"}
notifiers:
  - {id: it, type: console}
plans:
  - id: p
    steps:
      - {after: 0s, notify: [it], message: outage_it}
"""


async def test_the_review_lists_the_systems_that_went_down_with_the_root(tmp_path: Path) -> None:
    """SPEC 13.6 "the systems ... affected": a root incident's review names the systems whose
    incidents were `caused_by` it, not only its own (their departments joined it already)."""
    from httpx import ASGITransport, AsyncClient

    from monitor.config.loader import load_config_text
    from monitor.probing.state import CheckState
    from monitor.runtime.daemon import Daemon
    from monitor.runtime.webside import DaemonWeb
    from monitor.web.app import build_app
    from tests.conftest import Clock

    clock = Clock(T0)
    cfg = load_config_text(DEPENDENT + f'state: {{url: "sqlite:///{tmp_path}/s.db"}}\n',
                           "d.yaml", {})
    daemon = Daemon(cfg, clock=clock, serve_http=False)
    await daemon.store.open()
    try:
        daemon.leading = True
        engine = daemon.engine
        for check in cfg.checks:
            engine.states[check.id] = CheckState(check.id, check.system, check.type,
                                                 probed=True)
        for check_id in ("db-tcp", "his-web"):
            for _ in range(3):
                advance(engine.states[check_id], Result(State.CRIT, "down"), clock.now, 3, 2)
            engine.system_changed(engine.states[check_id].system)
        await engine.tick()
        await engine.tick()
        root = engine.open["his-db"]
        assert engine.open["his"].caused_by == root.id
        client = AsyncClient(transport=ASGITransport(app=build_app(DaemonWeb(daemon))),
                             base_url="http://test")
        review = (await client.get(f"/api/v1/incidents/{root.id}/review")).json()
        assert [(s["id"], s["caused_by"]) for s in review["systems"]] == [
            ("his-db", None), ("his", root.id)]
        assert {d["id"] for d in review["departments"]} == {"er", "opd"}
        page = await client.get(f"/incidents/{root.id}/review")
        assert "HIS database, Outpatient doctor station" in page.text
        await client.aclose()
    finally:
        await daemon.store.close()
