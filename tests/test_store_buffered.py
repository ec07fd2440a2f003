"""The store journal (monitor/store/buffered.py): real SQLite, real refused writes.

The fault is real: the state file is made immutable (`chattr +i`, refused even for root,
see tests/store_faults.py), so SQLite itself answers "disk I/O error"; nothing is mocked.
The clock is injected; replay is called by the test (the background replayer is off).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.config.loader import load_config_text
from monitor.core.models import Incident, OutboxMessage, TimelineEntry
from monitor.core.types import MessageStatus, Severity
from monitor.store.base import Fenced
from monitor.store.buffered import BufferedStore, JournalFull, is_store_fault
from monitor.store.sqlite import SqliteStore
from tests.conftest import Clock
from tests.store_faults import can_make_immutable, read_only, set_read_only
from tests.test_engine import CONFIG, T0, World


class Env:
    def __init__(self, path: Path, clock: Clock, store: BufferedStore) -> None:
        self.path, self.clock, self.store = path, clock, store

    async def stored(self) -> SqliteStore:
        """A second connection to the file: what is really on disk."""
        fresh = SqliteStore(f"sqlite:///{self.path}")
        await fresh.open()
        return fresh


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    if not can_make_immutable(tmp_path):
        pytest.skip("chattr +i not available here (needs root on ext4)")
    path = tmp_path / "state.db"
    clock = Clock(T0)
    store = BufferedStore(SqliteStore(f"sqlite:///{path}"), clock, replay_every=None)
    await store.open()
    yield Env(path, clock, store)
    set_read_only(path, False)
    await store.close()


def incident(number: int, started: float) -> Incident:
    return Incident(id=f"INC-{number}", system="lis", severity=Severity.CRITICAL,
                    started_at=started, opened_at=started + 30)


def message(key: str, at: float, incident_id: str = "INC-1") -> OutboxMessage:
    return OutboxMessage(idempotency_key=key, notifier="it", kind="outage_it",
                         incident_id=incident_id, payload={"text": "LIS down"},
                         created_at=at, next_attempt_at=at)


async def test_refused_writes_wait_in_memory_and_reach_the_store_with_their_own_times(
        env: Env) -> None:
    store = env.store
    with read_only(env.path):
        env.clock.now = T0 + 100
        number = await store.next_incident_number()
        inc = incident(number, started=T0)
        await store.save_incident(inc)
        await store.add_timeline(TimelineEntry(inc.id, T0 + 100, "opened", "LIS down"))
        assert await store.record_step(inc.id, "0", 0, T0 + 100, "sent",
                                       [message(f"{inc.id}:0:it:0", T0 + 100, inc.id)])
        # The outage is live in every read, though nothing is on disk.
        held = store.unrecorded()
        assert held is not None and held.since == T0 + 100 and held.waiting == 4
        assert "I/O" in held.error or "readonly" in held.error
        assert [i.id for i in await store.list_incidents(status="open")] == [inc.id]
        assert (await store.get_incident(inc.id)).started_at == T0  # type: ignore[union-attr]
        assert [e.kind for e in await store.timeline(inc.id)] == ["opened"]
        assert await store.steps_recorded(inc.id) == {("0", 0): "sent"}
        pending = await store.pending_messages("it")
        assert [m.idempotency_key for m in pending] == [f"{inc.id}:0:it:0"]
        # The step went out from memory while the store still refused it.
        sent = pending[0]
        sent.status, sent.sent_at, sent.attempts = MessageStatus.SENT, T0 + 101, 1
        await store.update_message(sent)
        assert await store.pending_messages("it") == []
        # The same step again: already decided, nothing twice.
        assert not await store.record_step(inc.id, "0", 0, T0 + 102, "sent",
                                           [message(f"{inc.id}:0:it:0", T0 + 102, inc.id)])
        assert await store.replay() == 0, "the file still refuses writes"
        disk = await env.stored()
        assert await disk.get_incident(inc.id) is None
        await disk.close()
    env.clock.now = T0 + 600
    assert await store.replay() == 4
    assert store.unrecorded() is None
    disk = await env.stored()
    try:
        on_disk = await disk.get_incident(inc.id)
        assert on_disk is not None and on_disk.started_at == T0, "the outage's own start"
        assert [(e.kind, e.at) for e in await disk.timeline(inc.id)] == [("opened", T0 + 100)]
        assert await disk.steps_recorded(inc.id) == {("0", 0): "sent"}
        [row] = await disk.list_messages(incident_id=inc.id)
        assert (row.status, row.sent_at, row.attempts) == ("sent", T0 + 101, 1)
        assert await disk.pending_messages() == [], "a sent message is never sent again"
        assert await disk.next_incident_number() == number + 1, "the number was taken"
    finally:
        await disk.close()


async def test_a_stored_message_sent_while_the_store_refuses_is_not_sent_again(
        env: Env) -> None:
    store = env.store
    await store.enqueue([message("k1", T0)])
    with read_only(env.path):
        [pending] = await store.pending_messages("it")
        pending.status, pending.sent_at, pending.attempts = MessageStatus.SENT, T0 + 5, 1
        await store.update_message(pending)
        assert store.unrecorded() is not None
        assert await store.pending_messages("it") == []
        assert [m.status for m in await store.messages_by_keys(["k1"])] == ["sent"]
        # A retry recorded twice is one journal entry: the journal grows with news only.
        pending.attempts = 2
        await store.update_message(pending)
        assert store.unrecorded().waiting == 1  # type: ignore[union-attr]
    await store.replay()
    disk = await env.stored()
    [row] = await disk.messages_by_keys(["k1"])
    await disk.close()
    assert (row.status, row.attempts) == ("sent", 2)


async def test_incident_numbers_taken_in_memory_are_taken_in_the_store(env: Env) -> None:
    store = env.store
    first = await store.next_incident_number()
    with read_only(env.path):
        assert [await store.next_incident_number() for _ in range(2)] == [first + 1, first + 2]
    await store.replay()
    assert await store.next_incident_number() == first + 3


async def test_a_full_journal_refuses_new_writes_and_keeps_what_it_holds(
        tmp_path: Path) -> None:
    if not can_make_immutable(tmp_path):
        pytest.skip("chattr +i not available here")
    path = tmp_path / "state.db"
    store = BufferedStore(SqliteStore(f"sqlite:///{path}"), Clock(T0), limit=3,
                          replay_every=None)
    await store.open()
    try:
        await store.enqueue([message("k1", T0)])
        with read_only(path):
            for n in range(3):
                await store.add_timeline(TimelineEntry("INC-1", T0 + n, "note", f"n{n}"))
            with pytest.raises(JournalFull):
                await store.add_timeline(TimelineEntry("INC-1", T0 + 3, "note", "n3"))
            with pytest.raises(JournalFull):
                await store.next_incident_number()  # no new incident while full
            held = store.unrecorded()
            assert held is not None and (held.waiting, held.refused) == (3, 2)
            # What already exists is still recorded: never a sent message forgotten.
            await store.save_incident(incident(1, T0))
            [sent] = await store.pending_messages("it")
            sent.status = MessageStatus.SENT
            await store.update_message(sent)
            assert await store.pending_messages("it") == []
        await store.replay()
        assert [e.text for e in await store.timeline("INC-1")] == ["n0", "n1", "n2"]
        assert await store.get_incident("INC-1") is not None
        assert [m.status for m in await store.messages_by_keys(["k1"])] == ["sent"]
        assert store.unrecorded() is None
    finally:
        set_read_only(path, False)
        await store.close()


async def test_a_bad_write_is_raised_not_journalled(env: Env) -> None:
    # A lone surrogate cannot be encoded for SQLite: that is the write's fault, not the
    # store's; journalling it would block every write behind it for ever.
    with pytest.raises(UnicodeEncodeError):
        await env.store.add_timeline(TimelineEntry("INC-1", T0, "note", "eve \ud83d"))
    assert env.store.unrecorded() is None


def test_what_counts_as_a_store_fault() -> None:
    assert is_store_fault(sqlite3.OperationalError("attempt to write a readonly database"))
    assert is_store_fault(sqlite3.OperationalError("database or disk is full"))
    assert is_store_fault(OSError(28, "No space left on device"))
    assert not is_store_fault(sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert not is_store_fault(Fenced("term over"))
    assert not is_store_fault(ValueError("bad"))
    import psycopg

    assert is_store_fault(psycopg.errors.InsufficientPrivilege("permission denied"))
    assert is_store_fault(psycopg.OperationalError("connection refused"))
    assert not is_store_fault(psycopg.errors.UniqueViolation("dup"))


async def test_an_outage_that_ends_while_the_store_refuses_is_recorded_and_notified(
        tmp_path: Path) -> None:
    """The engine over the journal: the whole outage happens with a read-only state file."""
    if not can_make_immutable(tmp_path):
        pytest.skip("chattr +i not available here")
    path = tmp_path / "state.db"
    clock = Clock(T0)
    store = BufferedStore(SqliteStore(f"sqlite:///{path}"), clock, replay_every=None)
    await store.open()
    world = World(load_config_text(CONFIG, "t.yaml", {}), store, clock)  # type: ignore[arg-type]
    try:
        with read_only(path):
            await world.fail("lis-web")
            [opened] = world.engine.open.values()
            assert opened.started_at == T0 and opened.system == "lis"
            assert ("outage_it", "it") in await world.sent()
            await world.at(2)
            await world.heal("lis-web")
            assert world.engine.open == {}
            kinds = [k for k, _ in await world.sent()]
            assert kinds.count("outage_it") == 1 and "recovery" in kinds
            assert store.unrecorded() is not None
        clock.now = T0 + 600
        await store.replay()
        assert store.unrecorded() is None
        disk = SqliteStore(f"sqlite:///{path}")
        await disk.open()
        try:
            [resolved] = await disk.list_incidents(status="resolved")
            assert resolved.id == opened.id and resolved.started_at == T0
            assert resolved.resolved_at == T0 + 120
            kinds = [m.kind for m in await disk.list_messages(incident_id=resolved.id)]
            assert kinds.count("outage_it") == 1 and "recovery" in kinds
            timeline = [e.at for e in await disk.timeline(resolved.id)]
            assert timeline and max(timeline) <= T0 + 120, "entries keep their own times"
        finally:
            await disk.close()
        # After the replay the engine goes on against the store, sending nothing again.
        clock.now = T0 + 700
        await world.engine.tick()
        assert [k for k, _ in await world.sent()].count("outage_it") == 1
    finally:
        set_read_only(path, False)
        await store.close()


async def test_a_postgres_role_that_loses_its_write_rights_is_journalled_then_replayed(
) -> None:
    """A real fault on the real PostgreSQL: hismon's role loses INSERT and UPDATE on its
    tables (REVOKE, as a DBA's mistake or a read-only failover would do), keeps SELECT."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from psycopg import sql

    from monitor.store.postgres import PostgresStore
    from tests.test_store_contract import drop_schema, new_schema_name, require_pg

    base = require_pg()
    schema, role = new_schema_name(), f"hismon_rw_{uuid.uuid4().hex[:10]}"
    admin = await psycopg.AsyncConnection.connect(base, autocommit=True, connect_timeout=5)

    async def rights(statement: str) -> None:
        await admin.execute(sql.SQL(statement).format(s=sql.Identifier(schema),
                                                      r=sql.Identifier(role)))

    await rights("CREATE ROLE {r} LOGIN")
    database = await (await admin.execute("SELECT current_database()")).fetchone()
    assert database is not None
    await admin.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
        sql.Identifier(database[0]), sql.Identifier(role)))  # hismon makes its schema, owns it
    parts = urlsplit(base)
    user_url = urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rpartition('@')[2]}"))
    clock = Clock(T0)
    store = BufferedStore(PostgresStore(f"{user_url}?schema={schema}"), clock,
                          replay_every=None)
    try:
        await store.open()
        first = await store.next_incident_number()
        await rights("REVOKE INSERT, UPDATE ON ALL TABLES IN SCHEMA {s} FROM {r}")
        clock.now = T0 + 50
        number = await store.next_incident_number()
        assert number == first + 1
        inc = incident(number, started=T0)
        await store.save_incident(inc)
        assert await store.record_step(inc.id, "0", 0, T0 + 50, "sent",
                                       [message(f"{inc.id}:0:it:0", T0 + 50, inc.id)])
        held = store.unrecorded()
        assert held is not None and "permission denied" in held.error
        assert [i.id for i in await store.list_incidents(status="open")] == [inc.id]
        [pending] = await store.pending_messages("it")
        pending.status, pending.sent_at = MessageStatus.SENT, T0 + 51
        await store.update_message(pending)
        assert await store.replay() == 0
        await rights("GRANT INSERT, UPDATE ON ALL TABLES IN SCHEMA {s} TO {r}")
        # The incident and the step (its message sent from memory goes in as sent); the
        # number came from a sequence, which the REVOKE on tables does not touch.
        assert await store.replay() == 2
        assert store.unrecorded() is None
        check = PostgresStore(f"{base}?schema={schema}")
        await check.open()
        try:
            on_disk = await check.get_incident(inc.id)
            assert on_disk is not None and on_disk.started_at == T0
            [sent_row] = await check.list_messages(incident_id=inc.id)
            assert (sent_row.status, sent_row.sent_at) == ("sent", T0 + 51)
            assert await check.steps_recorded(inc.id) == {("0", 0): "sent"}
            assert await check.next_incident_number() == number + 1
        finally:
            await check.close()
    finally:
        await store.close()
        await drop_schema(schema)
        await rights("DROP OWNED BY {r}")
        await rights("DROP ROLE IF EXISTS {r}")
        await admin.close()


