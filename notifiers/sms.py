"""SMS through any HTTP gateway, described by a request template.

Hospitals reach SMS through whatever their carrier or integrator offers (a vendor REST API,
a form POST, a GET with query parameters), so the request is a template: `url` and `body`
are Jinja2 templates given `recipient`, `text`, `title`, `kind`, `idempotency_key` and
`drill`. One request goes to each of `recipients`, all at once (the outbox allows one
timeout for the whole message).

`text` is the whole SMS, title first, cut to `max_length` *characters* (default 300, about
five 70-character segments) with the status-page link kept at the end. A 2xx answer is
success, unless `success_contains` is set and missing from it (many gateways say
HTTP 200 `{"code": "1001"}` for a refused message).

Retries of a partly delivered message go only to the recipients that did not get it yet
(remembered in memory for the last 1,000 messages), so nobody gets the same page twice.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any, Literal

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment
from pydantic import Field, PrivateAttr, field_validator, model_validator

from monitor.core.text import scrub
from monitor.core.types import MessageKind
from notifiers._http import (
    HttpRequest,
    host_of,
    http_error,
    send_request,
)
from notifiers.base import DeliveryError, NotifierBase, NotifyContext, OutgoingMessage

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
"""Sandboxed and strict: a typo such as `{{ recipent }}` fails loudly instead of sending ''."""
REMEMBERED_MESSAGES = 1000


def compile_template(source: str) -> jinja2.Template:
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"invalid template (line {exc.lineno}): {exc.message}") from None


def sms_text(message: OutgoingMessage, limit: int) -> str:
    """Title and text in `limit` characters; the status link survives the cut."""
    full = f"{message.title}\n{message.text}".strip() if message.title else message.text.strip()
    if len(full) <= limit:
        return full
    body, links = message.split_links()
    if links:  # the signed links survive whole; the text before them is cut (SPEC 13.2)
        full = f"{message.title}\n{body}".strip() if message.title else body.strip()
        tail = "… " + links.strip()
    else:
        tail = f"… {message.status_url}" if message.status_url else "…"
    return full[: max(limit - len(tail), 0)].rstrip() + tail


def mask(recipient: str) -> str:
    """Errors and answers name a recipient without spelling out the number."""
    if len(recipient) >= 8:
        return f"{recipient[:3]}****{recipient[-4:]}"
    return "***"


def content_type(body: str) -> str:
    """A default for gateways that need one; an explicit `Content-Type` header wins."""
    stripped = body.lstrip()
    if stripped.startswith(("{", "[")):
        return "application/json; charset=utf-8"
    if "=" in stripped and "\n" not in stripped.strip():
        return "application/x-www-form-urlencoded; charset=utf-8"
    return "text/plain; charset=utf-8"


def render_context(message: OutgoingMessage, recipient: str, limit: int) -> dict[str, Any]:
    return {"recipient": recipient, "text": sms_text(message, limit), "title": message.title,
            "kind": message.kind, "idempotency_key": message.idempotency_key,
            "drill": message.drill}


def build_request(
    message: OutgoingMessage,
    recipient: str,
    *,
    url: jinja2.Template,
    body: jinja2.Template | None,
    method: str,
    headers: dict[str, str],
    limit: int,
) -> HttpRequest:
    """Pure: one gateway request for one recipient. Raises ValueError if a template fails."""
    context = render_context(message, recipient, limit)
    try:
        rendered_url = url.render(context).strip()
        rendered_body = body.render(context) if body is not None else None
    except Exception as exc:  # a template bug must become a verdict, not a crash
        raise ValueError(f"template failed: {exc}") from None
    if not rendered_url.startswith(("http://", "https://")):
        raise ValueError("url template did not render to an http(s) URL")
    all_headers = dict(headers)
    if rendered_body is not None and not any(k.lower() == "content-type" for k in headers):
        all_headers["Content-Type"] = content_type(rendered_body)
    return HttpRequest(method=method, url=rendered_url, headers=all_headers,
                       content=(rendered_body or "").encode("utf-8"))


class SmsNotifier(NotifierBase):
    type: Literal["sms"]
    url: str = Field(pattern=r"^https?://")
    """A template too: `https://sms.internal/send?to={{ recipient|urlencode }}&...`."""
    method: Literal["GET", "POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    """e.g. `{"mobile": {{ recipient|tojson }}, "content": {{ text|tojson }}}`."""
    recipients: list[str] = Field(default_factory=list)
    """Who a message not meant for a person goes to; a gateway used only through `people`
    needs none (each page goes to the person's own mobile, SPEC 13.1; validated in
    monitor/people/validate.py)."""
    success_contains: str | None = None

    secret_fields = ("url", "headers")
    default_max_length = 300
    """Characters, not bytes: SMS segments are counted in characters (70 per UCS-2 part)."""

    _url: jinja2.Template = PrivateAttr()
    _body: jinja2.Template | None = PrivateAttr(default=None)
    _delivered: OrderedDict[str, set[str]] = PrivateAttr(default_factory=OrderedDict)

    @field_validator("url", "body")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_template(value)
        return value

    @model_validator(mode="after")
    def _body_fits_method(self) -> SmsNotifier:
        if self.method == "GET" and self.body is not None:
            raise ValueError("a GET request has no body: put the fields into the url template")
        if self.method != "GET" and self.body is None:
            raise ValueError(f"body is required for method {self.method}")
        # Render once with a sample so `hismon validate` reports a misspelt variable, not
        # the first real outage.
        sample = OutgoingMessage(kind=MessageKind.OUTAGE_IT, idempotency_key="validate",
                                 recipient="-", title="title", text="text")
        context = render_context(sample, "13800000000", 300)
        for name in ("url", "body"):
            source = getattr(self, name)
            if source is None:
                continue
            unknown = sorted(meta.find_undeclared_variables(_ENV.parse(source)) - set(context))
            if unknown:
                raise ValueError(f"{name} template uses unknown variable {unknown[0]!r} "
                                 f"(known: {', '.join(context)})")
            try:
                compile_template(source).render(context)
            except Exception as exc:  # any template bug is a config error, found now
                raise ValueError(f"{name} template: {exc}") from None
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._url = compile_template(self.url)
        self._body = compile_template(self.body) if self.body is not None else None

    def build_request(self, message: OutgoingMessage, recipient: str) -> HttpRequest:
        return build_request(message, recipient, url=self._url, body=self._body,
                             method=self.method, headers=self.headers, limit=self.text_limit)

    async def _send_one(self, message: OutgoingMessage, recipient: str,
                        ctx: NotifyContext) -> str:
        secrets = self.secrets()
        try:
            request = self.build_request(message, recipient)
        except ValueError as exc:
            raise DeliveryError(f"sms: {scrub(str(exc), secrets)}", permanent=True) from None
        response = await send_request(ctx, request, channel="sms", time_limit=self.timeout,
                                      secrets=secrets)
        if not response.is_success:
            raise http_error(response, "sms", secrets)
        if self.success_contains is not None and self.success_contains not in response.text:
            snippet = scrub(response.text.replace("\n", " "), secrets)[:120]
            raise DeliveryError(f"sms: {host_of(request.url)} answered HTTP "
                                f"{response.status_code} without {self.success_contains!r}: "
                                f"{snippet}", permanent=True)
        return f"HTTP {response.status_code}"

    async def send(self, message: OutgoingMessage, ctx: NotifyContext) -> str:
        done = self._delivered.setdefault(message.idempotency_key, set())
        self._delivered.move_to_end(message.idempotency_key)
        while len(self._delivered) > REMEMBERED_MESSAGES:
            self._delivered.popitem(last=False)
        mobile = message.person_address("mobile")
        addressees = [mobile] if mobile else self.recipients  # a person's own mobile (§13.1)
        if not addressees:
            raise DeliveryError("sms: no recipient (the message is for no person and the "
                                "notifier has no `recipients`)", permanent=True)
        todo = [r for r in dict.fromkeys(addressees) if r not in done]
        results = await asyncio.gather(*(self._send_one(message, r, ctx) for r in todo),
                                       return_exceptions=True)
        failures: list[tuple[str, BaseException]] = []
        answers: list[str] = []
        for recipient, result in zip(todo, results, strict=True):
            if isinstance(result, BaseException):
                failures.append((recipient, result))
            else:
                done.add(recipient)
                answers.append(result)
        total = len(dict.fromkeys(addressees))
        if failures:
            for _, exc in failures:
                if not isinstance(exc, Exception):
                    raise exc  # CancelledError and friends are not a delivery verdict
            permanent = all(isinstance(e, DeliveryError) and e.permanent for _, e in failures)
            detail = scrub("; ".join(f"{mask(r)}: {e}" for r, e in failures[:3]),
                           self.secrets())
            raise DeliveryError(f"sms: {len(failures)} of {total} recipients failed: {detail}",
                                permanent=permanent)
        earlier = total - len(todo)
        summary = answers[0] if answers else "nothing left to send"
        note = f", {earlier} in an earlier attempt" if earlier else ""
        return f"{total} of {total} sent ({summary}{note})"
