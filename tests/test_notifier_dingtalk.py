"""DingTalk robot against a local stand-in that verifies signatures like oapi.dingtalk.com.

The stand-in recomputes `sign` from its own copy of the secret and the `timestamp` query
value, refuses timestamps more than an hour away (errcode 310000, as DingTalk does),
checks `access_token`, enforces a per-minute limit (130101) and records whether every
mentioned mobile also appears as `@mobile` in the text (DingTalk's highlight rule).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from pydantic import ValidationError

from monitor.delivery.ratelimit import Pacer
from notifiers import NOTIFIER_TYPES
from notifiers.base import DeliveryError, NotifyContext, OutgoingMessage
from notifiers.dingtalk import DingTalkNotifier, build_payload, sign, signed_url
from tests.conftest import serve_route

TOKEN = "b2e4c6a8d0f1e3a5c7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3"
SECRET = "SEC2f1e5c9b8a7d6e5f4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a2918070"


def message(text: str = "门诊医生站自 08:05 起无法使用，请启用纸质处方（表 B-3）。",
            **changes: Any) -> OutgoingMessage:
    fields: dict[str, Any] = {
        "kind": "outage_it", "idempotency_key": "inc-42:step-0:dingtalk-it:0",
        "recipient": "dingtalk-it", "title": "【故障】门诊医生站 数据库连接失败", "text": text,
        "incident": {"id": "inc-42", "system": "his-outpatient", "severity": "critical"},
        "status_url": "http://hismon.hospital.internal:9464/",
    }
    fields.update(changes)
    return OutgoingMessage(**fields)


class FakeDingTalk:
    def __init__(self, secret: str | None = SECRET, per_minute: int = 20) -> None:
        self.secret = secret
        self.per_minute = per_minute
        self.sent: deque[float] = deque()
        self.received: list[dict[str, Any]] = []
        self.highlighted: list[bool] = []

    def _signature_ok(self, query: Any) -> bool:
        timestamp, given = query.get("timestamp", ""), query.get("sign", "")
        if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > 3_600_000:
            return False
        to_sign = f"{timestamp}\n{self.secret}".encode()
        expected = base64.b64encode(
            hmac.new(self.secret.encode(), to_sign, hashlib.sha256).digest()).decode()
        return hmac.compare_digest(expected, given)

    async def handle(self, request: web.Request) -> web.Response:
        if request.query.get("access_token") != TOKEN:
            return web.json_response({"errcode": 300001, "errmsg": "token is not exist"})
        if self.secret is not None and not self._signature_ok(request.query):
            return web.json_response({
                "errcode": 310000,
                "errmsg": "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"})
        now = time.monotonic()
        while self.sent and now - self.sent[0] > 60:
            self.sent.popleft()
        if len(self.sent) >= self.per_minute:
            return web.json_response({"errcode": 130101,
                                      "errmsg": "send too fast, exceed 20 times per minute"})
        body = await request.json()
        msgtype = body.get("msgtype")
        content = (body.get("text", {}).get("content") if msgtype == "text"
                   else body.get("markdown", {}).get("text"))
        if not content:
            return web.json_response({"errcode": 40035, "errmsg": "缺少参数 json"})
        if len(content.encode()) > 20_000:
            return web.json_response({"errcode": 460101, "errmsg": "message too long"})
        self.sent.append(now)
        self.received.append(body)
        mobiles = body.get("at", {}).get("atMobiles", [])
        self.highlighted.append(all(f"@{m}" in content for m in mobiles))
        return web.json_response({"errcode": 0, "errmsg": "ok"})


@asynccontextmanager
async def serve(robot: FakeDingTalk) -> AsyncIterator[str]:
    async with serve_route("/robot/send", robot.handle, "POST") as url:
        yield url


def dingtalk(base: str, token: str = TOKEN, **keys: Any) -> DingTalkNotifier:
    return DingTalkNotifier.model_validate(
        {"id": "dingtalk-it", "type": "dingtalk", "webhook_url": f"{base}?access_token={token}",
         **keys})


def test_dingtalk_is_registered() -> None:
    """Configs can name `type: dingtalk`."""
    assert NOTIFIER_TYPES["dingtalk"] is DingTalkNotifier


def test_the_sign_survives_url_quoting() -> None:
    """A base64 sign with `+` or `/` must be URL-quoted, or DingTalk reads a space instead."""
    timestamp = next(ts for ts in range(1_700_000_000_000, 1_700_000_000_200)
                     if "+" in base64.b64encode(hmac.new(
                         SECRET.encode(), f"{ts}\n{SECRET}".encode(), hashlib.sha256).digest()
                     ).decode())
    url = signed_url(f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}", SECRET,
                     timestamp)
    query = parse_qs(urlsplit(url).query)
    raw = base64.b64encode(hmac.new(SECRET.encode(), f"{timestamp}\n{SECRET}".encode(),
                                    hashlib.sha256).digest()).decode()
    assert query["sign"] == [raw]
    assert query["timestamp"] == [str(timestamp)]
    assert query["access_token"] == [TOKEN]
    assert "+" not in sign(SECRET, timestamp)


def test_without_a_secret_the_url_is_unchanged() -> None:
    """Keyword or IP-whitelist robots need no signature."""
    url = "https://oapi.dingtalk.com/robot/send?access_token=x"
    assert signed_url(url, None, 1) == url


def test_mentions_are_listed_and_written_into_the_text() -> None:
    """DingTalk highlights only mobiles that also appear as @mobile in the content."""
    payload = build_payload(message(), fmt="text", at_mobiles=["13800001111", "@all"],
                            limit=20_000)
    assert payload["at"] == {"atMobiles": ["13800001111"], "isAtAll": True}
    assert payload["text"]["content"].endswith("\n\n@13800001111")


async def test_it_delivers_a_signed_message_with_mentions(ctx: NotifyContext) -> None:
    """The stand-in accepts the signature; the mentioned mobile is highlighted."""
    robot = FakeDingTalk()
    async with serve(robot) as base:
        answer = await dingtalk(base, secret=SECRET, at_mobiles=["13800001111"]).send(
            message(), ctx)
    assert answer == "errcode 0"
    (body,) = robot.received
    assert body["msgtype"] == "text"
    assert body["text"]["content"].startswith("【故障】门诊医生站 数据库连接失败\n\n")
    assert robot.highlighted == [True]


async def test_markdown_keeps_the_mentions_after_trimming(ctx: NotifyContext) -> None:
    """A 40 KB text is cut to 20,000 bytes but the @mobile at its end survives."""
    robot = FakeDingTalk()
    async with serve(robot) as base:
        notifier = dingtalk(base, secret=SECRET, format="markdown", at_mobiles=["13900002222"])
        await notifier.send(message("应急处置进展。" * 2000), ctx)
    (body,) = robot.received
    text = body["markdown"]["text"]
    assert body["markdown"]["title"] == "【故障】门诊医生站 数据库连接失败"
    assert 19_000 < len(text.encode()) <= 20_000
    assert text.endswith("@13900002222")
    assert "hismon.hospital.internal" in text
    assert robot.highlighted == [True]


async def test_a_wrong_secret_is_permanent_and_not_told(ctx: NotifyContext) -> None:
    """310000 (sign not match) needs an operator, not a retry; neither secret nor token leak."""
    robot = FakeDingTalk()
    wrong = "SECffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    async with serve(robot) as base:
        with pytest.raises(DeliveryError) as failure:
            await dingtalk(base, secret=wrong).send(message(), ctx)
    assert failure.value.permanent is True
    assert "errcode 310000" in str(failure.value)
    assert wrong not in str(failure.value) and TOKEN not in str(failure.value)
    assert robot.received == []


async def test_a_stale_timestamp_is_refused(ctx: NotifyContext) -> None:
    """A request signed two hours ago fails like DingTalk's (why we sign at send time)."""
    robot = FakeDingTalk()
    async with serve(robot) as base:
        notifier = dingtalk(base, secret=SECRET)
        stale = notifier.build_request(message(), now=time.time() - 7200)
        with pytest.raises(DeliveryError) as failure:
            await notifier.deliver(stale, ctx)
        fresh = notifier.build_request(message())
        assert await notifier.deliver(fresh, ctx) == "errcode 0"
    assert failure.value.permanent is True
    assert "310000" in str(failure.value)


