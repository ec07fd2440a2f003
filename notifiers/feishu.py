"""Feishu / Lark (飞书) custom bot: a text message or an interactive card with a coloured header.

Signing ("签名校验"): timestamp in *seconds*; the HMAC-SHA256 *key* is
f"{timestamp}\\n{secret}" and the message is empty (the reverse of DingTalk); the base64
result goes into the body as `sign` next to `timestamp`. Feishu refuses a timestamp more
than an hour off (code 19021, the same code as a wrong secret), so it is made at send time.

Answers: `{"code": 0, "msg": "success"}` (older bots: `StatusCode`/`StatusMessage`).
11232 and 9499 "too many request" are rate limits (100 a minute, 5 a second per bot) and
retry; 19021 (signature), 19022 (IP not allowed), 19024 (keyword missing) are permanent.
The request body may not exceed 20 KB, so the text is trimmed until the body fits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any, Literal

from pydantic import Field

from notifiers._http import (
    HttpRequest,
    fit_text,
    json_request,
    robot_answer,
    send_request,
)
from notifiers.base import NotifierBase, NotifyContext, OutgoingMessage

RETRYABLE = frozenset({11232})
"""Plus any answer whose text says "too many request" (code 9499): see robot_answer."""
BODY_LIMIT = 20_000
"""Feishu refuses request bodies over 20 KB; stay under it with margin for headers."""
TEXT_LIMIT = 18_000


def sign(secret: str, timestamp: int) -> str:
    """base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b"")), as Feishu verifies it."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def header_colour(message: OutgoingMessage) -> str:
    """Card header: green for all-clear, red for an outage, orange for an early warning."""
    if message.kind in ("recovery", "maintenance_over"):
        return "green"
    severity = (message.incident or {}).get("severity")
    return {"critical": "red", "warning": "orange"}.get(str(severity), "blue")


def build_payload(message: OutgoingMessage, *, fmt: str, limit: int) -> dict[str, Any]:
    if fmt == "card":
        elements: list[dict[str, Any]] = [
            {"tag": "div", "text": {"tag": "lark_md", "content": fit_text(message, limit=limit)}},
        ]
        if message.status_url:
            elements.append({"tag": "action", "actions": [{
                "tag": "button", "type": "primary", "url": message.status_url,
                "text": {"tag": "plain_text", "content": "状态页 / Status page"},
            }]})
        return {"msg_type": "interactive", "card": {
            "config": {"wide_screen_mode": True},
            "header": {"template": header_colour(message),
                       "title": {"tag": "plain_text", "content": message.title or message.kind}},
            "elements": elements,
        }}
    head = f"{message.title}\n\n" if message.title else ""
    return {"msg_type": "text", "content": {"text": fit_text(message, limit=limit, head=head)}}


def build_request(
    message: OutgoingMessage,
    *,
    webhook_url: str,
    secret: str | None,
    fmt: str,
    limit: int,
    timestamp: int,
) -> HttpRequest:
    """Pure: the signed body for `timestamp` (seconds), trimmed until it fits BODY_LIMIT."""
    for _ in range(4):  # each pass removes at least the measured overflow
        payload = build_payload(message, fmt=fmt, limit=limit)
        if secret:
            payload = {"timestamp": str(timestamp), "sign": sign(secret, timestamp), **payload}
        request = json_request(webhook_url, payload)
        overflow = len(request.content) - BODY_LIMIT
        if overflow <= 0:
            break
        limit = max(limit - overflow - 256, 0)
    return request


class FeishuNotifier(NotifierBase):
    type: Literal["feishu"]
    webhook_url: str = Field(pattern=r"^https?://")
    secret: str | None = None
    """The bot's signature-verification secret, if "签名校验" is on."""
    format: Literal["text", "card"] = "text"
    channel_limits = ((100, 60.0), (5, 1.0))
    """Feishu's own limits per robot (SPEC 6): waiting in the outbox beats a rejected
    send and a retry."""

    secret_fields = ("webhook_url", "secret")
    default_max_length = TEXT_LIMIT
    api_limit = TEXT_LIMIT
    """What fits a Feishu message once wrapped in JSON (the body limit is 20 KB)."""

    def build_request(self, message: OutgoingMessage, *, now: float | None = None) -> HttpRequest:
        timestamp = time.time() if now is None else now
        return build_request(message, webhook_url=self.webhook_url, secret=self.secret,
                             fmt=self.format, limit=min(self.text_limit, TEXT_LIMIT),
                             timestamp=int(timestamp))

    async def deliver(self, request: HttpRequest, ctx: NotifyContext) -> str:
        """Send a built request and judge Feishu's answer (split from `send` for tests)."""
        secrets = self.secrets()
        response = await send_request(ctx, request, channel="feishu", time_limit=self.timeout,
                                      secrets=secrets)
        return robot_answer(response, channel="feishu", code_keys=("code", "StatusCode"),
                            message_keys=("msg", "StatusMessage"), retryable=RETRYABLE,
                            secrets=secrets)

    async def send(self, message: OutgoingMessage, ctx: NotifyContext) -> str:
        return await self.deliver(self.build_request(message), ctx)
