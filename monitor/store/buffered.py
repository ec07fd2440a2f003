"""A store that keeps the incident side working while the real store refuses writes.

A state file made read-only, a full disk, a database that stays locked: before this, no
incident could open (the status page said "OK" for a system that was hard down) and an
outage that ended before the store came back was never recorded nor notified. Here the
incident side writes through `BufferedStore`: a write the store refuses is kept in an
in-memory *journal*, in order, and every later write of the incident side queues behind it;
reads overlay what the journal holds on what the store answers, so the engine, the outbox
and the pages see the incidents, steps and messages that exist only in memory. The journal
is replayed, in order, as soon as the store takes writes again: incidents, timelines, plan
steps and messages reach the store with the times they happened at (an entry carries its
own time; the write time is never used) and the messages with the state they reached in
memory, so nothing already sent is sent again (same idempotency keys).

What is journalled: the incident side (incident numbers, incidents, timeline entries, plan
steps and their messages, messages enqueued, delivery state of messages) and check states.
Everything else (history buckets, forecast samples, heartbeats, silences, leadership) goes
straight to the store and fails as before; its callers keep and retry their own rows.

Bounded: at most `limit` entries of news (incident numbers, timeline entries, plan steps,
messages enqueued). Repeated writes of one incident, one message or the check states
coalesce into one entry each, bounded by what exists, and are never refused (refusing to
record a message that was just sent would send it again). News that finds the journal full
fails with `JournalFull` (as the store failed before this existed): no new incident opens,
no new step is sent, the engine retries every tick; counted in `refused`, logged once per
episode, named in the self-alert. Nothing already journalled is dropped; no crash.

Not a cure: what is only in memory is lost if hismon stops before the store is back
(`close` logs what is lost). A write that fails for another reason than the store (a bug,
bad data, `Fenced`) is raised, never journalled.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from monitor.core.models import Incident, OutboxMessage, Silence, TimelineEntry
from monitor.core.types import MessageStatus
from monitor.history.model import CheckBucket, SystemBucket, SystemWorst
from monitor.store.base import Fenced, StatesMark, Store

log = structlog.get_logger("hismon.store")

JOURNAL_LIMIT = 20_000
"""Journal entries held at most (about 2 kB each: a few tens of MB at worst)."""
REPLAY_EVERY = 1.0
"""Seconds between attempts to write the journal out while the store refuses it."""
NUMBER_CATCH_UP = 10_000
"""Replaying an incident number takes at most this many calls to the store's counter."""

_FAULTS = frozenset({"OperationalError", "InterfaceError", "InsufficientPrivilege",
                     "ReadOnlySqlTransaction", "DiskFull", "PoolTimeout"})


class JournalFull(RuntimeError):
    """The store refuses writes and the in-memory journal is full: this write is refused."""


def is_store_fault(exc: BaseException) -> bool:
    """True when the store cannot take a write (read-only, full, locked, unreachable, no
    rights) rather than the write being wrong: only such a write may wait in the journal.

    By class name, so neither sqlite3 nor psycopg must be imported here: sqlite3's and
    psycopg's `OperationalError`, psycopg's `InsufficientPrivilege` (a REVOKE),
    `ReadOnlySqlTransaction`, `DiskFull`, a pool timeout, a plain `DatabaseError`
    ("disk image is malformed"), OS and timeout errors. An integrity error, a type or
    encoding error and `Fenced` are not faults of the store.
    """
    if isinstance(exc, Fenced | JournalFull):
        return False
    if isinstance(exc, OSError | TimeoutError):
        return True
    if type(exc).__name__ == "DatabaseError":
        return True
    return any(cls.__name__ in _FAULTS for cls in type(exc).__mro__)


@dataclass(frozen=True, slots=True)
class Unrecorded:
    """Why and since when hismon cannot record, for pages, /readyz and the self-alert."""

    since: float
    waiting: int
    """Journal entries not in the store yet."""
    error: str
    refused: int
    """Writes refused because the journal was full (this episode)."""
    incidents: tuple[str, ...] = ()
    """Incidents whose latest state is only in memory."""


@dataclass(slots=True)
class _Op:
    kind: str
    key: str = ""
    args: tuple[Any, ...] = ()


