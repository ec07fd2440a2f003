"""WeCom (企业微信) group robot: one POST of JSON to the robot's webhook URL.

WeCom answers HTTP 200 for nearly everything and puts the verdict in `errcode`: 0 is
delivered, 45009 (more than 20 messages a minute) and -1 (system busy) are worth a retry,
93000 (invalid key, the robot was removed) and the 400xx payload errors are not.
The `key=` in the URL is the robot's only credential: it is scrubbed from every error.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from notifiers._http import (
    HttpRequest,
    fit_text,
    json_request,
    robot_answer,
    send_request,
)
from notifiers.base import NotifierBase, NotifyContext, OutgoingMessage

RETRYABLE = frozenset({
    -1,     # system busy
    45009,  # api freq out of limit (20 messages per robot per minute)
    45033,  # api concurrent out of limit
})
API_LIMITS: dict[str, int] = {"text": 2048, "markdown": 4096}
"""Longest `content` WeCom accepts, in UTF-8 bytes."""

Mobile = Annotated[str, Field(pattern=r"^(@all|\+?[0-9][0-9 -]{4,19})$")]


def build_payload(
    message: OutgoingMessage, *, fmt: str, mentioned_mobiles: list[str], limit: int
) -> dict[str, Any]:
    """The robot's JSON body: title and text in one block, trimmed to `limit` bytes."""
    if fmt == "markdown":
        color = "info" if message.kind in ("recovery", "maintenance_over") else "warning"
        head = f'<font color="{color}">**{message.title}**</font>\n\n' if message.title else ""
        return {"msgtype": "markdown",
                "markdown": {"content": fit_text(message, limit=limit, head=head)}}
    head = f"{message.title}\n\n" if message.title else ""
    text: dict[str, Any] = {"content": fit_text(message, limit=limit, head=head)}
    if mentioned_mobiles:
        text["mentioned_mobile_list"] = list(mentioned_mobiles)
    return {"msgtype": "text", "text": text}


class WeComNotifier(NotifierBase):
    type: Literal["wecom"]
    webhook_url: str = Field(pattern=r"^https?://")
    mentioned_mobiles: list[Mobile] = Field(default_factory=list)
    """Mobiles to @-mention (`@all` for everyone); WeCom supports this in `text` only."""
    format: Literal["text", "markdown"] = "text"
    channel_limits = ((20, 60.0),)
    """WeCom's own limits per robot (SPEC 6): waiting in the outbox beats a rejected
    send and a retry."""

    secret_fields = ("webhook_url",)
    default_max_length = API_LIMITS["text"]

    @model_validator(mode="after")
    def _fits_wecom(self) -> WeComNotifier:
        if self.mentioned_mobiles and self.format != "text":
            raise ValueError("mentioned_mobiles only work with format: text "
                             "(WeCom markdown messages cannot @-mention by mobile)")
        api_limit = API_LIMITS[self.format]
        if self.max_length is not None and self.max_length > api_limit:
            raise ValueError(f"max_length {self.max_length} is more than WeCom accepts "
                             f"for {self.format} ({api_limit} bytes)")
        return self

    @property
    def text_limit(self) -> int:
        return min(self.max_length or API_LIMITS[self.format], API_LIMITS[self.format])

    def build_request(self, message: OutgoingMessage) -> HttpRequest:
        mobile = message.person_address("mobile")  # a person's message @-mentions them
        payload = build_payload(message, fmt=self.format,
                                mentioned_mobiles=[mobile] if mobile else self.mentioned_mobiles,
                                limit=self.text_limit)
        return json_request(self.webhook_url, payload)

    async def deliver(self, request: HttpRequest, ctx: NotifyContext) -> str:
        """Send a built request and judge WeCom's answer (split from `send` for tests)."""
        secrets = self.secrets()
        response = await send_request(ctx, request, channel="wecom", time_limit=self.timeout,
                                      secrets=secrets)
        return robot_answer(response, channel="wecom", code_keys=("errcode",),
                            message_keys=("errmsg",), retryable=RETRYABLE, secrets=secrets)

    async def send(self, message: OutgoingMessage, ctx: NotifyContext) -> str:
        return await self.deliver(self.build_request(message), ctx)
