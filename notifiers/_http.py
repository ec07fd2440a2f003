"""What the HTTP channels share: a prepared request, one send path, secret scrubbing.

Channels build an `HttpRequest` in a pure function (testable without a network) and hand
it to `send_request`, which turns every transport failure into a retryable `DeliveryError`
whose text names the host but never the URL: chat-robot URLs carry their key in the query
(WeCom `key=`, DingTalk `access_token=`) or in the path (Feishu `/hook/<id>`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from monitor.core.text import scrub
from notifiers.base import DeliveryError, NotifyContext, OutgoingMessage


@dataclass(slots=True)
class HttpRequest:
    """Everything needed to send, nothing that needs a socket: what payload builders return."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""

    def json(self) -> Any:
        """The body decoded again (tests; the Alertmanager channel counts its alerts)."""
        return json.loads(self.content)


def json_request(url: str, payload: Any, headers: dict[str, str] | None = None) -> HttpRequest:
    """POST a JSON body as UTF-8 (Chinese text unescaped: smaller, and what the robots expect)."""
    return HttpRequest(
        method="POST",
        url=url,
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        content=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
    )


def host_of(url: str) -> str:
    """What an error may say about where it was sending: the host, never path or query."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


async def send_request(
    ctx: NotifyContext,
    request: HttpRequest,
    *,
    channel: str,
    time_limit: float,
    secrets: list[str],
) -> httpx.Response:
    """Send once; transport failures become retryable errors that name only the host."""
    host = host_of(request.url)
    try:
        return await ctx.http.request(
            request.method, request.url, headers=request.headers, content=request.content,
            timeout=time_limit,
        )
    except httpx.TimeoutException:
        raise DeliveryError(f"{channel}: no answer from {host} within {time_limit:g}s") from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        # A malformed URL will not get better by waiting: hand over to the fallback now.
        raise DeliveryError(
            f"{channel}: invalid URL ({scrub(str(exc), secrets)[:120]})", permanent=True
        ) from None
    except httpx.HTTPError as exc:
        detail = scrub(str(exc), secrets)[:160] or type(exc).__name__
        raise DeliveryError(f"{channel}: cannot reach {host}: {detail}") from None


def http_error(response: httpx.Response, channel: str, secrets: list[str]) -> DeliveryError:
    """Alertmanager's rule: 5xx, 408 and 429 retry; any other status is permanent."""
    status = response.status_code
    permanent = 400 <= status < 500 and status not in (408, 425, 429)
    snippet = scrub(response.text.replace("\n", " "), secrets)[:200]
    return DeliveryError(f"{channel} answered HTTP {status}: {snippet}".rstrip(": "),
                         permanent=permanent)


def robot_answer(
    response: httpx.Response,
    *,
    channel: str,
    code_keys: tuple[str, ...],
    message_keys: tuple[str, ...],
    retryable: frozenset[int],
    secrets: list[str],
    retry_words: tuple[str, ...] = ("too many request", "frequency", "rate limit", "too fast"),
) -> str:
    """Judge a chat robot's answer: they say HTTP 200 and put the verdict in a JSON code.

    Code 0 is success. Codes in `retryable` (rate limits, "system busy") retry; every other
    code is permanent, because an unknown code retried for `max_age` would hold the message
    back from its fallback for a day; an answer whose text says it was throttled retries
    whatever its code (Feishu's 9499 means both "bad request" and "too many requests").
    A 5xx/429 without a readable code retries.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    code: int | None = None
    if isinstance(body, dict):
        for key in code_keys:
            if isinstance(body.get(key), int):
                code = body[key]
                break
    if code is None:
        if not response.is_success:
            raise http_error(response, channel, secrets)
        raise DeliveryError(
            f"{channel}: HTTP {response.status_code} but no result code in the answer "
            "(is the webhook_url a robot URL?)",
            permanent=True,
        )
    if code == 0:
        return f"{code_keys[0]} 0"
    text = ""
    if isinstance(body, dict):
        for key in message_keys:
            if body.get(key):
                text = str(body[key])
                break
    text = scrub(text.replace("\n", " "), secrets)[:200]
    throttled = any(word in text.lower() for word in retry_words)
    status = response.status_code
    retry = code in retryable or throttled or status >= 500 or status in (408, 429)
    raise DeliveryError(f"{channel} errcode {code}: {text}".rstrip(": "), permanent=not retry)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def fit_text(message: OutgoingMessage, *, limit: int, head: str = "", tail: str = "") -> str:
    """`head + text + tail` within `limit` UTF-8 bytes, trimming only the text.

    The head (title) and tail (mentions) must survive: a trimmed mention silently stops
    paging the person it names. The text's own trimming points at the status page.
    """
    room = max(limit - utf8_len(head) - utf8_len(tail), 0)
    return head + message.trimmed_text(room) + tail

