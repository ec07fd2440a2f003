"""One contract for every Store backend: SQLite (a temp file) and a real PostgreSQL.

Each PostgreSQL test gets a fresh schema (``?schema=hismon_test_…``), dropped afterwards.
Settings: HISMON_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/test, trust
auth; if user postgres cannot connect, user root is tried). The PostgreSQL cases are
skipped, with the reason, when no server answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest

from monitor.core.models import Incident, OutboxMessage, Silence, TimelineEntry
from monitor.store import Store, open_store
from monitor.store.base import StatesMark

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@functools.cache
def pg_base_url() -> str | None:
    """The first PostgreSQL URL that accepts a connection, or None (tests skip)."""
    try:
        import psycopg
    except ImportError:
        return None
    configured = os.environ.get("HISMON_TEST_PG_URL")
    candidates = [configured] if configured else [
        DEFAULT_PG_URL, DEFAULT_PG_URL.replace("postgres@", "root@", 1)]
    for url in candidates:
        try:
            psycopg.connect(url, connect_timeout=3).close()
        except Exception:
            continue
        return url
    return None


def with_params(url: str, **params: str) -> str:
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{url}{'&' if '?' in url else '?'}{extra}"


def new_schema_name() -> str:
    return f"hismon_test_{uuid.uuid4().hex[:12]}"


async def drop_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    base = pg_base_url()
    assert base is not None
    async with await psycopg.AsyncConnection.connect(base, autocommit=True,
                                                     connect_timeout=5) as admin:
        await admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(schema)))


async def terminate_backends(application_name: str) -> int:
    """Kill the server sessions of one store, as a server restart would."""
    import psycopg

    base = pg_base_url()
    assert base is not None
    async with await psycopg.AsyncConnection.connect(base, autocommit=True,
                                                     connect_timeout=5) as admin:
        cur = await admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()", (application_name,))
        row = await cur.fetchone()
        return int(row[0]) if row else 0


def require_pg() -> str:
    base = pg_base_url()
    if base is None:
        pytest.skip("PostgreSQL not reachable (start it, or set HISMON_TEST_PG_URL)")
    return base


StoreFactory = Callable[..., Store]


@pytest.fixture(params=["sqlite", "postgres"])
async def make_store(request: pytest.FixtureRequest,
                     tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """A factory of stores over ONE state (file or schema): several instances, restarts.

    `make_store(app="name")` names the PostgreSQL session (application_name) so a test
    can terminate it. Every store made is closed, and the schema dropped, at the end.
    """
    made: list[Store] = []
    schema: str | None = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        schema = new_schema_name()
        url = with_params(require_pg(), schema=schema)

    def factory(app: str | None = None, **params: str) -> Store:
        full = url
        if schema is not None:
            full = with_params(url, application_name=app or f"{schema}_s{len(made)}", **params)
        store = open_store(full)
        made.append(store)
        return store

    factory.backend = request.param  # type: ignore[attr-defined]
    factory.url = url  # type: ignore[attr-defined]
    factory.schema = schema  # type: ignore[attr-defined]
    try:
        yield factory
    finally:
        for store in made:
            await store.close()
        if schema is not None:
            await drop_schema(schema)


@pytest.fixture
async def store(make_store: StoreFactory) -> Store:
    s = make_store()
    await asyncio.wait_for(s.open(), 20)
    return s


def incident(n: int, **kw: Any) -> Incident:
    base: dict[str, Any] = dict(id=f"inc-{n}", system=f"sys-{n}", severity="critical",
                                started_at=1000.0 + n, opened_at=1010.0 + n)
    base.update(kw)
    return Incident(**base)


def message(key: str, notifier: str = "wecom", incident_id: str | None = "inc-1",
            **kw: Any) -> OutboxMessage:
    created = kw.pop("created_at", 5.0)
    return OutboxMessage(idempotency_key=key, notifier=notifier, kind="outage_it",
                         payload={"title": "门诊医生站 故障", "text": f"msg {key}",
                                  "recipient": notifier, "incident": {"id": incident_id}},
                         incident_id=incident_id, created_at=created, next_attempt_at=5.0,
                         **kw)


# ---- incidents ----------------------------------------------------------------------


async def test_incident_round_trip_and_update(store: Store) -> None:
    inc = incident(1, suspected_cause="database", cause_evidence=["db down"],
                   affected_departments=["emergency", "发热门诊"],
                   failing_checks=[{"id": "his-db", "state": "CRIT", "message": "refused"}],
                   drill=False, plan_started_at=1001.5)
    await store.save_incident(inc)
    assert await store.get_incident("inc-1") == inc
    assert await store.get_incident("nope") is None

    inc.status, inc.resolved_at, inc.acknowledged_by = "resolved", 2000.0, "张医生"
    await store.save_incident(inc)
    again = await store.get_incident("inc-1")
    assert again == inc
    assert len(await store.list_incidents()) == 1


async def test_list_incidents_by_status_since_and_order(store: Store) -> None:
    await store.save_incident(incident(1, status="resolved", resolved_at=1500.0))
    await store.save_incident(incident(2, status="resolved", resolved_at=5000.0))
    await store.save_incident(incident(3))
    await store.save_incident(incident(4, started_at=900.0))

    everything = await store.list_incidents()
    assert [i.id for i in everything] == ["inc-3", "inc-2", "inc-1", "inc-4"]  # newest first
    assert {i.id for i in await store.list_incidents(status="open")} == {"inc-3", "inc-4"}
    assert [i.id for i in await store.list_incidents(status="resolved")] == ["inc-2", "inc-1"]
    # since: still open, or resolved at/after the cut-off
    assert [i.id for i in await store.list_incidents(since=4000.0)] == ["inc-3", "inc-2",
                                                                        "inc-4"]
    assert [i.id for i in await store.list_incidents(status="resolved", since=4000.0)] == \
        ["inc-2"]
    assert [i.id for i in await store.list_incidents(limit=2)] == ["inc-3", "inc-2"]


async def test_list_incidents_of_one_system_before_the_limit(store: Store) -> None:
    """The system page asks for one system's incidents: newer ones of other systems must
    not push its own past the limit (a hospital-wide list cut at 500 did)."""
    for n in (1, 2):
        await store.save_incident(incident(n, system="his", status="resolved",
                                           resolved_at=2000.0 + n))
    for n in range(3, 9):
        await store.save_incident(incident(n, system="lis"))
    assert [i.id for i in await store.list_incidents(limit=2, system="his")] == [
        "inc-2", "inc-1"]
    assert [i.id for i in await store.list_incidents(since=2001.5, system="his")] == ["inc-2"]
    assert [i.id for i in await store.list_incidents(status="open", system="his")] == []
    assert len(await store.list_incidents(system="lis")) == 6


async def test_next_incident_number_counts_up(store: Store) -> None:
    assert [await store.next_incident_number() for _ in range(3)] == [1, 2, 3]


async def test_next_incident_number_unique_under_50_concurrent_calls(
        make_store: StoreFactory) -> None:
    """Two instances on one store, 25 concurrent calls each: 50 distinct numbers."""
    first, second = make_store(), make_store()
    await first.open()
    await second.open()
    calls = [s.next_incident_number() for s in (first, second) for _ in range(25)]
    numbers = await asyncio.wait_for(asyncio.gather(*calls), 30)
    assert len(set(numbers)) == 50
    assert sorted(numbers) == list(range(1, 51))


# ---- timeline -------------------------------------------------------------------------


async def test_timeline_keeps_insertion_order(store: Store) -> None:
    entries = [
        TimelineEntry("inc-1", 30.0, "opened", "opened", {"severity": "critical"}),
        TimelineEntry("inc-1", 10.0, "step", "sent outage_it", {"to": ["wecom"]}),
        TimelineEntry("inc-2", 5.0, "opened", "other incident"),
        TimelineEntry("inc-1", 10.0, "ack", "已确认 by 李工", {"by": "李工", "n": 1.5}),
    ]
    for e in entries:
        await store.add_timeline(e)
    assert await store.timeline("inc-1") == [entries[0], entries[1], entries[3]]
    assert await store.timeline("inc-2") == [entries[2]]
    assert await store.timeline("none") == []


# ---- plan steps and the outbox -------------------------------------------------------


async def test_record_step_enqueues_once(store: Store) -> None:
    msgs = [message("inc-1:s1:wecom:0"), message("inc-1:s1:sms:0", notifier="sms")]
    assert await store.record_step("inc-1", "s1", 0, 100.0, "sent", msgs) is True
    assert all(m.id is not None for m in msgs)
    assert await store.steps_recorded("inc-1") == {("s1", 0): "sent"}

    # The same occurrence again (another tick, a restart, another instance): refused,
    # and its messages, even ones with new keys, are not enqueued.
    again = [message("inc-1:s1:wecom:0"), message("inc-1:s1:email:0", notifier="email")]
    assert await store.record_step("inc-1", "s1", 0, 101.0, "sent", again) is False
    assert again[1].id is None
    pending = await store.pending_messages()
    assert [m.idempotency_key for m in pending] == ["inc-1:s1:wecom:0", "inc-1:s1:sms:0"]

    # The next occurrence of a repeating step is a new record.
    assert await store.record_step("inc-1", "s1", 1, 200.0, "sent",
                                   [message("inc-1:s1:wecom:1")]) is True
    assert await store.record_step("inc-1", "s2", 0, 200.0, "skipped", []) is True
    assert await store.steps_recorded("inc-1") == {
        ("s1", 0): "sent", ("s1", 1): "sent", ("s2", 0): "skipped"}
    assert await store.steps_recorded("inc-2") == {}
    assert len(await store.pending_messages()) == 3


async def test_record_step_is_atomic(store: Store) -> None:
    """A failure while enqueueing leaves neither the step nor any of its messages."""
    good = message("inc-1:s1:wecom:0")
    bad = message("inc-1:s1:sms:0", notifier="sms")
    bad.payload["unserialisable"] = {1, 2}  # a set: JSON encoding fails mid-transaction
    with pytest.raises(Exception):  # noqa: B017 - each backend raises its own type
        await store.record_step("inc-1", "s1", 0, 100.0, "sent", [good, bad])
    assert await store.steps_recorded("inc-1") == {}
    assert await store.list_messages() == []
    # The store is still usable, and the step can be recorded properly now.
    del bad.payload["unserialisable"]
    assert await store.record_step("inc-1", "s1", 0, 100.0, "sent", [good, bad]) is True
    assert len(await store.pending_messages()) == 2


async def test_record_step_ignores_keys_already_enqueued(store: Store) -> None:
    assert await store.enqueue([message("k1")]) == 1
    assert await store.record_step("inc-1", "s1", 0, 1.0, "sent",
                                   [message("k1"), message("k2")]) is True
    assert [m.idempotency_key for m in await store.pending_messages()] == ["k1", "k2"]


async def test_record_step_race_between_instances(make_store: StoreFactory) -> None:
    """Three instances record the same step at once: exactly one wins, messages once."""
    stores = [make_store() for _ in range(3)]
    for s in stores:
        await s.open()
    results = await asyncio.gather(*[
        s.record_step("inc-1", "s1", 0, 1.0, "sent",
                      [message("inc-1:s1:wecom:0"), message(f"extra-{i}")])
        for i, s in enumerate(stores)])
    assert sorted(results) == [False, False, True]
    keys = [m.idempotency_key for m in await stores[0].pending_messages()]
    assert len(keys) == 2 and keys[0] == "inc-1:s1:wecom:0"


async def test_concurrent_transactions_on_one_store(make_store: StoreFactory) -> None:
    """The engine's record_step and the outbox's enqueue (fallback) overlap on one store:
    neither joins nor undoes the other's transaction (pooled connections on PostgreSQL,
    one writer at a time on SQLite)."""
    store = make_store()
    await store.open()
    results = await asyncio.wait_for(asyncio.gather(
        *[store.record_step("inc-1", "s1", 0, 1.0, "sent", [message("step")])
          for _ in range(10)],
        *[store.enqueue([message(f"fallback-{i}")]) for i in range(10)]), 30)
    assert sorted(results[:10]) == [False] * 9 + [True]
    assert results[10:] == [1] * 10
    assert len(await store.pending_messages()) == 11


async def test_enqueue_ignores_duplicate_keys(store: Store) -> None:
    assert await store.enqueue([]) == 0
    first = [message("a"), message("b")]
    assert await store.enqueue(first) == 2
    assert first[0].id is not None and first[1].id is not None
    assert first[0].id < first[1].id
    dup = message("a")
    assert await store.enqueue([dup, message("c"), message("c")]) == 1
    assert dup.id is None
    keys = [m.idempotency_key for m in await store.pending_messages()]
    assert keys == ["a", "b", "c"]


async def test_pending_messages_per_notifier(store: Store) -> None:
    await store.enqueue([message("w1", "wecom"), message("s1", "sms"), message("w2", "wecom"),
                         message("d1", "dingtalk")])
    assert [m.idempotency_key for m in await store.pending_messages("wecom")] == ["w1", "w2"]
    assert [m.idempotency_key for m in await store.pending_messages("sms")] == ["s1"]
    assert await store.pending_messages("email") == []
    everything = await store.pending_messages()
    assert [m.idempotency_key for m in everything] == ["w1", "s1", "w2", "d1"]
    got = everything[0]
    assert got.payload["title"] == "门诊医生站 故障"
    assert (got.kind, got.notifier, got.incident_id, got.status, got.attempts) == \
        ("outage_it", "wecom", "inc-1", "pending", 0)


async def test_update_message_and_list_messages(store: Store) -> None:
    await store.enqueue([message("a"), message("b"), message("c", incident_id="inc-2")])
    a, b, _ = await store.pending_messages()

    a.status, a.attempts, a.sent_at, a.answer = "sent", 1, 50.0, "ok"
    await store.update_message(a)
    b.attempts, b.next_attempt_at, b.last_error = 2, 99.5, "HTTP 502"
    await store.update_message(b)

    assert [m.idempotency_key for m in await store.pending_messages()] == ["b", "c"]
    retried = (await store.pending_messages("wecom"))[0]
    assert (retried.attempts, retried.next_attempt_at, retried.last_error) == \
        (2, 99.5, "HTTP 502")
    sent = await store.list_messages(status="sent")
    assert len(sent) == 1
    assert (sent[0].idempotency_key, sent[0].sent_at, sent[0].answer, sent[0].attempts) == \
        ("a", 50.0, "ok", 1)
    assert [m.idempotency_key for m in await store.list_messages()] == ["c", "b", "a"]
    assert [m.idempotency_key for m in await store.list_messages(incident_id="inc-1")] == \
        ["b", "a"]
    assert [m.idempotency_key for m in await store.list_messages(limit=1)] == ["c"]


async def test_delivery_summary_counts_given_up_and_sent_per_channel(store: Store) -> None:
    await store.enqueue([message("a", created_at=10.0), message("b", created_at=20.0),
                         message("c", "sms", created_at=30.0), message("old", created_at=1.0),
                         message("p", created_at=40.0),
                         message("d", incident_id="drill-3", created_at=30.0)])
    a, b, c, old, _pending, drill = await store.pending_messages()
    a.status, b.status, c.status, old.status = "sent", "failed", "undeliverable", "failed"
    drill.status = "failed"  # a drill's leftover never counts (SPEC 10: drills send nothing)
    for m in (a, b, c, old, drill):
        await store.update_message(m)
    rows = sorted(await store.delivery_summary(since=5.0))
    assert rows == [("sms", "outage_it", "undeliverable", 1, 30.0),
                    ("wecom", "outage_it", "failed", 1, 20.0),
                    ("wecom", "outage_it", "sent", 1, 10.0)]


# ---- silences, check states, heartbeats -------------------------------------------


async def test_silences(store: Store) -> None:
    s1 = Silence("sil-1", ["his", "lis"], 100.0, 200.0, "升级 HIS", created_by="it",
                 announce=[3600.0])
    s2 = Silence("sil-2", ["pacs"], 300.0, 400.0, "disk swap")
    await store.save_silence(s1)
    await store.save_silence(s2)
    assert sorted(await store.list_silences(), key=lambda s: s.id) == [s1, s2]
    s1.end = 250.0
    await store.save_silence(s1)  # same id: replaced, not added
    assert sorted(await store.list_silences(), key=lambda s: s.id) == [s1, s2]
    assert await store.delete_silence("sil-2") is True
    assert await store.delete_silence("sil-2") is False
    assert await store.list_silences() == [s1]


async def test_check_states(store: Store) -> None:
    assert await store.load_check_states() == {}
    await store.save_check_states({})
    states = {
        "his-http": {"state": "CRIT", "hard": True, "message": "连接被拒绝", "streak": 3,
                     "first_failure_at": 1000.25, "last_run": None},
        "lis-tcp": {"state": "OK", "hard": True, "message": "", "streak": 0},
    }
    await store.save_check_states(states)
    assert await store.load_check_states() == states
    await store.save_check_states({"his-http": {"state": "OK", "hard": True}})
    loaded = await store.load_check_states()
    assert loaded["his-http"] == {"state": "OK", "hard": True}
    assert loaded["lis-tcp"] == states["lis-tcp"]


async def settled(store: Store, mark: StatesMark | None) -> StatesMark | None:
    """Read until a read brings nothing new. On a shared PostgreSQL server a transaction of
    someone else's, running while a read takes its snapshot, holds the horizon back: that
    read returns states it returned before (allowed: never fewer). Bounded."""
    for _ in range(100):
        found, mark = await store.load_check_states_since(mark)
        if not found:
            return mark
        await asyncio.sleep(0.05)
    raise AssertionError(f"states read again and again: {sorted(found)[:5]}")


async def test_check_states_since_reads_only_what_was_saved_after_the_mark(
        store: Store) -> None:
    """The leader's read each second (SPEC 9): what members saved since its last read, not
    every state again."""
    assert await store.load_check_states_since(None) == ({}, ANY)
    states = {f"c{i}": {"state": "OK", "hard": True, "last_run": 1000.0 + i} for i in range(50)}
    await store.save_check_states(states)
    found, mark = await store.load_check_states_since(None)
    assert found == states, "no mark: everything"
    mark = await settled(store, mark)
    again = {"c7": {"state": "CRIT", "hard": False, "last_run": 2000.0}}
    await store.save_check_states(again)
    await store.save_check_states({"c9": states["c9"]})  # the same record again still counts
    found, mark = await store.load_check_states_since(mark)
    assert found == {"c7": again["c7"], "c9": states["c9"]}
    assert await settled(store, mark) is not None
    assert (await store.load_check_states())["c7"] == again["c7"]


async def test_a_foreign_or_future_mark_reads_everything(store: Store) -> None:
    """A mark of a replaced store, or one from ahead of a store restored from a backup,
    cannot say what is new: all states, and a mark that works from there on."""
    states = {"his-http": {"state": "OK"}, "lis-tcp": {"state": "WARN"}}
    await store.save_check_states(states)
    _, mark = await store.load_check_states_since(None)
    assert mark is not None
    for foreign in (StatesMark("another-store", mark.at), StatesMark(mark.store, mark.at + 10**9)):
        found, again = await store.load_check_states_since(foreign)
        assert found == states
        assert again is not None and again.store == mark.store and again.at < foreign.at + 1
    assert await settled(store, again) is not None


async def test_a_store_made_before_the_save_marks_is_read_whole_then_by_changes(
        make_store: StoreFactory) -> None:
    """Migration: a check_states table of an older hismon (no save mark column) opens; its
    rows are read by the first read, later reads bring only what was saved since."""
    old_record = '{"state": "CRIT", "hard": true, "last_run": 5.0}'
    if make_store.backend == "sqlite":  # type: ignore[attr-defined]
        import sqlite3

        path = make_store.url.removeprefix("sqlite:///")  # type: ignore[attr-defined]
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("CREATE TABLE check_states (check_id TEXT PRIMARY KEY, "
                       "record TEXT NOT NULL)")
            db.executemany("INSERT INTO check_states VALUES (?, ?)",
                           [("old-a", old_record), ("old-b", old_record)])
            db.commit()
    else:
        import psycopg
        from psycopg import sql

        schema = make_store.schema  # type: ignore[attr-defined]
        async with await psycopg.AsyncConnection.connect(require_pg(),
                                                         autocommit=True) as admin:
            await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            await admin.execute(sql.SQL("CREATE TABLE {}.check_states (check_id TEXT PRIMARY "
                                        "KEY, record JSONB NOT NULL)").format(
                                            sql.Identifier(schema)))
            await admin.execute(sql.SQL("INSERT INTO {}.check_states VALUES ('old-a', %s), "
                                        "('old-b', %s)").format(sql.Identifier(schema)),
                                (old_record, old_record))
    store = make_store()
    await store.open()
    found, mark = await store.load_check_states_since(None)
    assert set(found) == {"old-a", "old-b"} and found["old-a"]["state"] == "CRIT"
    mark = await settled(store, mark)
    await store.save_check_states({"old-b": {"state": "OK"}, "new": {"state": "OK"}})
    found, mark = await store.load_check_states_since(mark)
    assert found == {"old-b": {"state": "OK"}, "new": {"state": "OK"}}
    reopened = make_store()
    await reopened.open()  # the migration again: nothing to do, nothing lost
    assert set(await reopened.load_check_states()) == {"old-a", "old-b", "new"}


async def test_heartbeats(store: Store) -> None:
    assert await store.load_heartbeats() == {}
    await store.save_heartbeat("backup-job", 100.5)
    await store.save_heartbeat("etl", 50.0)
    await store.save_heartbeat("backup-job", 200.25)
    assert await store.load_heartbeats() == {"backup-job": 200.25, "etl": 50.0}


async def test_forecast_samples_are_kept_bounded(store: Store) -> None:
    assert await store.load_samples() == {}
    await store.add_samples([("tablespace", 100.0, 80.5), ("tablespace", 130.0, 81.0),
                             ("lag", 100.0, 2.0)], {"tablespace": 0.0, "lag": 0.0})
    await store.add_samples([("tablespace", 160.0, 81.5)], {"tablespace": 120.0, "lag": 0.0})
    assert await store.load_samples() == {"tablespace": [(130.0, 81.0), (160.0, 81.5)],
                                          "lag": [(100.0, 2.0)]}
    await store.add_samples([("tablespace", 160.0, 82.0)], {"tablespace": 0.0})
    assert await store.load_samples() == {"tablespace": [(130.0, 81.0), (160.0, 82.0)]}
    await store.add_samples([], {})  # no forecast left in the config
    assert await store.load_samples() == {}


async def test_garbage_from_targets_is_stored(store: Store) -> None:
    """A NUL byte or a NaN from a target answering garbage must not make a record
    unsaveable: the engine would fail on the same save on every tick."""
    garbage = "bad\x00body"
    await store.save_check_states({"his-http": {"message": garbage, "value": math.nan}})
    loaded = (await store.load_check_states())["his-http"]
    assert loaded["message"].startswith("bad") and loaded["message"].endswith("body")
    assert loaded["value"] is None or math.isnan(loaded["value"])
    inc = incident(1, failing_checks=[{"id": "his-http", "message": garbage}])
    await store.save_incident(inc)
    got = await store.get_incident("inc-1")
    assert got is not None and got.failing_checks[0]["message"].endswith("body")
    await store.add_timeline(TimelineEntry("inc-1", 1.0, "check_failed", garbage,
                                           {"m": garbage}))
    assert (await store.timeline("inc-1"))[0].text.endswith("body")
    msg = message("k", last_error=garbage)
    assert await store.record_step("inc-1", "s1", 0, 1.0, "sent", [msg]) is True
    pending = (await store.pending_messages())[0]
    pending.answer = garbage
    await store.update_message(pending)
    assert (await store.pending_messages())[0].answer.endswith("body")


# ---- lifecycle --------------------------------------------------------------------


async def test_state_survives_a_restart(make_store: StoreFactory) -> None:
    first = make_store()
    await first.open()
    await first.save_incident(incident(1))
    await first.record_step("inc-1", "s1", 0, 1.0, "sent", [message("k")])
    await first.add_timeline(TimelineEntry("inc-1", 1.0, "opened", "opened"))
    await first.next_incident_number()
    await first.close()

    second = make_store()
    await second.open()  # schema creation again: idempotent
    await second.ping()
    assert [i.id for i in await second.list_incidents(status="open")] == ["inc-1"]
    assert await second.steps_recorded("inc-1") == {("s1", 0): "sent"}
    assert len(await second.timeline("inc-1")) == 1
    assert [m.idempotency_key for m in await second.pending_messages()] == ["k"]
    assert await second.next_incident_number() == 2
    assert await second.record_step("inc-1", "s1", 0, 2.0, "sent", [message("k2")]) is False


async def test_unopened_store_refuses(make_store: StoreFactory) -> None:
    with pytest.raises(RuntimeError):
        await make_store().list_incidents()


# ---- PostgreSQL only ----------------------------------------------------------------


def pg_only(make_store: StoreFactory) -> None:
    if make_store.backend != "postgres":  # type: ignore[attr-defined]
        pytest.skip("PostgreSQL only")


async def test_pg_instances_start_together(make_store: StoreFactory) -> None:
    """Schema creation takes turns: five instances opening at once all succeed."""
    pg_only(make_store)
    stores = [make_store() for _ in range(5)]
    await asyncio.wait_for(asyncio.gather(*[s.open() for s in stores]), 30)
    await stores[0].save_incident(incident(1))
    assert [i.id for i in await stores[4].list_incidents()] == ["inc-1"]


async def test_pg_survives_terminated_sessions(make_store: StoreFactory) -> None:
    """pg_terminate_backend on every session: nothing crashes, the next call works."""
    pg_only(make_store)
    app = f"victim_{uuid.uuid4().hex[:8]}"
    store = make_store(app=app)
    await store.open()
    await asyncio.gather(*[store.next_incident_number() for _ in range(8)])  # fill the pool
    assert await terminate_backends(app) >= 1
    await asyncio.sleep(0.2)
    await store.save_incident(incident(1))  # repeatable: retried on a fresh connection
    assert await store.get_incident("inc-1") is not None
    assert await terminate_backends(app) >= 1
    await asyncio.sleep(0.2)
    await store.add_timeline(TimelineEntry("inc-1", 1.0, "opened", "x"))
    assert len(await store.timeline("inc-1")) == 1  # not twice
    assert await terminate_backends(app) >= 1
    await asyncio.sleep(0.2)
    n = await store.next_incident_number()
    assert n == 9
    await store.ping()


async def test_pg_a_save_that_commits_after_a_later_one_is_not_missed(
        make_store: StoreFactory) -> None:
    """Two members save at once and the one that started first commits last: the reader
    that saw the second save must still get the first one at its next read (a counter or
    a timestamp taken at save time would skip it)."""
    pg_only(make_store)
    import psycopg
    from psycopg import sql
    from psycopg.types.json import Jsonb

    from monitor.store.postgres import _SAVE_STATE

    reader, other = make_store(), make_store()
    await reader.open()
    await other.open()
    await other.save_check_states({"x": {"state": "OK"}, "y": {"state": "OK"}})
    mark = await settled(reader, (await reader.load_check_states_since(None))[1])
    schema = make_store.schema  # type: ignore[attr-defined]
    async with await psycopg.AsyncConnection.connect(require_pg(), autocommit=True) as slow:
        await slow.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        async with slow.transaction():  # the slow member's save: started, not committed
            await slow.execute(_SAVE_STATE, ("x", Jsonb({"state": "CRIT"})))
            await other.save_check_states({"y": {"state": "WARN"}})  # starts later, commits
            found, mark = await reader.load_check_states_since(mark)
            assert found == {"y": {"state": "WARN"}}, "the slow save is not visible yet"
        found, mark = await reader.load_check_states_since(mark)
    assert found["x"] == {"state": "CRIT"}, "the save that committed late is read"
    assert set(found) <= {"x", "y"}


async def test_pg_url_parameters_and_no_secrets(make_store: StoreFactory) -> None:
    pg_only(make_store)
    from monitor.store.postgres import PostgresStore, parse_url

    conninfo, schema, size, timeout = parse_url(
        "postgresql://hismon:s3cret@db.example:6432/hismon?schema=ha&pool_size=2"
        "&query_timeout=3.5&sslmode=require&options=-c%20statement_timeout%3D5000")
    assert (schema, size, timeout) == ("ha", 2, 3.5)
    assert "schema=" not in conninfo and "pool_size" not in conninfo
    assert "sslmode=require" in conninfo
    assert "options=-c%20statement_timeout%3D5000" in conninfo
    assert "connect_timeout=" in conninfo
    store = open_store("postgresql://hismon:s3cret@db.example:6432/hismon?schema=ha")
    assert isinstance(store, PostgresStore)
    assert "s3cret" not in repr(store) and "hismon:" not in repr(store)
    with pytest.raises(ValueError):
        parse_url("postgresql://h/db?pool_size=zero")


async def test_pg_unreachable_server_fails_fast(make_store: StoreFactory) -> None:
    """A store that cannot connect raises promptly; the caller's loop retries later."""
    pg_only(make_store)
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    store = open_store(f"postgresql://postgres:pw@127.0.0.1:{port}/test?connect_timeout=2")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Exception) as info:
        await store.open()
    assert loop.time() - started < 5
    assert ":pw" not in str(info.value) and "pw@" not in str(info.value)


async def test_the_link_key_is_made_once_and_shared(make_store: StoreFactory) -> None:
    """SPEC 13.2: every instance on one store signs and verifies with the same key."""
    first, second = make_store(), make_store()
    await first.open()
    await second.open()
    key = await first.link_key()
    assert len(key) == 32
    assert await second.link_key() == key
    await first.close()
    again = make_store()
    await again.open()
    assert await again.link_key() == key, "a restart keeps the key"


async def test_link_actions_wait_in_the_store_for_the_leader(make_store: StoreFactory) -> None:
    standby, leader = make_store(), make_store()
    await standby.open()
    await leader.open()
    await standby.add_link_action({"kind": "ack", "incident": "inc-1", "by": "李娜"}, 5.0)
    await standby.add_link_action({"kind": "vendor", "incident": "inc-1", "by": "x"}, 6.0)
    pending = await leader.link_actions()
    assert [a["kind"] for _, a in pending] == ["ack", "vendor"]
    await leader.done_link_action(pending[0][0])
    assert [a["kind"] for _, a in await leader.link_actions()] == ["vendor"]