def test_it_is_told_hismon_cannot_record_after_the_grace_past_the_store() -> None:
    from monitor.runtime.selfwatch import UNRECORDED_GRACE, assess
    from monitor.store.buffered import Unrecorded

    now = T0
    early = Unrecorded(now - UNRECORDED_GRACE + 1, 3, "OperationalError: disk I/O error", 0)
    assert assess(now=now, unrecorded=early) == []
    late = Unrecorded(now - 95, 3, "OperationalError: disk I/O error", 0)
    [problem] = assess(now=now, unrecorded=late)
    assert problem.key == "store" and problem.direct, "past the store and the outbox"
    assert "cannot record" in problem.en and "1 min" in problem.en and "3 changes" in problem.en
    assert "无法记录" in problem.zh
    full = Unrecorded(now - 95, 20_000, "OperationalError: database or disk is full", 7)
    [problem] = assess(now=now, unrecorded=full)
    assert "journal full, 7 writes refused" in problem.en
    # Unreachable and refusing: one problem, the store's.
    both = assess(now=now, unrecorded=late, store_down_since=now - 120)
    assert [p.key for p in both] == ["store"] and "unreachable" in both[0].en


async def test_stopping_while_the_store_refuses_says_what_is_lost(tmp_path: Path) -> None:
    import structlog

    if not can_make_immutable(tmp_path):
        pytest.skip("chattr +i not available here")
    path = tmp_path / "state.db"
    store = BufferedStore(SqliteStore(f"sqlite:///{path}"), Clock(), replay_every=None)
    await store.open()
    await store.add_timeline(TimelineEntry("INC-1", T0, "note", "on disk"))
    try:
        with read_only(path):
            await store.save_incident(incident(1, T0))
            with structlog.testing.capture_logs() as logs:
                await store.close()  # no exception: a stop is never blocked by it
        lost = [e for e in logs if e["event"] == "store_journal_lost"]
        assert lost and lost[0]["entries"] == 1 and lost[0]["incidents"] == ["INC-1"]
    finally:
        set_read_only(path, False)


