"""Deliver outbox messages: one sender per notifier, retries with backoff, fallback, max_age.

Every message is in the store before the first attempt, so a crash or restart resumes
delivery. A sender works through its own notifier's queue only: a channel that hangs
or fails delays its own messages and nobody else's. Nothing is dropped silently: a
message that cannot be delivered is marked `undeliverable`, counted, logged, shown by
the API, and handed to the notifier's `fallback` if it has one.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import httpx
import structlog

from monitor.config.model import Config
from monitor.core.models import OutboxMessage
from monitor.core.text import scrub
from monitor.core.types import DeliveryResult, MessageKind, MessageStatus
from monitor.delivery import grouping
from monitor.delivery.grouped import grouped_outgoing
from monitor.delivery.messages import MessageRenderer
from monitor.delivery.ratelimit import Pacer
from monitor.store.base import Fenced, Store
from notifiers.base import DeliveryError, NotifierBase, NotifyContext, OutgoingMessage

log = structlog.get_logger("hismon.outbox")
Clock = Callable[[], float]
ResultHook = Callable[[str, str, str], None]
"""(notifier, kind, result) for hismon_notifications_total."""


STOP_GRACE = 1.0
"""Seconds `stop` lets a send under way finish and be recorded."""
MIN_SEND_WINDOW = 1.0
"""A leader starts a send only with the notifier's timeout, or at least this many seconds,
left on its lease; the send is cut when the lease would end."""


def backoff(attempts: int, initial: float, max_delay: float, rng: random.Random) -> float:
    """Exponential backoff with ±20% jitter so retries of many messages do not align."""
    delay = min(initial * (2 ** max(attempts - 1, 0)), max_delay)
    return float(delay * rng.uniform(0.8, 1.2))


def fallback_keys(message: OutboxMessage, fallback: str) -> tuple[str | None, str]:
    """(key of the step's own message to `fallback`, or None; key of the fallback copy).

    A step's key is `incident:step:R:occurrence` (a maintenance notice's `maint:window:R`)
    where R is the notifier, or `person:ID/notifier` for a person: the copy's key leaves
    the failed primary out, so every primary of one step shares one copy, and names whom
    the message was for (the person, the department, else the fallback itself). A key of
    another shape gets a copy of its own.
    """
    key, notifier = message.idempotency_key, message.notifier
    person = message.payload.get("person")
    person_id = person.get("id") if isinstance(person, dict) else None
    part = f"person:{person_id}/{notifier}" if person_id else notifier
    direct = f"person:{person_id}/{fallback}" if person_id else fallback
    head, sep, occurrence = key.rpartition(":")
    if sep and occurrence.isdigit() and head.endswith(f":{part}"):
        prefix, suffix = head[: -len(part) - 1], f":{occurrence}"
    elif key.endswith(f":{part}"):
        prefix, suffix = key[: -len(part) - 1], ""
    else:
        return None, f"{key}:fallback:{fallback}"
    recipient = (f"person:{person_id}" if person_id else None) \
        or message.payload.get("department") or fallback
    return f"{prefix}:{direct}{suffix}", f"{prefix}:fallback:{fallback}:{recipient}{suffix}"


def secrets_of(notifier: NotifierBase, messages: list[OutboxMessage]) -> list[str]:
    """What an error text must not show: the channel's secrets and the signed link tokens
    of the messages (a gateway that echoes the body it refused would put them in
    `last_error`, which the API and the log show; SPEC 13.2: tokens never appear there)."""
    found = list(notifier.secrets())
    for message in messages:
        links = message.payload.get("links")
        for url in links.values() if isinstance(links, dict) else []:
            found.append(str(url).rsplit("/", 1)[-1])
    return found


URGENT_KINDS: frozenset[MessageKind] = frozenset({
    MessageKind.EARLY_WARNING, MessageKind.OUTAGE_IT, MessageKind.DEPARTMENT_OUTAGE,
    MessageKind.LEADERSHIP_REPORT, MessageKind.VENDOR_ESCALATION})
"""Kinds that fall back after `fallback_after` instead of after `max_age` (SPEC 6)."""
FELL_BACK = "fell_back"
"""Payload flag: this message has already been handed to its fallback (once is enough)."""


FALLBACK_NOTE = {
    "en": "(Sent to {fallback} because {channels} could not deliver it.)",
    "zh": "（{channels} 未能送达，改由 {fallback} 发送。）",
}


def fallback_note(failed: list[str], fallback: str, language: str) -> str:
    """The line a fallback copy ends with: which channels could not deliver it."""
    joiner = "、" if language == "zh" else ", "
    note = FALLBACK_NOTE.get(language, FALLBACK_NOTE["en"])
    return note.format(channels=joiner.join(failed), fallback=fallback)


def outgoing_message(message: OutboxMessage, language: str = "en") -> OutgoingMessage:
    """What the channel is handed; a fallback copy's text ends naming what failed."""
    payload = message.payload
    text = str(payload.get("text", ""))
    failed = payload.get("failed_channels")
    if failed:
        links = str(payload.get("links_text") or "")
        if not (links and text.endswith(links)):
            links = ""
        body = text[: len(text) - len(links)]
        # The signed links stay last, where a length limit never cuts (SPEC 13.2).
        text = f"{body}\n\n" + fallback_note(failed, message.notifier, language) + links
    return OutgoingMessage(
        kind=message.kind, idempotency_key=message.idempotency_key,
        recipient=payload.get("recipient", message.notifier),
        title=payload.get("title", ""), text=text,
        incident=payload.get("incident"), drill=bool(payload.get("drill")),
        status_url=payload.get("status_url"),
        extra={k: payload[k] for k in ("person", "links", "links_text") if payload.get(k)})


