"""Generic JSON webhook (SPEC §6 body), optionally signed with HMAC-SHA256.

The signature is `X-Hismon-Signature: sha256=HEX` over the exact body bytes, as GitHub
signs its webhooks, so receivers verify before parsing. `Idempotency-Key` carries the
message's key so a receiver can drop the duplicate a retry after a lost answer produces.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

from pydantic import Field, field_validator

from notifiers._http import (
    HttpRequest,
    http_error,
    json_request,
    send_request,
)
from notifiers.base import NotifierBase, NotifyContext, OutgoingMessage

RESERVED_HEADERS = frozenset({"x-hismon-signature", "content-length", "host"})


def signature(secret: str, body: bytes) -> str:
    """`sha256=HEX` of the exact body bytes, as GitHub-style receivers verify it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def build_request(
    message: OutgoingMessage, *, url: str, secret: str | None, headers: dict[str, str]
) -> HttpRequest:
    """Pure: the SPEC §6 body, our headers, the operator's headers, then the signature."""
    request = json_request(url, message.webhook_body(),
                           {"Idempotency-Key": message.idempotency_key,
                            "X-Hismon-Kind": message.kind, **headers})
    if secret:
        request.headers["X-Hismon-Signature"] = signature(secret, request.content)
    return request


class WebhookNotifier(NotifierBase):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra headers, e.g. `Authorization: Bearer ${TOKEN}`; credential-like ones are scrubbed."""

    secret_fields = ("secret", "url", "headers")

    @field_validator("headers")
    @classmethod
    def _not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        clash = sorted(name for name in value if name.lower() in RESERVED_HEADERS)
        if clash:
            raise ValueError(f"header {clash[0]} is set by hismon and cannot be overridden")
        return value

    def build_request(self, message: OutgoingMessage) -> HttpRequest:
        return build_request(message, url=self.url, secret=self.secret, headers=self.headers)

    async def send(self, message: OutgoingMessage, ctx: NotifyContext) -> str:
        secrets = self.secrets()
        response = await send_request(ctx, self.build_request(message), channel="webhook",
                                      time_limit=self.timeout, secrets=secrets)
        if not response.is_success:
            raise http_error(response, "webhook", secrets)
        return f"HTTP {response.status_code}"
