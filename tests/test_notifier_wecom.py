"""WeCom group robot against a local stand-in that behaves like qyapi.weixin.qq.com.

The stand-in checks the `key`, the payload shape and the byte limits, and answers as WeCom
does: HTTP 200 with `errcode`/`errmsg`, 93000 for an unknown key, 45009 past its rate
limit, -1 when busy. The tests assert the verdicts (retry or not) and that the key never
appears in an error.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import pytest
from aiohttp import web
from pydantic import ValidationError

from monitor.delivery.ratelimit import Pacer
from notifiers import NOTIFIER_TYPES
from notifiers.base import DeliveryError, NotifyContext, OutgoingMessage
from notifiers.wecom import WeComNotifier, build_payload
from tests.conftest import serve_route

KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
STATUS_URL = "http://hismon.hospital.internal:9464/"


def message(text: str = "门诊医生站自 08:05 起无法使用，请启用纸质处方（表 B-3）。",
            **changes: Any) -> OutgoingMessage:
    fields: dict[str, Any] = {
        "kind": "department_outage", "idempotency_key": "inc-42:step-1:wecom-emergency:0",
        "recipient": "wecom-emergency", "title": "【系统故障】门诊医生站暂停使用", "text": text,
        "incident": {"id": "inc-42", "system": "his-outpatient", "severity": "critical"},
        "status_url": STATUS_URL,
    }
    fields.update(changes)
    return OutgoingMessage(**fields)


class FakeWeCom:
    """Enough of the WeCom robot API to exercise every path of the notifier."""

    LIMITS: ClassVar[dict[str, int]] = {"text": 2048, "markdown": 4096}

    def __init__(self, per_minute: int = 20) -> None:
        self.per_minute = per_minute
        self.sent: deque[float] = deque()
        self.received: list[dict[str, Any]] = []
        self.busy = False

    async def handle(self, request: web.Request) -> web.Response:
        if request.query.get("key") != KEY:
            return web.json_response({
                "errcode": 93000,
                "errmsg": "invalid webhook url, hint: [1700000000_1_abc], from ip: 127.0.0.1, "
                          "more info at https://open.work.weixin.qq.com/devtool/query?e=93000"})
        if self.busy:
            return web.json_response({"errcode": -1, "errmsg": "system busy"})
        now = time.monotonic()
        while self.sent and now - self.sent[0] > 60:
            self.sent.popleft()
        if len(self.sent) >= self.per_minute:
            return web.json_response({"errcode": 45009, "errmsg": "api freq out of limit"})
        body = await request.json()
        msgtype = body.get("msgtype")
        if msgtype not in self.LIMITS or not isinstance(body.get(msgtype), dict):
            return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
        content = body[msgtype].get("content", "")
        if not content:
            return web.json_response({"errcode": 44004, "errmsg": "empty content"})
        if len(content.encode("utf-8")) > self.LIMITS[msgtype]:
            return web.json_response({"errcode": 40058, "errmsg": "content exceed max length"})
        self.sent.append(now)
        self.received.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})


@asynccontextmanager
async def serve(robot: FakeWeCom) -> AsyncIterator[str]:
    async with serve_route("/cgi-bin/webhook/send", robot.handle, "POST") as url:
        yield url


def wecom(base: str, key: str = KEY, **keys: Any) -> WeComNotifier:
    return WeComNotifier.model_validate(
        {"id": "wecom-it", "type": "wecom", "webhook_url": f"{base}?key={key}", **keys})


def test_wecom_is_registered() -> None:
    """Configs can name `type: wecom`."""
    assert NOTIFIER_TYPES["wecom"] is WeComNotifier


def test_text_payload_has_the_title_first_and_the_mentions() -> None:
    """Pure builder: one text block, title then text; mobiles in mentioned_mobile_list."""
    payload = build_payload(message(), fmt="text", mentioned_mobiles=["13800001111", "@all"],
                            limit=2048)
    assert payload["msgtype"] == "text"
    assert payload["text"]["content"].startswith("【系统故障】门诊医生站暂停使用\n\n门诊医生站自")
    assert payload["text"]["mentioned_mobile_list"] == ["13800001111", "@all"]


async def test_it_delivers_a_text_message_with_mentions(ctx: NotifyContext) -> None:
    """errcode 0 is success; the robot got the Chinese text and whom to @."""
    robot = FakeWeCom()
    async with serve(robot) as base:
        answer = await wecom(base, mentioned_mobiles=["13800001111"]).send(message(), ctx)
    assert answer == "errcode 0"
    (body,) = robot.received
    assert "请启用纸质处方" in body["text"]["content"]
    assert body["text"]["mentioned_mobile_list"] == ["13800001111"]


async def test_markdown_format_colours_the_title(ctx: NotifyContext) -> None:
    """format: markdown sends msgtype markdown; outages in WeCom's warning colour."""
    robot = FakeWeCom()
    async with serve(robot) as base:
        await wecom(base, format="markdown").send(message(), ctx)
        await wecom(base, format="markdown").send(message(kind="recovery"), ctx)
    outage, recovery = (b["markdown"]["content"] for b in robot.received)
    assert outage.startswith('<font color="warning">**【系统故障】门诊医生站暂停使用**</font>')
    assert recovery.startswith('<font color="info">')


