"""Delivery: retries, fallback, max_age, isolation between channels, restart, rate limits.

Real webhook receivers on 127.0.0.1 and the real SQLite store; backoff durations are short.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from aiohttp import web

from monitor.config.loader import load_config_text
from monitor.core.models import OutboxMessage
from monitor.core.types import MessageKind
from monitor.delivery.outbox import Outbox, backoff, fallback_keys
from monitor.delivery.ratelimit import RateLimiter
from monitor.store.sqlite import SqliteStore
from notifiers.base import NotifyContext, OutgoingMessage
from notifiers.webhook import WebhookNotifier
from tests.conftest import LocalServer, Receiver
from tests.test_notifier_feishu import HOOK, SECRET, FakeFeishu, serve


class Hanging(LocalServer):
    """Accepts the request and never answers."""

    shutdown_timeout = 0.1

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def _handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        await asyncio.sleep(3600)
        return web.Response()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{tail:.*}", self._handle)


def make_config(receiver: Receiver, extra: str = "", hang_port: int = 1) -> str:
    return f"""
notifiers:
  - id: main
    type: webhook
    url: "{receiver.url('main')}"
    retry: {{initial: 100ms, max_delay: 400ms, max_age: 1m}}
    fallback: backup
  - id: backup
    type: webhook
    url: "{receiver.url('backup')}"
  - id: slow
    type: webhook
    url: "http://127.0.0.1:{hang_port}/slow"
    timeout: 1s
    retry: {{initial: 100ms, max_delay: 200ms, max_age: 1h}}
  - id: limited
    type: webhook
    url: "{receiver.url('limited')}"
    rate_limit: 3/s
{extra}
"""


def message(key: str, notifier: str, created: float | None = None) -> OutboxMessage:
    now = time.time() if created is None else created
    return OutboxMessage(idempotency_key=key, notifier=notifier, kind="outage_it",
                         payload={"title": "HIS down", "text": "details", "incident": None,
                                  "recipient": notifier},
                         incident_id="inc-1", created_at=now, next_attempt_at=now)


async def run_outbox(store: SqliteStore, config_text: str) -> Outbox:
    outbox = Outbox(load_config_text(config_text, "t.yaml", {}), store)
    outbox.start()
    return outbox


async def test_a_receiver_that_is_down_for_a_while_gets_the_message_exactly_once(
    store: SqliteStore, receiver: Receiver
) -> None:
    receiver.fail_with = 503
    outbox = await run_outbox(store, make_config(receiver))
    await store.enqueue([message("inc-1:step-0:main:0", "main")])
    outbox.wake()
    await asyncio.sleep(0.6)
    assert receiver.messages == []
    stored = (await store.list_messages())[0]
    assert stored.status == "pending" and stored.attempts >= 2
    assert "HTTP 503" in (stored.last_error or "")
    receiver.fail_with = None
    await receiver.wait_for(lambda: len(receiver.messages) >= 1, timeout=5)
    await asyncio.sleep(0.5)
    await outbox.stop()
    assert [m["idempotency_key"] for m in receiver.messages] == ["inc-1:step-0:main:0"]
    assert (await store.list_messages())[0].status == "sent"


async def test_a_hanging_channel_delays_only_its_own_messages(
    store: SqliteStore, receiver: Receiver
) -> None:
    hanging = await Hanging().start()
    outbox = await run_outbox(store, make_config(receiver, hang_port=hanging.port))
    await store.enqueue([message("k-slow", "slow"), message("k-main", "main")])
    outbox.wake()
    started = time.monotonic()
    await receiver.wait_for(lambda: len(receiver.messages) == 1, timeout=5)
    assert time.monotonic() - started < 1.0, "the main channel waited for the hanging one"
    await asyncio.sleep(1.5)
    slow = next(m for m in await store.list_messages() if m.notifier == "slow")
    assert slow.status == "pending" and "no answer" in (slow.last_error or "")
    await outbox.stop()
    await hanging.stop()


async def test_a_permanent_error_hands_the_message_to_the_fallback(
    store: SqliteStore, receiver: Receiver
) -> None:
    receiver.fail_with, receiver.fail_paths = 400, {"/main"}
    outbox = await run_outbox(store, make_config(receiver))
    await store.enqueue([message("inc-1:step-0:main:0", "main")])
    outbox.wake()
    await receiver.wait_for(lambda: len(receiver.messages) == 1, timeout=5)
    await outbox.stop()
    assert receiver.messages[0]["_path"] == "/backup"
    statuses = {m.notifier: m.status for m in await store.list_messages()}
    assert statuses == {"main": "failed", "backup": "sent"}


async def test_a_message_older_than_max_age_is_undeliverable_not_dropped(
    store: SqliteStore, receiver: Receiver
) -> None:
    receiver.fail_with = 503
    outbox = await run_outbox(store, make_config(receiver))
    await store.enqueue([message("old", "main", created=time.time() - 3600)])
    outbox.wake()
    await asyncio.sleep(0.5)
    await outbox.stop()
    old = next(m for m in await store.list_messages() if m.idempotency_key == "old")
    assert old.status == "undeliverable" and old.attempts == 1
    assert any(m.idempotency_key == "old:fallback:backup" for m in await store.list_messages())


async def test_a_restart_resumes_pending_messages(store: SqliteStore, receiver: Receiver) -> None:
    await store.enqueue([message("a", "main"), message("b", "main")])
    outbox = await run_outbox(store, make_config(receiver))
    await receiver.wait_for(lambda: len(receiver.messages) == 2, timeout=5)
    await outbox.stop()
    assert sorted(m["idempotency_key"] for m in receiver.messages) == ["a", "b"]


async def test_a_rate_limited_channel_queues_instead_of_dropping(
    store: SqliteStore, receiver: Receiver
) -> None:
    outbox = await run_outbox(store, make_config(receiver))
    await store.enqueue([message(f"m{i}", "limited") for i in range(5)])
    outbox.wake()
    await asyncio.sleep(0.5)
    assert len(receiver.messages) == 3
    await receiver.wait_for(lambda: len(receiver.messages) == 5, timeout=5)
    await outbox.stop()
    assert [m["idempotency_key"] for m in receiver.messages] == [f"m{i}" for i in range(5)]


async def test_a_channels_own_per_second_limit_applies_under_a_per_minute_rate_limit(
    store: SqliteStore,
) -> None:
    """Feishu bounces a sixth message within a second (SPEC 6: 100/min and 5/s); a configured
    `rate_limit: 50/min` lowers the minute and keeps the second: nothing is ever bounced."""
    bot = FakeFeishu()
    async with serve(bot) as base:
        config = f"""
