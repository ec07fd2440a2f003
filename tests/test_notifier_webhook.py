"""Generic webhook: the SPEC §6 body, `X-Hismon-Signature`, custom headers, error verdicts.

The receiver runs on 127.0.0.1 and verifies the signature the way a careful integrator
would: HMAC-SHA256 over the raw body bytes, constant-time compare, before parsing JSON.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiohttp import web
from pydantic import ValidationError

from notifiers import NOTIFIER_TYPES
from notifiers._http import http_error
from notifiers.base import DeliveryError, NotifyContext, OutgoingMessage
from notifiers.webhook import WebhookNotifier, build_request, signature
from tests.conftest import serve_route

SECRET = "whsec-7f3a9c2e1b"
TOKEN = "tok-0a1b2c3d4e5f6a7b"


def outage_message(**changes: Any) -> OutgoingMessage:
    incident = {
        "id": "inc-42", "system": "his-outpatient", "system_name": "门诊医生站",
        "severity": "critical", "status": "open", "started_at": "2026-11-20T08:05:12+08:00",
        "acknowledged_by": None, "resolved_at": None, "suspected_cause": "database",
        "caused_by": None, "affected_departments": ["emergency", "outpatient", "fever-clinic"],
        "failing_checks": [{"id": "his-db-primary", "type": "postgres", "state": "CRIT",
                            "message": "connection refused 10.1.2.3:5432"}],
    }
    fields: dict[str, Any] = {
        "kind": "department_outage", "idempotency_key": "inc-42:step-1:wecom-emergency:0",
        "recipient": "wecom-emergency", "title": "门诊医生站 故障",
        "text": "门诊医生站自 08:05 起无法使用，请启用纸质处方（表 B-3）。",
        "incident": incident, "status_url": "http://hismon.hospital.internal:9464/",
    }
    fields.update(changes)
    return OutgoingMessage(**fields)


class Receiver:
    """A webhook consumer that checks the signature and keeps what it accepted."""

    def __init__(self, secret: str | None) -> None:
        self.secret = secret
        self.accepted: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.refused = 0
        self.status = 200
        self.echo_headers = False

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self.secret is not None:
            expected = "sha256=" + hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
            given = request.headers.get("X-Hismon-Signature", "")
            if not hmac.compare_digest(expected, given):
                self.refused += 1
                return web.json_response({"error": "bad signature"}, status=401)
        if self.status != 200:
            body = dict(request.headers) if self.echo_headers else {"error": "unavailable"}
            return web.json_response(body, status=self.status)
        self.accepted.append((json.loads(raw), dict(request.headers)))
        return web.json_response({"ok": True})


@asynccontextmanager
async def serve(handler: Any) -> AsyncIterator[str]:
    async with serve_route("/hooks/hismon", handler, "POST") as url:
        yield url


@pytest.fixture
async def ctx() -> AsyncIterator[NotifyContext]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield NotifyContext(http=client, site_name="Example General Hospital")


def webhook(url: str, **keys: Any) -> WebhookNotifier:
    return WebhookNotifier.model_validate({"id": "hook-it", "type": "webhook", "url": url,
                                           "timeout": "2s", **keys})


def test_webhook_is_registered() -> None:
    """The registry maps `webhook` to this class, so configs can name it."""
    assert NOTIFIER_TYPES["webhook"] is WebhookNotifier


def test_the_signature_covers_the_exact_body_bytes() -> None:
    """The pure builder signs what it sends; changing one byte breaks the signature."""
    request = build_request(outage_message(), url="http://x/", secret=SECRET, headers={})
    assert request.headers["X-Hismon-Signature"] == signature(SECRET, request.content)
    assert request.headers["X-Hismon-Signature"].startswith("sha256=")
    assert len(request.headers["X-Hismon-Signature"]) == len("sha256=") + 64
    assert signature(SECRET, request.content + b" ") != request.headers["X-Hismon-Signature"]


async def test_it_posts_the_spec_body_signed_and_with_custom_headers(
    ctx: NotifyContext,
) -> None:
    """A signed receiver accepts the message: SPEC §6 body, our headers and the operator's."""
    receiver = Receiver(SECRET)
    async with serve(receiver.handle) as url:
        notifier = webhook(url, secret=SECRET,
                           headers={"Authorization": f"Bearer {TOKEN}", "X-Site": "north"})
        answer = await notifier.send(outage_message(), ctx)
    assert answer == "HTTP 200"
    assert receiver.refused == 0
    (body, headers), = receiver.accepted
    assert set(body) == {"version", "kind", "idempotency_key", "recipient", "title", "text",
                         "incident"}
    assert body["version"] == 1
    assert body["kind"] == "department_outage"
    assert body["idempotency_key"] == "inc-42:step-1:wecom-emergency:0"
    assert body["title"] == "门诊医生站 故障"
    assert body["incident"]["failing_checks"][0]["message"] == "connection refused 10.1.2.3:5432"
    assert body["incident"]["affected_departments"] == ["emergency", "outpatient",
                                                        "fever-clinic"]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["X-Site"] == "north"
    assert headers["Idempotency-Key"] == "inc-42:step-1:wecom-emergency:0"
    assert headers["Content-Type"].startswith("application/json")


