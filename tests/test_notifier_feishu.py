"""Feishu custom bot against a local stand-in that verifies signatures like open.feishu.cn.

The stand-in knows one hook id, recomputes `sign` from `timestamp` (seconds) and its copy
of the secret (key = "{timestamp}\\n{secret}", empty message), refuses a timestamp more
than an hour away with 19021, limits the body to 20 KB, answers 11232 past its per-minute
limit, 9499 "too many request" past its per-second limit and 9499 "Bad Request" for a
malformed payload; `legacy=True` answers in the older StatusCode shape.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from monitor.delivery.ratelimit import Pacer
from notifiers import NOTIFIER_TYPES
from notifiers._http import json_request
from notifiers.base import DeliveryError, NotifyContext, OutgoingMessage
from notifiers.feishu import BODY_LIMIT, FeishuNotifier, build_request, sign
from tests.conftest import serve_route

HOOK = "3f0c5a1e-9b7d-4c2e-8a6f-1d2b3c4d5e6f"
SECRET = "qL8dK2pX9mZ4vB7nR1sT6w"
STATUS_URL = "http://hismon.hospital.internal:9464/"


def message(text: str = "检验信息系统（LIS）接口响应超过 3 秒，已持续 10 分钟。",
            **changes: Any) -> OutgoingMessage:
    fields: dict[str, Any] = {
        "kind": "early_warning", "idempotency_key": "inc-7:early:feishu-lab:0",
        "recipient": "feishu-lab", "title": "【预警】检验信息系统 响应变慢", "text": text,
        "incident": {"id": "inc-7", "system": "lis", "severity": "warning"},
        "status_url": STATUS_URL,
    }
    fields.update(changes)
    return OutgoingMessage(**fields)


class FakeFeishu:
    def __init__(self, secret: str | None = SECRET, per_minute: int = 100, per_second: int = 5,
                 legacy: bool = False, burst_window: float = 1.0) -> None:
        self.secret = secret
        self.per_minute, self.per_second = per_minute, per_second
        self.burst_window = burst_window  # tests widen "a second" so a slow machine cannot pass
        self.legacy = legacy
        self.sent: deque[float] = deque()
        self.received: list[dict[str, Any]] = []

    def answer(self, code: int, msg: str) -> web.Response:
        if self.legacy:
            return web.json_response({"Extra": None, "StatusCode": code, "StatusMessage": msg})
        return web.json_response({"code": code, "data": {}, "msg": msg})

    async def handle(self, request: web.Request) -> web.Response:
        if request.match_info["hook"] != HOOK:
            return self.answer(19001, "param invalid: incoming webhook access token invalid")
        raw = await request.read()
        if len(raw) > 20 * 1024:
            return self.answer(9499, "Bad Request")
        body = json.loads(raw)
        if self.secret is not None:
            timestamp = str(body.get("timestamp", ""))
            key = f"{timestamp}\n{self.secret}".encode()
            expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
            fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= 3600
            if not fresh or not hmac.compare_digest(expected, str(body.get("sign", ""))):
                return self.answer(19021, "sign match fail or timestamp is not within one "
                                          "hour from current time")
        now = time.monotonic()
        while self.sent and now - self.sent[0] > 60:
            self.sent.popleft()
        if len(self.sent) >= self.per_minute:
            return self.answer(11232, "frequency limited psm[lark.oapi.app_platform_runtime]")
        if sum(1 for t in self.sent if now - t < self.burst_window) >= self.per_second:
            return self.answer(9499, "too many request")
        if body.get("msg_type") not in ("text", "post", "interactive"):
            return self.answer(9499, "Bad Request")
        self.sent.append(now)
        self.received.append(body)
        return self.answer(0, "success")


@asynccontextmanager
async def serve(bot: FakeFeishu) -> AsyncIterator[str]:
    async with serve_route("/open-apis/bot/v2/hook/{hook}", bot.handle) as url:
        yield url.removesuffix("{hook}")


def feishu(base: str, hook: str = HOOK, **keys: Any) -> FeishuNotifier:
    return FeishuNotifier.model_validate(
        {"id": "feishu-lab", "type": "feishu", "webhook_url": f"{base}{hook}", **keys})


def test_feishu_is_registered() -> None:
    """Configs can name `type: feishu`."""
    assert NOTIFIER_TYPES["feishu"] is FeishuNotifier


def test_the_bots_own_rate_limit_is_the_default() -> None:
    """Feishu allows 100 messages a minute and 5 a second per bot; both always apply."""
    url = "https://open.feishu.cn/open-apis/bot/v2/hook/"
    pacer = Pacer.for_notifier(feishu(url))
    assert pacer is not None
    assert [(r.count, r.per) for r in pacer.limiters] == [(100, 60.0), (5, 1.0)]
    for now in (0.0, 0.1, 0.2, 0.3, 0.4):
        assert pacer.wait_time(now) == 0.0
        pacer.record(now)
    assert pacer.wait_time(0.5) == pytest.approx(0.5), "the sixth in one second waits"
    # A per-minute rate_limit under 100/min still may not burst past 5 a second.
    pacer = Pacer.for_notifier(feishu(url, rate_limit="50/min"))
    assert pacer is not None
    for i in range(5):
        pacer.record(i / 10)
    assert pacer.wait_time(0.5) > 0
    with pytest.raises(ValidationError, match="above feishu's own limit of 5/s"):
        feishu(url, rate_limit="6/s")
    with pytest.raises(ValidationError, match="above feishu's own limit of 100/min"):
        feishu(url, rate_limit="101/min")


def test_sign_matches_feishus_published_algorithm() -> None:
    """Key is "timestamp\\nsecret", message empty: the reverse of DingTalk's order."""
    key = f"1599360473\n{SECRET}".encode()
    assert sign(SECRET, 1599360473) == base64.b64encode(
        hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert sign(SECRET, 1599360473) != sign(SECRET, 1599360474)


def test_the_body_is_trimmed_until_it_fits_20_kb() -> None:
    """Quotes and newlines grow in JSON; the builder measures the encoded body, not the text."""
    text = '"引号"\n' * 6000  # ~60 KB of text that JSON escaping inflates further
    request = build_request(message(text), webhook_url="https://open.feishu.cn/x",
                            secret=SECRET, fmt="text", limit=18_000, timestamp=1)
    assert len(request.content) <= BODY_LIMIT
    assert request.json()["content"]["text"].endswith(STATUS_URL)


async def test_it_delivers_a_signed_text_message(ctx: NotifyContext) -> None:
    """The stand-in verifies the signature and accepts; code 0 is success."""
    bot = FakeFeishu()
    async with serve(bot) as base:
        answer = await feishu(base, secret=SECRET).send(message(), ctx)
    assert answer == "code 0"
    (body,) = bot.received
    assert body["msg_type"] == "text"
    assert body["content"]["text"].startswith("【预警】检验信息系统 响应变慢\n\n检验信息系统")
    assert body["timestamp"].isdigit() and body["sign"]


async def test_a_card_has_a_coloured_header_and_a_status_button(ctx: NotifyContext) -> None:
    """format: card: orange for a warning, red for an outage, green for the all-clear."""
    bot = FakeFeishu()
    async with serve(bot) as base:
        notifier = feishu(base, secret=SECRET, format="card")
        await notifier.send(message(), ctx)
        await notifier.send(message(incident={"id": "inc-7", "severity": "critical"}), ctx)
        await notifier.send(message(kind="recovery"), ctx)
    colours = [b["card"]["header"]["template"] for b in bot.received]
    assert colours == ["orange", "red", "green"]
    card = bot.received[0]["card"]
    assert card["header"]["title"]["content"] == "【预警】检验信息系统 响应变慢"
    assert card["elements"][1]["actions"][0]["url"] == STATUS_URL
    assert bot.received[0]["msg_type"] == "interactive"


async def test_an_unsigned_bot_gets_no_sign_fields(ctx: NotifyContext) -> None:
    """Without a secret the body has neither timestamp nor sign."""
    bot = FakeFeishu(secret=None)
    async with serve(bot) as base:
        await feishu(base).send(message(), ctx)
    assert "sign" not in bot.received[0] and "timestamp" not in bot.received[0]


async def test_the_legacy_answer_shape_is_understood(ctx: NotifyContext) -> None:
    """Older bots answer StatusCode/StatusMessage; 0 there is success too."""
    bot = FakeFeishu(legacy=True)
    async with serve(bot) as base:
        assert await feishu(base, secret=SECRET).send(message(), ctx) == "code 0"
        with pytest.raises(DeliveryError) as failure:
            await feishu(base, secret="wrong-secret-123").send(message(), ctx)
    assert failure.value.permanent is True
    assert "19021" in str(failure.value)


async def test_a_wrong_secret_is_permanent_and_nothing_secret_is_told(
    ctx: NotifyContext,
) -> None:
    """19021 needs the operator; neither the secret nor the hook id appear in the error."""
    bot = FakeFeishu()
    async with serve(bot) as base:
        with pytest.raises(DeliveryError) as failure:
            await feishu(base, secret="wrong-secret-123").send(message(), ctx)
    assert failure.value.permanent is True
    assert "errcode 19021" in str(failure.value)
    assert "wrong-secret-123" not in str(failure.value) and HOOK not in str(failure.value)


async def test_a_stale_timestamp_is_refused(ctx: NotifyContext) -> None:
    """Signed two hours ago: Feishu refuses it, which is why signing happens at send time."""
    bot = FakeFeishu()
    async with serve(bot) as base:
        notifier = feishu(base, secret=SECRET)
        with pytest.raises(DeliveryError) as failure:
            await notifier.deliver(notifier.build_request(message(), now=time.time() - 7200),
                                   ctx)
    assert failure.value.permanent is True
    assert "19021" in str(failure.value)


async def test_an_unknown_hook_is_permanent(ctx: NotifyContext) -> None:
    """19001: the bot was removed from the group."""
    bot = FakeFeishu()
    async with serve(bot) as base:
        with pytest.raises(DeliveryError) as failure:
            await feishu(base, hook="00000000-0000-0000-0000-000000000000",
                         secret=SECRET).send(message(), ctx)
    assert failure.value.permanent is True
    assert "00000000-0000-0000-0000-000000000000" not in str(failure.value)


async def test_rate_limits_are_retryable(ctx: NotifyContext) -> None:
    """11232 (per minute) and 9499 "too many request" (per second) both retry."""
    bot = FakeFeishu(per_minute=3, per_second=100)
    async with serve(bot) as base:
        notifier = feishu(base, secret=SECRET)
        for _ in range(3):
            await notifier.send(message(), ctx)
        with pytest.raises(DeliveryError) as per_minute:
            await notifier.send(message(), ctx)
    bot = FakeFeishu(per_second=2, burst_window=30)
    async with serve(bot) as base:
        notifier = feishu(base, secret=SECRET)
        results = await asyncio.gather(*(notifier.send(message(), ctx) for _ in range(4)),
                                       return_exceptions=True)
    burst = [r for r in results if isinstance(r, DeliveryError)]
    assert per_minute.value.permanent is False and "11232" in str(per_minute.value)
    assert len(burst) == 2
    assert all(not e.permanent and "9499: too many request" in str(e) for e in burst)


async def test_bad_request_9499_is_permanent(ctx: NotifyContext) -> None:
    """The same 9499 meaning a malformed payload will not improve with retries."""
    bot = FakeFeishu(secret=None)
    async with serve(bot) as base:
        notifier = feishu(base)
        broken = json_request(f"{base}{HOOK}", {"msg_type": "telegram", "content": {}})
        with pytest.raises(DeliveryError) as failure:
            await notifier.deliver(broken, ctx)
    assert failure.value.permanent is True
    assert "9499: Bad Request" in str(failure.value)


async def test_a_long_message_still_arrives(ctx: NotifyContext) -> None:
    """30 KB of text is trimmed below the body limit the stand-in enforces."""
    bot = FakeFeishu()
    async with serve(bot) as base:
        assert await feishu(base, secret=SECRET).send(message("进展：" * 10_000), ctx) == "code 0"
    assert bot.received[0]["content"]["text"].endswith(f"…\n{STATUS_URL}")