notifiers:
  - id: lab
    type: feishu
    webhook_url: "{base}{HOOK}"
    secret: {SECRET}
    rate_limit: 50/min
    retry: {{initial: 1h, max_delay: 1h}}
"""
        outbox = await run_outbox(store, config)
        await store.enqueue([message(f"f{i}", "lab") for i in range(8)])
        outbox.wake()
        for _ in range(150):  # 8 messages at 5 a second: ~2 s; bounded at 15 s
            if len(bot.received) >= 8:
                break
            await asyncio.sleep(0.1)
        await outbox.stop()
    stored = await store.list_messages()
    assert len(bot.received) == 8, [(m.idempotency_key, m.last_error) for m in stored]
    assert all(m.attempts == 1 and m.status == "sent" for m in stored), \
        "a message bounced by the bot's per-second limit would need a second attempt"


async def test_secrets_never_reach_the_stored_error(store: SqliteStore) -> None:
    config = """
notifiers:
  - id: hook
    type: webhook
    url: "http://127.0.0.1:1/robot?key=SECRET-KEY-123"
    retry: {initial: 1h, max_delay: 1h}
"""
    outbox = await run_outbox(store, config)
    await store.enqueue([message("s", "hook")])
    outbox.wake()
    await asyncio.sleep(0.5)
    await outbox.stop()
    stored = (await store.list_messages())[0]
    assert stored.last_error and "SECRET-KEY-123" not in stored.last_error


def test_backoff_grows_exponentially_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(1)
    delays = [backoff(n, 1.0, 60.0, rng) for n in range(1, 10)]
    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4
    assert all(d <= 72.0 for d in delays) and delays[-1] >= 48.0


def test_rate_limiter_counts_a_sliding_window() -> None:
    limiter = RateLimiter(2, 60.0)
    limiter.record(0.0)
    limiter.record(1.0)
    assert limiter.wait_time(2.0) == pytest.approx(58.0)
    assert limiter.wait_time(61.0) == 0.0


class BuggyWebhook(WebhookNotifier):
    """A channel with a bug (a stand-in: no real channel is known to have one). Its error
    is a KeyError, not a DeliveryError."""

    async def send(self, message: OutgoingMessage, ctx: NotifyContext) -> str:
        raise KeyError("errcode")


async def test_a_channel_bug_is_permanent_and_its_fallback_gets_the_message_at_once(
    store: SqliteStore, receiver: Receiver
) -> None:
    """Not retried for `max_age` (1m here, 24h by default): the fallback has it now."""
    config = load_config_text(make_config(receiver), "t.yaml", {})
    index = next(i for i, n in enumerate(config.notifiers) if n.id == "main")
    config.notifiers[index] = BuggyWebhook.model_validate(config.notifiers[index].model_dump())
    seen: list[tuple[str, str, str]] = []
    outbox = Outbox(config, store, on_result=lambda n, k, r: seen.append((n, k, r)))
    outbox.start()
    await store.enqueue([message("inc-1:step-0:main:0", "main")])
    outbox.wake()
    await receiver.wait_for(lambda: len(receiver.messages) == 1, timeout=3)
    await asyncio.sleep(0.3)
    await outbox.stop()
    assert receiver.messages[0]["_path"] == "/backup"
    main = next(m for m in await store.list_messages() if m.notifier == "main")
    assert main.status == "failed" and main.attempts == 1
    assert main.last_error == "KeyError: 'errcode'"
    assert ("main", "outage_it", "failed") in seen and ("main", "outage_it", "retry") not in seen


async def test_a_message_the_channel_ignores_is_skipped_not_sent(store: SqliteStore) -> None:
    """Alertmanager declares maintenance notices (no incident) meaningless for it: nothing
    is posted (nothing listens on the URL), and it is counted `skipped`, not `sent`."""
    config = load_config_text("""
