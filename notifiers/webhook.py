"""Generic JSON webhook (SPEC §6 body), optionally signed with HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Literal

from pydantic import Field

from notifiers.base import (
    DeliveryError,
    NotifierBase,
    NotifyContext,
    OutgoingMessage,
    raise_for_http_status,
)


def signature(secret: str, body: bytes) -> str:
    """`sha256=HEX` of the exact body bytes, as GitHub-style receivers verify it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def build_request(
    message: OutgoingMessage, secret: str | None, headers: dict[str, str]
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(message.webhook_body(), ensure_ascii=False).encode("utf-8")
    all_headers = {"Content-Type": "application/json; charset=utf-8",
                   "Idempotency-Key": message.idempotency_key, **headers}
    if secret:
        all_headers["X-Hismon-Signature"] = signature(secret, body)
    return body, all_headers


class WebhookNotifier(NotifierBase):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    secret_fields = ("secret", "url")

    async def send(self, message: OutgoingMessage, ctx: NotifyContext) -> str:
        body, headers = build_request(message, self.secret, self.headers)
        try:
            response = await ctx.http.post(self.url, content=body, headers=headers,
                                           timeout=self.timeout)
        except Exception as exc:  # httpx raises many transport errors; all are retryable
            raise DeliveryError(f"webhook unreachable: {type(exc).__name__}") from None
        raise_for_http_status(response, "webhook")
        return f"HTTP {response.status_code}"