async def test_an_unknown_token_is_permanent(ctx: NotifyContext) -> None:
    """300001: the robot is gone; hand over to the fallback at once."""
    robot = FakeDingTalk(secret=None)
    async with serve(robot) as base:
        with pytest.raises(DeliveryError) as failure:
            await dingtalk(base, token="deadbeef" * 8).send(message(), ctx)
    assert failure.value.permanent is True
    assert "deadbeef" not in str(failure.value)


async def test_too_fast_is_retryable(ctx: NotifyContext) -> None:
    """130101: DingTalk's 20-a-minute limit; the outbox retries with backoff."""
    robot = FakeDingTalk(per_minute=2)
    async with serve(robot) as base:
        notifier = dingtalk(base, secret=SECRET)
        await notifier.send(message(), ctx)
        await notifier.send(message(), ctx)
        with pytest.raises(DeliveryError) as failure:
            await notifier.send(message(), ctx)
    assert failure.value.permanent is False
    assert "130101" in str(failure.value)


def test_the_robots_own_rate_limit_is_the_default() -> None:
    """DingTalk mutes a robot for 10 minutes past 20 a minute: pace it by default."""
    pacer = Pacer.for_notifier(dingtalk("https://oapi.dingtalk.com/robot/send"))
    assert pacer is not None and [(r.count, r.per) for r in pacer.limiters] == [(20, 60.0)]
    with pytest.raises(ValidationError, match="above dingtalk's own limit of 20/min"):
        dingtalk("https://oapi.dingtalk.com/robot/send", rate_limit="21/min")


def test_secret_and_token_are_scrubbed_secrets() -> None:
    """What the outbox scrubs from logs includes the bare token and the signing secret."""
    secrets = dingtalk("https://oapi.dingtalk.com/robot/send", secret=SECRET).secrets()
    assert TOKEN in secrets and SECRET in secrets