notifiers:
  - id: am
    type: alertmanager
    url: "http://127.0.0.1:1"
    retry: {initial: 1h, max_delay: 1h}
""", "t.yaml", {})
    seen: list[tuple[str, str, str]] = []
    outbox = Outbox(config, store, on_result=lambda n, k, r: seen.append((n, k, r)))
    outbox.start()
    notice = message("maint:w1:am", "am")
    notice.kind = MessageKind.MAINTENANCE_NOTICE
    await store.enqueue([notice])
    outbox.wake()
    for _ in range(30):
        if seen:
            break
        await asyncio.sleep(0.1)
    await outbox.stop()
    assert seen == [("am", "maintenance_notice", "skipped")]
    (stored,) = await store.list_messages()
    assert stored.status == "sent" and stored.attempts == 0
    assert stored.answer == "skipped: maintenance_notice has no incident, so no alert"


async def test_three_failing_channels_send_one_fallback_copy_naming_them(
    store: SqliteStore, receiver: Receiver
) -> None:
    """SPEC 6: one copy per (incident, step, fallback, recipient), and its text says which
    channels failed."""
    receiver.fail_with, receiver.fail_paths = 400, {"/wecom", "/mail", "/ding"}
    config = load_config_text("""
site: {language: en}
notifiers:
""" + "".join(f"""
  - id: {name}
    type: webhook
    url: "{receiver.url(name)}"
    fallback: sms
""" for name in ("wecom", "mail", "ding")) + f"""
  - id: sms
    type: webhook
    url: "{receiver.url('sms')}"
""", "t.yaml", {})
    outbox = Outbox(config, store)
    await store.enqueue([message(f"inc-1:step-0:{n}:0", n) for n in ("wecom", "mail", "ding")])
    outbox.start()
    await receiver.wait_for(lambda: len(receiver.messages) >= 1, timeout=5)
    await asyncio.sleep(0.5)
    await outbox.stop()
    assert [m["_path"] for m in receiver.messages] == ["/sms"]
    copies = [m for m in await store.list_messages() if m.notifier == "sms"]
    assert len(copies) == 1
    assert copies[0].idempotency_key == "inc-1:step-0:fallback:sms:sms:0"
    text = receiver.messages[0]["text"]
    assert text.startswith("details")
    assert "because wecom" in text and "could not deliver it" in text


async def test_no_fallback_copy_when_the_fallback_was_a_direct_recipient(
    store: SqliteStore, receiver: Receiver
) -> None:
    receiver.fail_with, receiver.fail_paths = 400, {"/main"}
    outbox = await run_outbox(store, make_config(receiver))
    await store.enqueue([message("inc-1:step-0:main:0", "main"),
                         message("inc-1:step-0:backup:0", "backup")])
    outbox.wake()
    await receiver.wait_for(lambda: len(receiver.messages) == 1, timeout=5)
    await asyncio.sleep(0.5)
    await outbox.stop()
    assert [m["idempotency_key"] for m in receiver.messages] == ["inc-1:step-0:backup:0"]
    assert len(await store.list_messages()) == 2


def test_fallback_keys_leave_the_failed_primary_out() -> None:
    step = message("inc-7:step-2:wecom-it:3", "wecom-it")
    assert fallback_keys(step, "sms") == ("inc-7:step-2:sms:3", "inc-7:step-2:fallback:sms:sms:3")
    dept = message("inc-7:step-2:wecom-er:0", "wecom-er")
    dept.payload["department"] = "emergency"
    assert fallback_keys(dept, "sms")[1] == "inc-7:step-2:fallback:sms:emergency:0"
    assert fallback_keys(message("maint:w:am", "am"), "sms") == (
        "maint:w:sms", "maint:w:fallback:sms:sms")
    assert fallback_keys(message("odd", "main"), "backup") == (None, "odd:fallback:backup")
    person = message("inc-7:step-2:person:wang/sms-a:0", "sms-a")
    person.payload["person"] = {"id": "wang", "name": "Wang"}
    assert fallback_keys(person, "sms-b") == (
        "inc-7:step-2:person:wang/sms-b:0", "inc-7:step-2:fallback:sms-b:person:wang:0")
