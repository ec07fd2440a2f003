"""SPEC 13.2 "works on a phone browser without JavaScript": headless Chromium with a phone
viewport and JavaScript switched off opens a real daemon's acknowledgement link, sees the
one button, taps it, and the incident is acknowledged as the person. A page-1 PNG of the
link page is saved as a test artifact (tests/artifacts/ack-link-phone.png)."""

from __future__ import annotations

import asyncio
import importlib.util
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.links.tokens import Claim, sign
from tests.conftest import REPO, HttpTarget, free_port

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "tests" / "artifacts"


def config(target: HttpTarget, port: int) -> str:
    return f"""
site: {{name: Test Hospital, timezone: Asia/Shanghai, language: zh}}
server: {{listen: "127.0.0.1:{port}", api_tokens: [t], public_url: "http://127.0.0.1:{port}"}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 500ms, retry_interval: 250ms, confirm: 2, recover: 2}}
people:
  - {{id: li, name: 李娜, mobile: "+8613800000002", notify: [it]}}
systems:
  - {{id: his, name: {{zh: 门诊医生站, en: Outpatient doctor station}}, plan: p}}
checks:
  - {{id: his-web, system: his, type: http, url: "{target.url}", expect: {{status: [200]}}}}
notifiers:
  - {{id: it, type: console}}
plans:
  - id: p
    steps:
      - {{after: 0s, notify: ["person:li"], message: outage_it}}
"""


@pytest.mark.skipif(importlib.util.find_spec("playwright") is None or not CHROMIUM.exists(),
                    reason="needs playwright and the Debian chromium package")
async def test_a_phone_without_javascript_acknowledges_from_the_link(
        http_target: HttpTarget, daemon_factory: Any) -> None:
    from playwright.async_api import async_playwright

    port = free_port()
    daemon = await daemon_factory(config(http_target, port), port)
    http_target.status = 503
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False) as api:
        deadline = time.monotonic() + 20
        while not (await api.get("/api/v1/incidents?status=open")).json()["incidents"]:
            assert time.monotonic() < deadline, "no incident opened"
            await asyncio.sleep(0.2)
        incident = (await api.get("/api/v1/incidents?status=open")).json()["incidents"][0]
        # The token the message carries, made with the daemon's own key from its store.
        with sqlite3.connect(daemon.config_path.parent / "state.db") as db:
            key = bytes.fromhex(db.execute(
                "SELECT value FROM meta WHERE key = 'link_key'").fetchone()[0])
        link = f"{daemon.url}/a/" + sign(key, Claim("ack", incident["id"], "li",
                                                     int(time.time()) + 3600))
        ARTIFACTS.mkdir(exist_ok=True)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            try:
                phone = await browser.new_context(
                    java_script_enabled=False, viewport={"width": 390, "height": 844},
                    is_mobile=True, has_touch=True, device_scale_factor=2)
                page = await phone.new_page()
                await page.goto(link)
                button = page.get_by_role("button", name="以 李娜 身份确认接手")
                assert await button.is_visible()
                assert "门诊医生站" in await page.content()
                box = await button.bounding_box()
                assert box is not None and box["width"] <= 390 and box["height"] >= 40, \
                    "one button a thumb can hit, inside the screen"
                width = await page.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, "no sideways scrolling on a phone"
                await page.screenshot(path=str(ARTIFACTS / "ack-link-phone.png"))
                assert (await api.get(f"/api/v1/incidents/{incident['id']}")).json()[
                    "acknowledged_by"] is None, "opening the link changed nothing"
                async with page.expect_navigation():  # a plain form POST, no script
                    await button.tap()
                assert "已确认接手：李娜" in await page.content()
            finally:
                await browser.close()
        detail = (await api.get(f"/api/v1/incidents/{incident['id']}")).json()
        assert detail["acknowledged_by"] == "李娜"
        assert any(e["kind"] == "acknowledged" and e["data"]["via"] == "link"
                   for e in detail["timeline"])
    assert daemon.terminate() == 0