def _message_state(m: OutboxMessage) -> tuple[Any, ...]:
    return (m.status, m.attempts, m.next_attempt_at, m.last_error, m.sent_at, m.answer)


class BufferedStore(Store):
    """Wraps a store (see the module docstring). Attributes the wrapper does not define
    (a PostgreSQL store's lease, membership and `fence`) are the inner store's."""

    def __init__(self, inner: Store, clock: Callable[[], float] = time.time,
                 limit: int = JOURNAL_LIMIT, replay_every: float | None = REPLAY_EVERY
                 ) -> None:
        object.__setattr__(self, "_inner", inner)
        self._clock = clock
        self._limit = limit
        self._replay_every = replay_every
        self._journal: deque[_Op] = deque()
        self._queued: set[tuple[str, str]] = set()
        """(kind, key) of coalesced entries now in the journal and not yet being written."""
        self._incidents: dict[str, Incident] = {}
        self._timeline: dict[str, list[TimelineEntry]] = {}
        self._steps: dict[str, dict[tuple[str, int], str]] = {}
        self._new: dict[str, OutboxMessage] = {}
        """Messages not in the store yet, by idempotency key (their latest state)."""
        self._updated: dict[str, OutboxMessage] = {}
        """Stored messages whose newer state is only here."""
        self._payload: set[str] = set()
        self._states: dict[str, dict[str, Any]] = {}
        self._last_number = 0
        self._since: float | None = None
        self._error = ""
        self._refused = 0
        self._replaying = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.recorded_total = 0
        """Journal entries written out since start (for logs and tests)."""

    # ---- the wrapper's own plumbing ------------------------------------------------------

    @property
    def inner(self) -> Store:
        return self._inner  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found here: the inner store's extras (lease, fence...).
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name in ("recorded_total",):
            object.__setattr__(self, name, value)
        else:  # `store.fence = ...` must reach the store that checks it
            setattr(self._inner, name, value)

    def unrecorded(self) -> Unrecorded | None:
        """None while everything is in the store."""
        if self._since is None:
            return None
        return Unrecorded(self._since, len(self._journal), self._error, self._refused,
                          tuple(sorted(self._incidents)))

    async def open(self) -> None:
        await self.inner.open()
        for incident in await self.inner.list_incidents(limit=500):
            self._seen_number(incident.id)
        if self._replay_every is not None:
            self._task = asyncio.create_task(self._replay_loop(), name="store-journal")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._journal:
            try:
                await asyncio.wait_for(self.replay(), 5.0)
            except Exception as exc:
                log.debug("store_journal_final_replay_failed", error=str(exc)[:200])
        if self._journal:
            log.error("store_journal_lost", entries=len(self._journal),
                      incidents=sorted(self._incidents)[:20],
                      reason="hismon stopped while the store refused writes")
        await self.inner.close()

    async def _replay_loop(self) -> None:
        assert self._replay_every is not None
        while True:
            await asyncio.sleep(self._replay_every)
            if self._journal:
                try:
                    await self.replay()
                except Exception as exc:  # never let the replayer die
                    log.error("store_journal_replay_failed",
                              error=f"{type(exc).__name__}: {exc}"[:300])

    def _seen_number(self, incident_id: str) -> None:
        tail = incident_id.rpartition("-")[2]
        if tail.isdigit():
            self._last_number = max(self._last_number, int(tail))

    # ---- journalling ---------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        """The store refused a write: the episode starts (or goes on)."""
        self._error = f"{type(exc).__name__}: {exc}"[:300]
        if self._since is None:
            self._since = self._clock()
            self._refused = 0
            log.error("store_refuses_writes", error=self._error,
                      action="incidents and messages go on from memory")

    def _room(self, entries: int = 1) -> None:
        if len(self._journal) + entries > self._limit:
            self._refused += 1
            if self._refused == 1:
                log.error("store_journal_full", entries=len(self._journal), limit=self._limit,
                          action="further incident writes fail until the store is back")
            raise JournalFull(f"the store refuses writes ({self._error}) and the journal "
                              f"holds {len(self._journal)} entries")

    def _append(self, op: _Op, coalesce: bool = False) -> None:
        """A coalesced entry (one per incident, per message, one for all check states) is
        never refused: they are bounded by what exists, and refusing the record of a
        message that was just sent would send it again."""
        if coalesce:
            if (op.kind, op.key) in self._queued:
                return
            self._queued.add((op.kind, op.key))
        else:
            self._room()
        self._journal.append(op)

    async def _write(self, direct: Callable[[], Any], journal: Callable[[], None]) -> bool:
        """Try `direct` when nothing waits, else (or when the store refuses) `journal`.

        Returns True when written to the store now, False when journalled.
        """
        if not self._journal:
            try:
                await direct()
            except Exception as exc:
                if not is_store_fault(exc):
                    raise
                self._fail(exc)
            else:
                self._written()
                return True
        journal()
        return False

    def _written(self) -> None:
        """A direct write went through: an episode whose journal stayed empty (every
        write refused as the journal was full) ends here."""
        if self._since is not None and not self._journal:
            self._recovered(0)

    # ---- the incident side, journalled -----------------------------------------------------

    async def next_incident_number(self) -> int:
        if not self._journal:
            try:
                number = await self.inner.next_incident_number()
                self._last_number = max(self._last_number, number)
                self._written()
                return number
            except Exception as exc:
                if not is_store_fault(exc):
                    raise
                self._fail(exc)
        self._room()
        self._last_number += 1
        self._append(_Op("number", args=(self._last_number,)))
        return self._last_number

    async def save_incident(self, incident: Incident) -> None:
        def journal() -> None:
            self._append(_Op("incident", incident.id), coalesce=True)
            self._incidents[incident.id] = copy.deepcopy(incident)

        await self._write(lambda: self.inner.save_incident(incident), journal)

    async def add_timeline(self, entry: TimelineEntry) -> None:
        def journal() -> None:
            self._append(_Op("timeline", entry.incident_id, (entry,)))
            self._timeline.setdefault(entry.incident_id, []).append(copy.deepcopy(entry))

        await self._write(lambda: self.inner.add_timeline(entry), journal)

    async def record_step(
        self, incident_id: str, step_key: str, occurrence: int, at: float, status: str,
        messages: list[OutboxMessage],
    ) -> bool:
        if not self._journal:
            try:
                done = await self.inner.record_step(incident_id, step_key, occurrence, at,
                                                    status, messages)
                self._written()
                return done
            except Exception as exc:
                if not is_store_fault(exc):
                    raise
                self._fail(exc)
        if (step_key, occurrence) in await self.steps_recorded(incident_id):
            return False
        self._room()
        keys = [m.idempotency_key for m in messages if m.idempotency_key not in self._new]
        self._append(_Op("step", incident_id, (step_key, occurrence, at, status, keys)))
        self._steps.setdefault(incident_id, {})[(step_key, occurrence)] = status
        for m in messages:
            self._new.setdefault(m.idempotency_key, copy.deepcopy(m))
        return True

    async def enqueue(self, messages: list[OutboxMessage]) -> int:
        if not self._journal:
            try:
                new = await self.inner.enqueue(messages)
                self._written()
                return new
            except Exception as exc:
                if not is_store_fault(exc):
                    raise
                self._fail(exc)
        keys = [m.idempotency_key for m in messages]
        known = {m.idempotency_key for m in await self._stored_by_keys(keys)}
        fresh = [m for m in messages if m.idempotency_key not in known
                 and m.idempotency_key not in self._new]
        if fresh:
            self._append(_Op("enqueue", args=([m.idempotency_key for m in fresh],)))
            for m in fresh:
                self._new[m.idempotency_key] = copy.deepcopy(m)
        return len(fresh)

    async def update_message(self, message: OutboxMessage) -> None:
        key = message.idempotency_key
        if key in self._new:
            self._new[key] = _with_state(self._new[key], message)
            return
        if message.id is None:  # sent from memory, written out while it was being sent
            found = await self._stored_by_keys([key])
            if found:
                message.id = found[0].id

        def journal() -> None:
            self._append(_Op("update", key), coalesce=True)
            self._updated[key] = copy.deepcopy(message)

        await self._write(lambda: self.inner.update_message(message), journal)

    async def update_payload(self, message: OutboxMessage) -> None:
        key = message.idempotency_key
        if key in self._new:
            self._new[key].payload = copy.deepcopy(message.payload)
            return
        if key in self._updated:
            self._updated[key].payload = copy.deepcopy(message.payload)

        def journal() -> None:
            self._append(_Op("update", key), coalesce=True)
            base = self._updated.get(key)
            self._updated[key] = _with_payload(base, message) if base is not None \
                else copy.deepcopy(message)
            self._payload.add(key)

        await self._write(lambda: self.inner.update_payload(message), journal)

    async def save_check_states(self, states: dict[str, dict[str, Any]]) -> None:
        def journal() -> None:
            self._append(_Op("states", "states"), coalesce=True)
            self._states.update(copy.deepcopy(states))

        await self._write(lambda: self.inner.save_check_states(states), journal)

    # ---- replay ------------------------------------------------------------------------------

    async def replay(self) -> int:
        """Write the journal out in order; stops at the first entry the store still refuses.

        Returns how many entries were written. Safe to call at any time (one at a time).
        """
        written = 0
        async with self._replaying:
            while self._journal:
                op = self._journal[0]
                self._queued.discard((op.kind, op.key))  # a newer write queues again
                try:
                    await self._replay_one(op)
                except Exception as exc:
                    if op.kind in ("incident", "update", "states"):
                        self._queued.add((op.kind, op.key))
                    if isinstance(exc, Fenced):
                        # Another instance leads now: it works from the store; what only
                        # this one knew is dropped, loudly (its messages were sent).
                        log.error("store_journal_fenced", entries=len(self._journal),
                                  incidents=sorted(self._incidents)[:20])
                        self._clear()
                        break
                    self._error = f"{type(exc).__name__}: {exc}"[:300]
                    break
                self._journal.popleft()
                written += 1
            if not self._journal and self._since is not None:
                self._recovered(written)
        self.recorded_total += written
        return written

    def _recovered(self, written: int) -> None:
        since = self._since or self._clock()
        log.warning("store_recorded", entries=written, incidents=sorted(self._incidents)[:20],
                    down_seconds=round(self._clock() - since, 1), refused=self._refused)
        self._clear()

    def _clear(self) -> None:
        self._journal.clear()
        self._queued.clear()
        self._incidents.clear()
        self._timeline.clear()
        self._steps.clear()
        self._new.clear()
        self._updated.clear()
        self._payload.clear()
        self._states.clear()
        self._since = None
        self._error = ""

    async def _replay_one(self, op: _Op) -> None:
        inner = self.inner
        if op.kind == "number":
            (wanted,) = op.args
            for _ in range(NUMBER_CATCH_UP):
                got = await inner.next_incident_number()
                if got >= wanted:
                    if got > wanted:
                        log.warning("incident_number_skew", wanted=wanted, store=got)
                    return
            return
        if op.kind == "incident":
            await inner.save_incident(self._incidents[op.key])
        elif op.kind == "timeline":
            await inner.add_timeline(op.args[0])
        elif op.kind == "step":
            step_key, occurrence, at, status, keys = op.args
            await self._insert(keys, lambda ms: inner.record_step(
                op.key, step_key, occurrence, at, status, ms))
        elif op.kind == "enqueue":
            (keys,) = op.args
            await self._insert(keys, inner.enqueue)
        elif op.kind == "update":
            message = self._updated[op.key]
            await inner.update_message(message)
            if op.key in self._payload:
                await inner.update_payload(message)
        elif op.kind == "states":
            await inner.save_check_states(dict(self._states))
        else:  # pragma: no cover
            raise TypeError(f"unknown journal entry {op.kind}")

    async def _insert(self, keys: list[str], write: Callable[[list[OutboxMessage]], Any]
                      ) -> None:
        """Insert messages in the state they reached in memory; a send that changed one
        while it was being inserted is written after it, as an update."""
        messages = [self._new[k] for k in keys if k in self._new]
        before = {m.idempotency_key: (m, _message_state(m)) for m in messages}
        await write(messages)
        for key, (inserted, state) in before.items():
            latest = self._new.pop(key, inserted)
            changed = latest is not inserted or _message_state(latest) != state
            if inserted.id is None:
                # Already in the store: the refused write had committed after all (its
                # answer was lost). The store's row must not stay behind what was sent.
                found = await self._stored_by_keys([key])
                if not found:
                    continue
                latest.id = found[0].id
                changed = changed or _message_state(found[0]) != _message_state(latest)
            else:
                latest.id = inserted.id
            if changed:
                self._updated[key] = latest
                self._journal.append(_Op("update", key))  # after this entry: in order
                self._queued.add(("update", key))

    # ---- reads, overlaid ---------------------------------------------------------------------

    async def _stored_by_keys(self, keys: list[str]) -> list[OutboxMessage]:
        try:
            return await self.inner.messages_by_keys(keys)
        except Exception as exc:
            if not is_store_fault(exc):
                raise
            return []

    async def get_incident(self, incident_id: str) -> Incident | None:
        held = self._incidents.get(incident_id)
        if held is not None:
            return copy.deepcopy(held)
        return await self.inner.get_incident(incident_id)

    async def list_incidents(
        self, status: str | None = None, since: float | None = None, limit: int = 500,
        system: str | None = None,
    ) -> list[Incident]:
        found = await self.inner.list_incidents(status=status, since=since, limit=limit,
                                                system=system)
        if not self._incidents:
            return found
        merged = {i.id: i for i in found if i.id not in self._incidents}
        for incident in self._incidents.values():
            if (status is None or incident.status == status) and (
                    system is None or incident.system == system) and (
                    since is None or incident.resolved_at is None
                    or incident.resolved_at >= since):
                merged[incident.id] = copy.deepcopy(incident)
        return sorted(merged.values(), key=lambda i: i.started_at, reverse=True)[:limit]

    async def timeline(self, incident_id: str) -> list[TimelineEntry]:
        stored = await self.inner.timeline(incident_id)
        return stored + [copy.deepcopy(e) for e in self._timeline.get(incident_id, [])]

    async def steps_recorded(self, incident_id: str) -> dict[tuple[str, int], str]:
        recorded = await self.inner.steps_recorded(incident_id)
        return recorded | self._steps.get(incident_id, {})

    def _overlay(self, stored: list[OutboxMessage]) -> list[OutboxMessage]:
        """Stored rows with the state memory holds for them (a row memory thought new is
        there when a refused write had committed after all: memory's state wins)."""
        out = []
        for m in stored:
            key = m.idempotency_key
            held = self._updated.get(key) or self._new.get(key)
            if held is None:
                out.append(m)
            else:
                copied = copy.deepcopy(held)
                copied.id = m.id
                out.append(copied)
        return out

    def _held(self, stored: list[OutboxMessage]) -> list[OutboxMessage]:
        """Messages only memory holds, minus those the store answered with."""
        seen = {m.idempotency_key for m in stored}
        return [copy.deepcopy(m) for m in self._new.values() if m.idempotency_key not in seen]

    async def pending_messages(self, notifier: str | None = None) -> list[OutboxMessage]:
        try:
            stored = self._overlay(await self.inner.pending_messages(notifier))
        except Exception as exc:
            if not (self._new and is_store_fault(exc)):
                raise
            stored = []  # what only memory holds still goes out
        held = [m for m in self._held(stored) if notifier is None or m.notifier == notifier]
        return [m for m in stored + held if m.status == MessageStatus.PENDING]

    async def list_messages(
        self, status: str | None = None, incident_id: str | None = None, limit: int = 500
    ) -> list[OutboxMessage]:
        stored = self._overlay(await self.inner.list_messages(status, incident_id, limit))
        if status is not None:
            stored = [m for m in stored if m.status == status]
        held = [m for m in reversed(self._held(stored))
                if (status is None or m.status == status)
                and (incident_id is None or m.incident_id == incident_id)]
        return (held + stored)[:limit]

    async def delivery_summary(self, since: float) -> list[tuple[str, str, str, int, float]]:
        rows = await self.inner.delivery_summary(since)
        if not self._new:
            return rows
        held: dict[tuple[str, str, str], tuple[int, float]] = {}
        for m in self._new.values():  # sent or given up on from memory
            if m.status != MessageStatus.PENDING and m.created_at >= since:
                count, newest = held.get((m.notifier, m.kind, m.status), (0, 0.0))
                held[(m.notifier, m.kind, m.status)] = (count + 1, max(newest, m.created_at))
        return rows + [(*key, count, newest) for key, (count, newest) in held.items()]

    async def messages_by_keys(self, keys: list[str]) -> list[OutboxMessage]:
        stored = self._overlay(await self.inner.messages_by_keys(keys))
        held = {m.idempotency_key: m for m in self._held(stored)}
        return stored + [held[k] for k in keys if k in held]

    async def load_check_states(self) -> dict[str, dict[str, Any]]:
        return await self.inner.load_check_states() | copy.deepcopy(self._states)

    async def load_check_states_since(
        self, mark: StatesMark | None
    ) -> tuple[dict[str, dict[str, Any]], StatesMark | None]:
        """The store's changes, and every state only held here (few: while it refuses)."""
        found, mark = await self.inner.load_check_states_since(mark)
        return found | copy.deepcopy(self._states), mark

    # ---- everything else goes straight to the store ------------------------------------------

    async def ping(self) -> None:
        await self.inner.ping()

    async def begin_attempt(self, message: OutboxMessage) -> float | None:
        if message.idempotency_key in self._new or self._journal:
            # Only a single writer journals; a shared store's fence is checked at replay.
            try:
                return await self.inner.begin_attempt(message)
            except Exception as exc:
                if not is_store_fault(exc):
                    raise
                return float("inf")
        return await self.inner.begin_attempt(message)

    async def save_silence(self, silence: Silence) -> None:
        await self.inner.save_silence(silence)

    async def delete_silence(self, silence_id: str) -> bool:
        return await self.inner.delete_silence(silence_id)

    async def list_silences(self) -> list[Silence]:
        return await self.inner.list_silences()

    async def save_heartbeat(self, check_id: str, at: float) -> None:
        await self.inner.save_heartbeat(check_id, at)

    async def load_heartbeats(self) -> dict[str, float]:
        return await self.inner.load_heartbeats()

    async def add_samples(self, rows: list[tuple[str, float, float]],
                          keep_since: dict[str, float]) -> None:
        await self.inner.add_samples(rows, keep_since)

    async def load_samples(self) -> dict[str, list[tuple[float, float]]]:
        return await self.inner.load_samples()

    async def link_key(self) -> bytes:
        return await self.inner.link_key()

    async def add_link_action(self, action: dict[str, Any], at: float) -> None:
        await self.inner.add_link_action(action, at)

    async def link_actions(self) -> list[tuple[int, dict[str, Any]]]:
        return await self.inner.link_actions()

    async def done_link_action(self, action_id: int) -> None:
        await self.inner.done_link_action(action_id)

    async def save_vantage(self, instance: str, states: dict[str, str], at: float) -> None:
        await self.inner.save_vantage(instance, states, at)

    async def load_vantage(self, since: float) -> dict[str, dict[str, str]]:
        return await self.inner.load_vantage(since)

    async def save_check_buckets(self, rows: list[CheckBucket]) -> None:
        await self.inner.save_check_buckets(rows)

    async def load_check_buckets(
        self, since: float, until: float | None = None, system: str | None = None
    ) -> list[CheckBucket]:
        return await self.inner.load_check_buckets(since, until, system)

    async def system_worst(self, since: float, until: float) -> list[SystemWorst]:
        return await self.inner.system_worst(since, until)

    async def history_marker(self) -> float | None:
        return await self.inner.history_marker()

    async def rollup_history(
        self, expected: float | None, upto: float, rows: list[SystemBucket]
    ) -> bool:
        return await self.inner.rollup_history(expected, upto, rows)

    async def load_system_buckets(
        self, resolution: str, since: float, until: float | None = None,
        system: str | None = None,
    ) -> list[SystemBucket]:
        return await self.inner.load_system_buckets(resolution, since, until, system)

    async def sum_system_buckets(
        self, resolution: str, since: float, until: float | None = None
    ) -> dict[str, SystemBucket]:
        return await self.inner.sum_system_buckets(resolution, since, until)

    async def prune_history(self, cutoffs: dict[str, float]) -> int:
        return await self.inner.prune_history(cutoffs)


def _with_state(held: OutboxMessage, value: OutboxMessage) -> OutboxMessage:
    """`held` with `value`'s delivery state (an update never changes the payload)."""
    out = copy.deepcopy(held)
    out.status, out.attempts, out.next_attempt_at = value.status, value.attempts, \
        value.next_attempt_at
    out.last_error, out.sent_at, out.answer = value.last_error, value.sent_at, value.answer
    return out


def _with_payload(held: OutboxMessage, value: OutboxMessage) -> OutboxMessage:
    out = copy.deepcopy(held)
    out.payload = copy.deepcopy(value.payload)
    return out
