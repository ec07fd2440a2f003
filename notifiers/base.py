"""What every notifier shares: delivery keys, the message it receives, the error it raises.

Channels only build and send; they raise `DeliveryError` and never retry themselves. The
outbox (`monitor/delivery/outbox.py`) owns retries, backoff, fallback and rate limits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, ValidationInfo, field_validator, model_validator

from monitor.core.durations import Duration
from monitor.core.strict import Strict
from monitor.core.text import header_secrets, url_secrets
from monitor.core.types import MessageKind


class DeliveryError(Exception):
    """A failed send. `permanent` says that retrying the same message cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class RetryPolicy(Strict):
    initial: Duration = 1.0
    max_delay: Duration = 60.0
    max_age: Duration = 86400.0


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")


def parse_rate(text: str) -> tuple[int, float]:
    """`20/min` → (20, 60.0): at most 20 messages in any 60 seconds."""
    match = _RATE.match(text)
    if not match:
        raise ValueError(f'invalid rate_limit "{text}" (write it like 20/min)')
    per = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
           "h": 3600.0, "hour": 3600.0}[match.group(2)]
    return int(match.group(1)), per


def format_rate(count: int, per: float) -> str:
    """(20, 60.0) → `20/min`: the way a limit is written in the config."""
    unit = {1.0: "s", 60.0: "min", 3600.0: "hour"}.get(per)
    return f"{count}/{unit}" if unit else f"{count} per {per:g} s"


class NotifierBase(Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    type: str
    timeout: Duration = 10.0
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    fallback: str | None = None
    fallback_after: Duration = 120.0
    """An urgent message still undelivered this long after it was due is copied to
    `fallback` while this channel keeps retrying (SPEC 6, fallback in time)."""
    rate_limit: str | None = None
    drill: bool = False
    max_length: int | None = Field(default=None, gt=100)

    secret_fields: ClassVar[tuple[str, ...]] = ()
    default_max_length: ClassVar[int] = 100_000
    """Longest text sent by default; longer messages are trimmed with a status-page link."""
    api_limit: ClassVar[int | None] = None
    """The most the channel's API accepts: `max_length` may not exceed it."""
    groups_messages: ClassVar[bool] = True
    """Whether `alerting.group_window` may join this channel's messages into one (SPEC 6): a
    channel that keeps one record per incident (an Alertmanager alert) says no."""
    channel_limits: ClassVar[tuple[tuple[int, float], ...]] = ()
    """The channel API's own send limits, (count, seconds) each (SPEC 6): always applied by
    the outbox; a configured `rate_limit` may only lower them."""

    @field_validator("rate_limit")
    @classmethod
    def _rate_parses(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        count, per = parse_rate(value)
        above = [(own_count, own_per) for own_count, own_per in cls.channel_limits
                 if count / per > own_count / own_per]
        if above:  # name the limit written in the same unit, if that one is broken
            own_count, own_per = min(above, key=lambda limit: limit[1] != per)
            channel = info.data.get("type", "this channel")
            raise ValueError(f"{value} is above {channel}'s own limit of "
                             f"{format_rate(own_count, own_per)}; a rate_limit may only "
                             f"lower it")
        return value

    @model_validator(mode="after")
    def _fits_channel(self) -> NotifierBase:
        if self.api_limit is not None and self.max_length is not None \
                and self.max_length > self.api_limit:
            raise ValueError(f"max_length {self.max_length} is more than {self.type} accepts "
                             f"({self.api_limit} bytes)")
        return self

    @property
    def text_limit(self) -> int:
        limit = self.max_length or self.default_max_length
        return min(limit, self.api_limit) if self.api_limit is not None else limit

    def ignores(self, message: OutgoingMessage) -> str | None:
        """Why this channel has nothing to do with `message` (None: send it).

        The outbox asks before sending and records such a message as sent with the answer
        `skipped: <why>`, counted `skipped`, so that "sent" means someone received it.
        """
        return None

    async def test(self, message: OutgoingMessage, ctx: NotifyContext) -> str:
        """`hismon notify-test`: prove the channel works end to end (by default: send)."""
        return await self.send(message, ctx)

    async def send(self, message: OutgoingMessage, ctx: NotifyContext) -> str:
        """Deliver one message; return the channel's answer in a few words.

        Raise `DeliveryError` for every failure the channel understands; any other exception
        is taken for a bug and is permanent (the fallback gets the message at once).
        """
        raise NotImplementedError  # pragma: no cover - abstract

    def secrets(self) -> list[str]:
        """Values to scrub from any error text before it is logged or stored.

        A URL brings its credential parts too (a WeCom `key=`, a Feishu hook id), and a
        headers mapping the values of its credential-like headers.
        """
        values: list[str] = []
        for name in self.secret_fields:
            value = getattr(self, name, None)
            if isinstance(value, dict):
                values += header_secrets(value)
            elif isinstance(value, str) and "://" in value:
                values += url_secrets(value)
            elif isinstance(value, str) and value:
                values.append(value)
        return values


@dataclass(slots=True)
class OutgoingMessage:
    """One rendered message for one recipient, as stored in the outbox."""

    kind: MessageKind | Literal["test"]
    """`test` for `hismon notify-test`."""
    idempotency_key: str
    recipient: str
    title: str
    text: str
    incident: dict[str, Any] | None = None
    drill: bool = False
    status_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def webhook_body(self) -> dict[str, Any]:
        """The generic JSON body of SPEC §6 (version 1)."""
        body: dict[str, Any] = {
            "version": 1,
            "kind": self.kind,
            "idempotency_key": self.idempotency_key,
            "recipient": self.recipient,
            "title": self.title,
            "text": self.text,
            "incident": self.incident,
        }
        if self.drill:
            body["drill"] = True
        if self.person is not None:
            body["person"] = {"id": self.person.get("id"), "name": self.person.get("name")}
        if self.extra.get("links"):
            body["links"] = dict(self.extra["links"])
        if self.extra.get("incidents"):
            # A group (SPEC 6): `incident` is the first, `incidents` all, each with its links.
            body["incidents"] = [dict(i) for i in self.extra["incidents"]]
        return body

    @property
    def person(self) -> dict[str, Any] | None:
        """The person this message is for (SPEC §13.1): id, name, mobile, email."""
        found = self.extra.get("person")
        return found if isinstance(found, dict) else None

    def person_address(self, key: str) -> str | None:
        """The person's `mobile` or `email`, when this message is for a person who has one."""
        person = self.person
        value = person.get(key) if person else None
        return value if isinstance(value, str) and value else None

    def split_links(self) -> tuple[str, str]:
        """(text before the links, the link lines): a length limit cuts only the first."""
        links = self.extra.get("links_text")
        if isinstance(links, str) and links and self.text.endswith(links):
            return self.text[: -len(links)], links
        return self.text, ""

    def trimmed_text(self, limit: int) -> str:
        """Fit the channel's length limit, pointing at the status page for the rest.

        The signed links (SPEC 13.2) are kept whole: the text is cut before them."""
        encoded = self.text.encode("utf-8")
        if len(encoded) <= limit:
            return self.text
        body, links = self.split_links()
        if links:
            tail = "\n…" + links
        else:
            tail = f"\n…\n{self.status_url}" if self.status_url else "\n…"
        room = max(limit - len(tail.encode("utf-8")), 0)
        return body.encode("utf-8")[:room].decode("utf-8", errors="ignore") + tail


@dataclass(slots=True)
class NotifyContext:
    """Shared by every channel: one HTTP client (connection reuse) and the site's facts."""

    http: httpx.AsyncClient
    site_name: str = "hismon"