class Sender:
    def __init__(self, outbox: Outbox, notifier: NotifierBase) -> None:
        self.outbox = outbox
        self.notifier = notifier
        self.wakeup = asyncio.Event()
        self.limiter = Pacer.for_notifier(notifier)
        self.pending = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Clear before the pass: a wake-up arriving during the pass must not be lost.
            self.wakeup.clear()
            try:
                wait = await self.pass_once()
            except Exception as exc:  # store hiccup: keep the sender alive, retry soon
                log.error("outbox_pass_failed", notifier=self.notifier.id, error=str(exc)[:200])
                wait = 2.0
            try:
                await asyncio.wait_for(self.wakeup.wait(), timeout=max(wait, 0.05))
            except TimeoutError:
                pass

    async def pass_once(self) -> float:
        """Try every due message (or group, SPEC 6) once; return how long until the next."""
        store, clock = self.outbox.store, self.outbox.clock
        messages = await store.pending_messages(self.notifier.id)
        self.pending = len(messages)
        window = self.outbox.config.alerting.group_window
        if not grouping.groupable(self.notifier.groups_messages, window):
            window = 0.0
        batches, next_due = grouping.plan(messages, clock(), window)
        for batch in batches:
            if self.outbox.stopping:
                break
            now = clock()
            if self.limiter is not None:
                wait = self.limiter.wait_time(now)
                if wait > 0:
                    log.info("rate_limited", notifier=self.notifier.id, wait_seconds=round(wait, 1))
                    return wait
            if batch.grouped:
                await self.deliver_group(batch)
            else:
                await self.deliver(batch.members[0])
            if self.limiter is not None:
                # Counted from when the send ended: the channel counts arrivals, and an
                # arrival is never earlier than that (a window from the start would let a
                # slow first send put six in Feishu's second).
                self.limiter.record(clock())
            for message in batch.members:
                if message.status != "pending":
                    self.pending -= 1
                else:
                    next_due = min(next_due, message.next_attempt_at - clock())
        return next_due

    async def deliver(self, message: OutboxMessage) -> None:
        notifier, outbox = self.notifier, self.outbox
        outgoing = outgoing_message(message, outbox.config.site.language)
        now = outbox.clock()
        message.attempts += 1
        lease_left = await outbox.store.begin_attempt(message)
        if lease_left is None or lease_left < min(notifier.timeout, MIN_SEND_WINDOW):
            # Another instance leads now, or our lease is about to end: leave it untouched.
            message.attempts -= 1
            log.warning("send_fenced", notifier=notifier.id, incident=message.incident_id,
                        kind=message.kind)
            raise Fenced("leadership term over")
        ignored = notifier.ignores(outgoing)
        if ignored is not None:
            # Meaningless for this channel (Alertmanager and a maintenance notice): recorded
            # as done, counted apart, so that "sent" means someone received it.
            message.attempts -= 1
            message.status, message.sent_at = MessageStatus.SENT, now
            message.answer, message.last_error = f"skipped: {ignored}"[:200], None
            await outbox.store.update_message(message)
            outbox.count(notifier.id, message.kind, DeliveryResult.SKIPPED)
            log.info("message_skipped", notifier=notifier.id, kind=message.kind,
                     incident=message.incident_id, key=message.idempotency_key, why=ignored)
            return
        try:
            # A send never outlives the leadership that started it (SPEC 9 fencing).
            async with asyncio.timeout(min(notifier.timeout + 1, lease_left)):
                answer = await notifier.send(outgoing, outbox.notify_context)
        except DeliveryError as exc:
            message.last_error = scrub(str(exc), secrets_of(notifier, [message]))[:500]
            await self._failed(message, exc.permanent, now)
            return
        except TimeoutError:
            message.last_error = f"timeout after {notifier.timeout:g}s"
            await self._failed(message, False, now)
            return
        except Exception as exc:
            # Not a failure the channel understood: a bug, which retrying for `max_age`
            # would only hide. Permanent, so the fallback has the message at once.
            message.last_error = scrub(f"{type(exc).__name__}: {exc}",
                                       secrets_of(notifier, [message]))[:500]
            log.error("notifier_bug", notifier=notifier.id, kind=message.kind,
                      incident=message.incident_id, error=message.last_error)
            await self._failed(message, True, now)
            return
        message.status, message.sent_at, message.answer = MessageStatus.SENT, now, answer[:200]
        message.last_error = None
        await outbox.store.update_message(message)
        outbox.count(notifier.id, message.kind, DeliveryResult.SENT)
        outbox.on_sent(message)
        log.info("message_sent", notifier=notifier.id, kind=message.kind,
                 incident=message.incident_id, key=message.idempotency_key,
                 attempts=message.attempts)

    async def _failed(self, message: OutboxMessage, permanent: bool, now: float) -> None:
        notifier, outbox = self.notifier, self.outbox
        too_old = now - message.created_at >= notifier.retry.max_age
        if permanent or too_old:
            message.status = MessageStatus.FAILED if permanent else MessageStatus.UNDELIVERABLE
            await outbox.store.update_message(message)
            outbox.count(notifier.id, message.kind, DeliveryResult(message.status))
            log.error("message_undeliverable", notifier=notifier.id, kind=message.kind,
                      incident=message.incident_id, key=message.idempotency_key,
                      error=message.last_error, attempts=message.attempts,
                      fallback=notifier.fallback)
            await self._fall_back(message, now)
            return
        message.next_attempt_at = now + backoff(
            message.attempts, notifier.retry.initial, notifier.retry.max_delay, outbox.rng)
        if self._falls_back_in_time(message):
            fallback_at = message.created_at + notifier.fallback_after
            if now >= fallback_at:
                await self._fall_back(message, now)
            else:
                # The attempt that decides the fallback comes on time, not a backoff later.
                message.next_attempt_at = min(message.next_attempt_at, fallback_at)
        await outbox.store.update_message(message)
        outbox.count(notifier.id, message.kind, DeliveryResult.RETRY)
        log.warning("message_retry", notifier=notifier.id, kind=message.kind,
                    incident=message.incident_id, error=message.last_error,
                    attempts=message.attempts,
                    retry_in=round(message.next_attempt_at - now, 1))

    async def deliver_group(self, batch: grouping.Batch) -> None:
        """One send for every member (SPEC 6); each member is marked with its outcome.

        The members are bound (persisted) before the first attempt, so a retry or a
        restarted daemon sends the same group under the same key."""
        notifier, outbox = self.notifier, self.outbox
        members = list(batch.members)
        for member in grouping.bind(batch):
            await outbox.store.update_payload(member)
        failed = list(dict.fromkeys(
            str(c) for m in members for c in m.payload.get("failed_channels") or []))
        note = fallback_note(failed, notifier.id, outbox.config.site.language) if failed \
            else ""
        outgoing = grouped_outgoing(batch, outbox.config, outbox.renderer, notifier, note)
        now = outbox.clock()
        lease_left = await outbox.store.begin_attempt(members[0])
        if lease_left is None or lease_left < min(notifier.timeout, MIN_SEND_WINDOW):
            log.warning("send_fenced", notifier=notifier.id, key=batch.key,
                        kind=members[0].kind)
            raise Fenced("leadership term over")
        for member in members:
            member.attempts += 1
        error, permanent = None, False
        try:
            async with asyncio.timeout(min(notifier.timeout + 1, lease_left)):
                answer = await notifier.send(outgoing, outbox.notify_context)
        except DeliveryError as exc:
            error = scrub(str(exc), secrets_of(notifier, members))[:500]
            permanent = exc.permanent
        except TimeoutError:
            error = f"timeout after {notifier.timeout:g}s"
        except Exception as exc:  # a bug: permanent, as for one message (see `deliver`)
            error = scrub(f"{type(exc).__name__}: {exc}", secrets_of(notifier, members))[:500]
            permanent = True
            log.error("notifier_bug", notifier=notifier.id, kind=members[0].kind,
                      key=batch.key, error=error)
        incidents = [m.incident_id for m in members]
        if error is not None:
            log.warning("group_failed", notifier=notifier.id, kind=members[0].kind,
                        key=batch.key, incidents=incidents, error=error)
            for member in members:
                member.last_error = error
                await self._failed(member, permanent, now)
            return
        for member in members:
            member.status, member.sent_at, member.last_error = MessageStatus.SENT, now, None
            member.answer = f"{answer} (in {batch.key}, {len(members)} messages)"[:200]
            await outbox.store.update_message(member)
            outbox.count(notifier.id, member.kind, DeliveryResult.SENT)
            outbox.on_sent(member)
        log.info("group_sent", notifier=notifier.id, kind=members[0].kind, key=batch.key,
                 incidents=incidents, members=len(members),
                 attempts=max(m.attempts for m in members))

    def _falls_back_in_time(self, message: OutboxMessage) -> bool:
        """An urgent message with a fallback not yet used (SPEC 6: fallback in time)."""
        return bool(self.notifier.fallback) and message.kind in URGENT_KINDS \
            and not message.payload.get(FELL_BACK)

    async def _fall_back(self, message: OutboxMessage, now: float) -> None:
        """Hand to the fallback once per message; the flag survives a restart."""
        fallback = self.notifier.fallback
        if not fallback or message.payload.get(FELL_BACK):
            return
        message.payload[FELL_BACK] = True
        await self.outbox.store.update_payload(message)
        await self.outbox.hand_to_fallback(message, fallback, now)


