"""Fallback in time (SPEC 6): an urgent message undelivered `fallback_after` after it was due
is copied to the fallback while the primary keeps retrying.

Real webhook receivers on 127.0.0.1 and the real SQLite store; durations are short.
"""

from __future__ import annotations

import asyncio
import time

from monitor.config.loader import load_config_text
from monitor.core.models import OutboxMessage
from monitor.delivery.outbox import Outbox
from monitor.store.sqlite import SqliteStore
from tests.conftest import Receiver


def notifier(receiver: Receiver, name: str, extra: str = "") -> str:
    return f"""
  - id: {name}
    type: webhook
    url: "{receiver.url(name)}"
    retry: {{initial: 100ms, max_delay: 200ms, max_age: 1h}}
{extra}"""


def message(key: str, notifier: str, kind: str = "outage_it") -> OutboxMessage:
    now = time.time()
    return OutboxMessage(idempotency_key=key, notifier=notifier, kind=kind,  # type: ignore[arg-type]
                         payload={"title": "HIS down", "text": "details", "incident": None,
                                  "recipient": notifier},
                         incident_id="inc-1", created_at=now, next_attempt_at=now)


async def start(store: SqliteStore, body: str) -> Outbox:
    outbox = Outbox(load_config_text("site: {language: en}\nnotifiers:" + body, "t.yaml", {}),
                    store)
    outbox.start()
    return outbox


FALLS_BACK = "    fallback: sms\n    fallback_after: 400ms\n"


async def test_an_urgent_message_falls_back_in_time_and_the_primary_still_delivers(
    store: SqliteStore, receiver: Receiver
) -> None:
    receiver.fail_with, receiver.fail_paths = 503, {"/wecom"}
    outbox = await start(store, notifier(receiver, "wecom", FALLS_BACK)
                         + notifier(receiver, "sms"))
    began = time.time()
    await store.enqueue([message("inc-1:step-0:wecom:0", "wecom")])
    outbox.wake()
    await receiver.wait_for(lambda: len(receiver.messages) >= 1, timeout=5)
    waited = receiver.messages[0]["_received_at"] - began
    assert receiver.messages[0]["_path"] == "/sms"
    assert 0.35 <= waited < 2.0, waited  # after fallback_after, long before max_age (1h)
    assert "because wecom could not deliver it" in receiver.messages[0]["text"]
    primary = next(m for m in await store.list_messages() if m.notifier == "wecom")
    assert primary.status == "pending"  # still retrying
    receiver.fail_with = None
    await receiver.wait_for(lambda: len(receiver.messages) >= 2, timeout=5)
    await asyncio.sleep(0.6)
    await outbox.stop()
    assert [m["_path"] for m in receiver.messages] == ["/sms", "/wecom"]  # both got it
    assert len([m for m in await store.list_messages() if m.notifier == "sms"]) == 1


async def test_three_failing_primaries_send_exactly_one_copy_in_time(
    store: SqliteStore, receiver: Receiver
) -> None:
    names = ("wecom", "mail", "ding")
    receiver.fail_with, receiver.fail_paths = 503, {f"/{n}" for n in names}
    outbox = await start(store, "".join(notifier(receiver, n, FALLS_BACK) for n in names)
                         + notifier(receiver, "sms"))
    await store.enqueue([message(f"inc-1:step-0:{n}:0", n) for n in names])
    outbox.wake()
    await receiver.wait_for(lambda: len(receiver.messages) >= 1, timeout=5)
    await asyncio.sleep(1.5)  # every primary failed past fallback_after several times
    await outbox.stop()
    assert [m["_path"] for m in receiver.messages] == ["/sms"]
    copies = [m for m in await store.list_messages() if m.notifier == "sms"]
    assert [c.idempotency_key for c in copies] == ["inc-1:step-0:fallback:sms:sms:0"]
    assert all(m.status == "pending" for m in await store.list_messages() if m.notifier in names)


async def test_waiting_in_a_rate_limit_queue_is_not_failing(
    store: SqliteStore, receiver: Receiver
) -> None:
    outbox = await start(store, notifier(receiver, "wecom", FALLS_BACK + "    rate_limit: 2/s\n")
                         + notifier(receiver, "sms"))
    await store.enqueue([message(f"inc-{i}:step-0:wecom:0", "wecom") for i in range(5)])
    outbox.wake()
    await receiver.wait_for(lambda: len(receiver.messages) >= 5, timeout=8)
    await asyncio.sleep(0.5)
    await outbox.stop()
    # The last ones waited well past fallback_after (400ms), but never failed.
    assert [m["_path"] for m in receiver.messages] == ["/wecom"] * 5


async def test_a_kind_that_is_not_urgent_waits_for_max_age(
    store: SqliteStore, receiver: Receiver
) -> None:
    receiver.fail_with, receiver.fail_paths = 503, {"/wecom"}
    outbox = await start(store, notifier(receiver, "wecom", FALLS_BACK)
                         + notifier(receiver, "sms"))
    await store.enqueue([message("inc-1:step-0:wecom:0", "wecom", kind="recovery")])
    outbox.wake()
    await asyncio.sleep(1.2)
    await outbox.stop()
    assert receiver.messages == []
    assert [m.notifier for m in await store.list_messages()] == ["wecom"]


async def test_no_timely_copy_when_the_fallback_was_a_direct_recipient(
    store: SqliteStore, receiver: Receiver
) -> None:
    receiver.fail_with, receiver.fail_paths = 503, {"/wecom"}
    outbox = await start(store, notifier(receiver, "wecom", FALLS_BACK)
                         + notifier(receiver, "sms"))
    await store.enqueue([message("inc-1:step-0:wecom:0", "wecom"),
                         message("inc-1:step-0:sms:0", "sms")])
    outbox.wake()
    await asyncio.sleep(1.2)
    await outbox.stop()
    assert [m["idempotency_key"] for m in receiver.messages] == ["inc-1:step-0:sms:0"]
    assert len(await store.list_messages()) == 2