@pytest.mark.parametrize(("fmt", "limit"), [("text", 2048), ("markdown", 4096)])
async def test_a_long_message_is_trimmed_to_the_byte_limit_with_the_status_link(
    ctx: NotifyContext, fmt: str, limit: int
) -> None:
    """A 9 KB Chinese text still arrives: cut to WeCom's limit, ending with the status page."""
    robot = FakeWeCom()
    async with serve(robot) as base:
        answer = await wecom(base, format=fmt).send(message("停机应急流程。" * 500), ctx)
    assert answer == "errcode 0"
    content = robot.received[0][fmt]["content"]
    assert len(content.encode("utf-8")) <= limit
    assert len(content.encode("utf-8")) > limit - 64  # trimmed, not truncated to nothing
    assert content.endswith(f"…\n{STATUS_URL}")


async def test_an_invalid_key_is_permanent_and_the_key_is_not_told(
    ctx: NotifyContext,
) -> None:
    """93000: the robot was removed or the key mistyped; retrying cannot help."""
    wrong = "00000000-dead-beef-0000-000000000000"
    robot = FakeWeCom()
    async with serve(robot) as base:
        notifier = wecom(base, key=wrong)
        with pytest.raises(DeliveryError) as failure:
            await notifier.send(message(), ctx)
    assert failure.value.permanent is True
    assert "errcode 93000" in str(failure.value)
    assert wrong not in str(failure.value)
    assert wrong in notifier.secrets()  # the outbox scrubs logs with these too


async def test_past_the_rate_limit_it_is_retryable(ctx: NotifyContext) -> None:
    """45009 (more than the robot's per-minute quota) retries later."""
    robot = FakeWeCom(per_minute=3)
    async with serve(robot) as base:
        notifier = wecom(base)
        for _ in range(3):
            assert await notifier.send(message(), ctx) == "errcode 0"
        with pytest.raises(DeliveryError) as failure:
            await notifier.send(message(), ctx)
    assert failure.value.permanent is False
    assert "45009" in str(failure.value)
    assert len(robot.received) == 3


async def test_system_busy_is_retryable(ctx: NotifyContext) -> None:
    """errcode -1 is WeCom's transient failure."""
    robot = FakeWeCom()
    robot.busy = True
    async with serve(robot) as base:
        with pytest.raises(DeliveryError) as failure:
            await wecom(base).send(message(), ctx)
    assert failure.value.permanent is False
    assert "errcode -1: system busy" in str(failure.value)


async def test_a_non_robot_answer_is_permanent(ctx: NotifyContext) -> None:
    """HTTP 200 without errcode (a proxy's login page): the URL is wrong, use the fallback."""
    async def portal(request: web.Request) -> web.Response:
        return web.Response(text="<html>Please log in</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/cgi-bin/webhook/send", portal)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        base = f"http://127.0.0.1:{runner.addresses[0][1]}/cgi-bin/webhook/send"
        with pytest.raises(DeliveryError) as failure:
            await wecom(base).send(message(), ctx)
    finally:
        await runner.cleanup()
    assert failure.value.permanent is True
    assert KEY not in str(failure.value)


async def test_an_unreachable_robot_is_retryable_without_the_key(ctx: NotifyContext) -> None:
    """Connection refused: the network may come back; the error names the host only."""
    robot = FakeWeCom()
    async with serve(robot) as base:
        pass
    with pytest.raises(DeliveryError) as failure:
        await wecom(base).send(message(), ctx)
    assert failure.value.permanent is False
    assert KEY not in str(failure.value)
    assert "127.0.0.1" in str(failure.value)


def test_the_robots_own_rate_limit_always_applies() -> None:
    """Without a rate_limit the outbox still paces a WeCom robot at 20 a minute; a
    rate_limit may lower that, never raise it (SPEC 6)."""
    pacer = Pacer.for_notifier(wecom("https://q/"))
    assert pacer is not None and [(r.count, r.per) for r in pacer.limiters] == [(20, 60.0)]
    lowered = Pacer.for_notifier(wecom("https://q/", rate_limit="10/min"))
    assert lowered is not None
    assert [(r.count, r.per) for r in lowered.limiters] == [(20, 60.0), (10, 60.0)]
    with pytest.raises(ValidationError, match="invalid rate_limit"):
        wecom("https://q/", rate_limit="fast")
    with pytest.raises(ValidationError, match="above wecom's own limit of 20/min"):
        wecom("https://q/", rate_limit="1/s")


def test_mentions_need_the_text_format() -> None:
    """WeCom markdown cannot @ by mobile: refuse the config rather than drop the mentions."""
    with pytest.raises(ValidationError, match="mentioned_mobiles only work with format: text"):
        wecom("https://qyapi.weixin.qq.com/cgi-bin/webhook/send", format="markdown",
              mentioned_mobiles=["13800001111"])


def test_max_length_above_the_api_limit_is_refused() -> None:
    """A max_length WeCom would reject is a config error, not a runtime surprise."""
    with pytest.raises(ValidationError, match="2048"):
        wecom("https://qyapi.weixin.qq.com/cgi-bin/webhook/send", max_length=5000)
    assert wecom("https://q/", format="markdown", max_length=4000).text_limit == 4000