class Outbox:
    def __init__(self, config: Config, store: Store, clock: Clock = time.time,
                 on_result: ResultHook | None = None,
                 allowed: Callable[[str], bool] | None = None) -> None:
        self.config = config
        self.allowed = allowed or (lambda notifier: True)
        """Notifiers this outbox may deliver to; a drill allows only `drill: true` ones, so
        neither a sender nor a fallback ever reaches a real channel (SPEC §10)."""
        self.store = store
        self.clock = clock
        self.on_result = on_result or (lambda n, k, r: None)
        self.on_sent: Callable[[OutboxMessage], None] = lambda message: None
        """Told of each delivered message (the engine starts a vendor's SLA clock, 13.4)."""
        self.rng = random.Random()
        self.http = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        self.notify_context = NotifyContext(http=self.http, site_name=config.site.name)
        self.renderer = MessageRenderer()
        """Renders a group's text (the built-in `group_*` templates; SPEC 6)."""
        self.senders: dict[str, Sender] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def count(self, notifier: str, kind: str, result: str) -> None:
        self.on_result(notifier, kind, result)

    @property
    def pending(self) -> int:
        return sum(s.pending for s in self.senders.values())

    def start(self) -> None:
        for notifier in self.config.notifiers:
            if self.allowed(notifier.id):
                self._start_sender(notifier)

    def _start_sender(self, notifier: NotifierBase) -> None:
        sender = Sender(self, notifier)
        self.senders[notifier.id] = sender
        self._tasks[notifier.id] = asyncio.create_task(
            sender.run(self._stop), name=f"outbox-{notifier.id}")

    def apply_config(self, config: Config) -> None:
        """Reload: new notifiers get a sender, changed ones their new settings."""
        self.config = config
        self.notify_context.site_name = config.site.name
        for notifier in config.notifiers:
            if notifier.id in self.senders:
                self.senders[notifier.id].notifier = notifier
            elif self.allowed(notifier.id):
                self._start_sender(notifier)
        self.wake()

    def wake(self) -> None:
        for sender in self.senders.values():
            sender.wakeup.set()

    async def hand_to_fallback(self, message: OutboxMessage, fallback: str, now: float) -> None:
        """One copy per step, fallback and recipient, however many primaries failed (SPEC 6).

        None when the fallback was itself a direct recipient of the step. A primary failing
        after the copy was queued adds its name to the copy's list of failed channels while
        the copy is still pending.
        """
        if not self.allowed(fallback):
            log.warning("message_fallback_refused", notifier=message.notifier,
                        fallback=fallback, key=message.idempotency_key, reason="drill")
            return
        direct_key, copy_key = fallback_keys(message, fallback)
        if direct_key is not None and await self.store.messages_by_keys([direct_key]):
            log.info("message_fallback_not_needed", notifier=message.notifier,
                     fallback=fallback, key=message.idempotency_key)
            return
        copy = OutboxMessage(
            idempotency_key=copy_key, notifier=fallback, kind=message.kind,
            incident_id=message.incident_id,
            payload={k: v for k, v in message.payload.items()
                     if k not in (FELL_BACK, grouping.GROUP)}
            | {"failed_channels": [message.notifier]},
            created_at=now, next_attempt_at=now)
        if await self.store.enqueue([copy]):
            log.warning("message_fallback", notifier=message.notifier, fallback=fallback,
                        key=message.idempotency_key)
            self.wake()
            return
        # Another primary of the same step failed first: its copy names this one too.
        for existing in await self.store.messages_by_keys([copy_key]):
            failed = list(existing.payload.get("failed_channels") or [])
            if existing.status == MessageStatus.PENDING and message.notifier not in failed:
                existing.payload["failed_channels"] = [*failed, message.notifier]
                await self.store.update_payload(existing)
            log.info("message_fallback_joined", notifier=message.notifier, fallback=fallback,
                     key=copy_key)

    async def stop(self) -> None:
        """Idempotent: a leadership change and the daemon's shutdown may both call it."""
        if self._stop.is_set() and self.http.is_closed:
            return
        self._stop.set()
        self.wake()
        # A send under way may finish and be recorded (else a restart sends it again);
        # senders see the stop between messages. Whatever still runs then is cancelled.
        running = [t for t in self._tasks.values() if not t.done()]
        if running:
            await asyncio.wait(running, timeout=STOP_GRACE)
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await self.http.aclose()