async def test_a_message_sent_while_the_replay_writes_it_is_recorded_as_sent(env: Env) -> None:
    """The replay's insert of a message is held up by a real lock on the file (another
    connection's write transaction) while the sender sends it from memory: the state the
    send reached must reach the store too, or a restart would send it again."""
    import asyncio
    import threading

    store = env.store
    with read_only(env.path):
        assert await store.record_step("INC-1", "0", 0, T0, "sent", [message("k1", T0)])
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(env.path, timeout=5, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(8)  # below the store's 10 s busy timeout: the replay waits, then goes on
        conn.execute("COMMIT")
        conn.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert await asyncio.to_thread(locked.wait, 5)
        replay = asyncio.create_task(store.replay())
        await asyncio.sleep(0.5)
        assert not replay.done(), "the replay waits for the lock"
        [pending] = await store.pending_messages("it")  # WAL: reads go on under the lock
        pending.status, pending.sent_at, pending.attempts = MessageStatus.SENT, T0 + 1, 1
        await store.update_message(pending)
    finally:
        release.set()
        await asyncio.to_thread(holder.join, 10)
    await asyncio.wait_for(replay, 20)
    assert store.unrecorded() is None
    disk = await env.stored()
    try:
        [row] = await disk.messages_by_keys(["k1"])
        assert (row.status, row.sent_at) == ("sent", T0 + 1)
        assert await disk.pending_messages() == []
    finally:
        await disk.close()