async def test_drill_messages_say_so_in_the_body(ctx: NotifyContext) -> None:
    """A receiver can tell a rehearsal from a real outage without parsing the title."""
    receiver = Receiver(None)
    async with serve(receiver.handle) as url:
        await webhook(url).send(outage_message(drill=True), ctx)
        await webhook(url).send(outage_message(), ctx)
    assert receiver.accepted[0][0]["drill"] is True
    assert "drill" not in receiver.accepted[1][0]
    assert "X-Hismon-Signature" not in receiver.accepted[1][1]


async def test_a_wrong_secret_is_refused_and_permanent(ctx: NotifyContext) -> None:
    """401 from the receiver will not change on retry: permanent, and the secret is not told."""
    receiver = Receiver(SECRET)
    async with serve(receiver.handle) as url:
        with pytest.raises(DeliveryError) as failure:
            await webhook(url, secret="not-the-right-one").send(outage_message(), ctx)
    assert failure.value.permanent is True
    assert "HTTP 401" in str(failure.value)
    assert "not-the-right-one" not in str(failure.value)
    assert receiver.refused == 1 and receiver.accepted == []


@pytest.mark.parametrize(("status", "permanent"), [(500, False), (503, False), (429, False),
                                                   (408, False), (400, True), (404, True)])
async def test_http_status_decides_whether_to_retry(
    ctx: NotifyContext, status: int, permanent: bool
) -> None:
    """5xx, 408 and 429 retry; other 4xx are permanent (Alertmanager's rule)."""
    receiver = Receiver(None)
    receiver.status = status
    async with serve(receiver.handle) as url:
        with pytest.raises(DeliveryError) as failure:
            await webhook(url).send(outage_message(), ctx)
    assert failure.value.permanent is permanent
    assert f"HTTP {status}" in str(failure.value)


async def test_an_echoing_error_page_does_not_leak_the_token(ctx: NotifyContext) -> None:
    """Some gateways echo request headers in their error page; the error text is scrubbed."""
    receiver = Receiver(None)
    receiver.status, receiver.echo_headers = 502, True
    async with serve(receiver.handle) as url:
        notifier = webhook(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with pytest.raises(DeliveryError) as failure:
            await notifier.send(outage_message(), ctx)
    assert failure.value.permanent is False
    assert TOKEN not in str(failure.value)
    assert TOKEN in notifier.secrets()


async def test_a_closed_port_is_retryable_and_names_only_the_host(ctx: NotifyContext) -> None:
    """Nothing listens: retry later; the error says where, not the URL with its token."""
    receiver = Receiver(None)
    async with serve(receiver.handle) as url:
        pass  # the port is free again once the receiver stopped
    with pytest.raises(DeliveryError) as failure:
        await webhook(f"{url}?token={TOKEN}").send(outage_message(), ctx)
    assert failure.value.permanent is False
    assert "127.0.0.1" in str(failure.value)
    assert TOKEN not in str(failure.value)


async def test_a_receiver_that_never_answers_costs_only_the_timeout(
    ctx: NotifyContext,
) -> None:
    """Accepts the connection, never answers: a retryable error after `timeout`."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(DeliveryError) as failure:
            await webhook(f"http://127.0.0.1:{port}/", timeout="300ms").send(
                outage_message(), ctx)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert failure.value.permanent is False
    assert "within 0.3s" in str(failure.value)
    assert elapsed < 3


def test_headers_hismon_sets_cannot_be_overridden() -> None:
    """An operator header must not replace the signature the receiver relies on."""
    with pytest.raises(ValidationError, match="X-Hismon-Signature"):
        webhook("http://127.0.0.1:1/", headers={"X-Hismon-Signature": "sha256=00"})


def test_a_secret_in_an_error_body_is_masked_before_the_body_is_cut() -> None:
    """The body was cut at 200 characters first, so the start of a secret that straddled
    the cut no longer matched and survived (issue 11)."""
    secret = "hook-key-" + "7" * 30
    response = httpx.Response(500, text="e" * 190 + secret + " more")
    error = http_error(response, "webhook", [secret])
    assert "hook-key" not in str(error) and "***" in str(error)
