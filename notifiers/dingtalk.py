"""DingTalk (钉钉) group robot, with the optional signing secret ("加签").

Signing: `timestamp` (ms) + "\\n" + secret, HMAC-SHA256 keyed by the secret, base64, then
URL-quoted and appended to the webhook URL as `&timestamp=..&sign=..`. DingTalk refuses a
timestamp more than an hour off, so the signature is made at send time, never stored.

Mentions need two things: the mobiles in `at.atMobiles` *and* `@<mobile>` in the text;
without the latter DingTalk shows no highlight. The mention suffix is never trimmed away.
DingTalk answers HTTP 200 with `errcode`: 130101 (more than 20 messages a minute) and -1
(busy) retry; 310000 (signature, keyword or IP whitelist mismatch) and token errors do not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Annotated, Any, Literal
from urllib.parse import quote_plus

from pydantic import Field

from notifiers._http import (
    HttpRequest,
    fit_text,
    json_request,
    robot_answer,
    send_request,
)
from notifiers.base import NotifierBase, NotifyContext, OutgoingMessage

RETRYABLE = frozenset({
    -1,      # system busy
    130101,  # send too fast, exceed 20 times per minute
})
API_LIMIT = 20_000
"""Longest text DingTalk accepts, in UTF-8 bytes."""

Mobile = Annotated[str, Field(pattern=r"^(@all|\+?[0-9][0-9-]{4,19})$")]


def sign(secret: str, timestamp_ms: int) -> str:
    """The `sign` query value: base64(HMAC-SHA256(secret, f"{ts}\\n{secret}")), URL-quoted."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode("ascii"))


def signed_url(url: str, secret: str | None, timestamp_ms: int) -> str:
    if not secret:
        return url
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}timestamp={timestamp_ms}&sign={sign(secret, timestamp_ms)}"


def build_payload(
    message: OutgoingMessage, *, fmt: str, at_mobiles: list[str], limit: int
) -> dict[str, Any]:
    at_all = "@all" in at_mobiles
    mobiles = [m for m in at_mobiles if m != "@all"]
    tail = ("\n\n" + " ".join(f"@{m}" for m in mobiles)) if mobiles else ""
    at: dict[str, Any] = {"atMobiles": mobiles, "isAtAll": at_all}
    title = message.title or message.kind
    if fmt == "markdown":
        head = f"### {message.title}\n\n" if message.title else ""
        return {"msgtype": "markdown",
                "markdown": {"title": title,
                             "text": fit_text(message, limit=limit, head=head, tail=tail)},
                "at": at}
    head = f"{message.title}\n\n" if message.title else ""
    return {"msgtype": "text",
            "text": {"content": fit_text(message, limit=limit, head=head, tail=tail)},
            "at": at}


def build_request(
    message: OutgoingMessage,
    *,
    webhook_url: str,
    secret: str | None,
    fmt: str,
    at_mobiles: list[str],
    limit: int,
    timestamp_ms: int,
) -> HttpRequest:
    """Pure: the signed URL and body for `timestamp_ms` (tests pass a fixed or stale one)."""
    payload = build_payload(message, fmt=fmt, at_mobiles=at_mobiles, limit=limit)
    return json_request(signed_url(webhook_url, secret, timestamp_ms), payload)


def _mentions(message: OutgoingMessage, configured: list[str]) -> list[str]:
    """A message for a person @-mentions their mobile instead of the configured ones."""
    mobile = message.person_address("mobile")
    return [mobile] if mobile else list(configured)


class DingTalkNotifier(NotifierBase):
    type: Literal["dingtalk"]
    webhook_url: str = Field(pattern=r"^https?://")
    secret: str | None = None
    """The robot's signing secret (starts with `SEC`); leave out for keyword/IP security."""
    at_mobiles: list[Mobile] = Field(default_factory=list)
    """Mobiles to @-mention; `@all` mentions everyone in the group."""
    format: Literal["text", "markdown"] = "text"
    channel_limits = ((20, 60.0),)
    """DingTalk's own limits per robot (SPEC 6): waiting in the outbox beats a rejected
    send and a retry."""

    secret_fields = ("webhook_url", "secret")
    default_max_length = API_LIMIT
    api_limit = API_LIMIT

    def build_request(self, message: OutgoingMessage, *, now: float | None = None) -> HttpRequest:
        timestamp = time.time() if now is None else now
        return build_request(message, webhook_url=self.webhook_url, secret=self.secret,
                             fmt=self.format, at_mobiles=_mentions(message, self.at_mobiles),
                             limit=min(self.text_limit, API_LIMIT),
                             timestamp_ms=int(timestamp * 1000))

    async def deliver(self, request: HttpRequest, ctx: NotifyContext) -> str:
        """Send a built request and judge DingTalk's answer (split from `send` for tests)."""
        secrets = self.secrets()
        response = await send_request(ctx, request, channel="dingtalk", time_limit=self.timeout,
                                      secrets=secrets)
        return robot_answer(response, channel="dingtalk", code_keys=("errcode",),
                            message_keys=("errmsg",), retryable=RETRYABLE, secrets=secrets)

    async def send(self, message: OutgoingMessage, ctx: NotifyContext) -> str:
        return await self.deliver(self.build_request(message), ctx)
