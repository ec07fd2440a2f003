"""SQLite store: embedded, nothing to install, one file to back up.

aiosqlite runs every statement on one worker thread, so the event loop never waits on disk.
WAL mode lets `hismon report` read while the daemon writes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import secrets
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import aiosqlite

from monitor.core.models import Incident, OutboxMessage, Silence, TimelineEntry
from monitor.history.model import CheckBucket, SystemBucket, SystemWorst
from monitor.store import sql as shared
from monitor.store.base import StatesMark, Store, StoreIdentity

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY, system TEXT NOT NULL, status TEXT NOT NULL,
    started_at REAL NOT NULL, resolved_at REAL, drill INTEGER NOT NULL DEFAULT 0,
    record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS incidents_status ON incidents(status);
CREATE INDEX IF NOT EXISTS incidents_started ON incidents(started_at);
CREATE TABLE IF NOT EXISTS timeline (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, incident_id TEXT NOT NULL, at REAL NOT NULL,
    kind TEXT NOT NULL, text TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS timeline_incident ON timeline(incident_id, seq);
CREATE TABLE IF NOT EXISTS plan_steps (
    incident_id TEXT NOT NULL, step_key TEXT NOT NULL, occurrence INTEGER NOT NULL,
    at REAL NOT NULL, status TEXT NOT NULL,
    PRIMARY KEY (incident_id, step_key, occurrence));
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, idempotency_key TEXT NOT NULL UNIQUE,
    notifier TEXT NOT NULL, kind TEXT NOT NULL, incident_id TEXT, payload TEXT NOT NULL,
    created_at REAL NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
    next_attempt_at REAL NOT NULL, last_error TEXT, sent_at REAL, answer TEXT);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(status, notifier, id);
CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS check_states (
    check_id TEXT PRIMARY KEY, record TEXT NOT NULL, seq INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS heartbeats (check_id TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS forecast_samples (
    check_id TEXT NOT NULL, at REAL NOT NULL, value REAL NOT NULL, PRIMARY KEY (check_id, at));
CREATE TABLE IF NOT EXISTS vantage (
    check_id TEXT NOT NULL, instance TEXT NOT NULL, state TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (check_id, instance));
CREATE TABLE IF NOT EXISTS history_checks (
    check_id TEXT NOT NULL, start REAL NOT NULL, system TEXT NOT NULL, worst INTEGER NOT NULL,
    n INTEGER NOT NULL, lat_min REAL NOT NULL, lat_sum REAL NOT NULL, lat_max REAL NOT NULL,
    down_s REAL NOT NULL DEFAULT 0, bad_s REAL NOT NULL DEFAULT 0, seen_s REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (system, start, check_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS history_checks_start ON history_checks(start);
CREATE TABLE IF NOT EXISTS history_systems (
    resolution TEXT NOT NULL, system TEXT NOT NULL, start REAL NOT NULL, worst INTEGER NOT NULL,
    ok_s REAL NOT NULL, degraded_s REAL NOT NULL, down_s REAL NOT NULL, maint_s REAL NOT NULL,
    PRIMARY KEY (resolution, system, start)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history_meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS link_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, record TEXT NOT NULL);
"""


_NEXT_SAVE = ("INSERT INTO meta(key, value) VALUES('check_states_seq', '1') ON CONFLICT(key) "
              "DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value")
"""The counter of check state saves (`load_check_states_since`), kept in `meta` so deleted
rows can never make it go back."""

MIGRATIONS: tuple[tuple[str, str, str], ...] = (
    # (table, column, what adds it): columns added after a store was first made.
    ("check_states", "seq", "ALTER TABLE check_states ADD COLUMN seq INTEGER NOT NULL DEFAULT 0"),
    *(("history_checks", column,
        f"ALTER TABLE history_checks ADD COLUMN {column} REAL NOT NULL DEFAULT 0")
       for column in ("down_s", "bad_s", "seen_s")),
)
AFTER_MIGRATIONS = "CREATE INDEX IF NOT EXISTS check_states_seq ON check_states(seq);"


P = ParamSpec("P")
R = TypeVar("R")


def _serialized(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """One writer at a time on the shared connection.

    Every statement goes through one connection, so a write issued while another task's
    transaction is open would join that transaction (and vanish with its rollback). Writes
    take turns; reads need no lock.
    """

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        self = args[0]
        async with self._lock:  # type: ignore[attr-defined]
            return await method(*args, **kwargs)

    return wrapper


def _path_of(url: str) -> str:
    """`sqlite:///./x.db` → `./x.db`; `sqlite:////abs/x.db` → `/abs/x.db`."""
    path = url.removeprefix("sqlite://")
    if path.startswith("/"):
        path = path[1:]
    return path or ":memory:"


class SqliteStore(StoreIdentity, Store):
    def __init__(self, url: str) -> None:
        self.path = _path_of(url)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._file: tuple[int, int] | None = None
        """(device, inode) of the file opened: a file deleted or replaced under a running
        daemon is noticed (SQLite itself goes on writing into the unlinked inode)."""

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, timeout=10, isolation_level=None)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.executescript(SCHEMA)
        await self._migrate()
        await self._db.commit()
        if self.path != ":memory:":
            st = os.stat(self.path)
            self._file = (st.st_dev, st.st_ino)
        self.store_id, self.created = await self._identity()

    async def _migrate(self) -> None:
        """Add the columns a store made by an older hismon lacks (SQLite has no
        `ADD COLUMN IF NOT EXISTS`)."""
        for table, column, statement in MIGRATIONS:
            async with self.db.execute(f"PRAGMA table_info({table})") as cursor:
                columns = {row[1] for row in await cursor.fetchall()}
            if column not in columns:
                await self.db.execute(statement)
        await self.db.executescript(AFTER_MIGRATIONS)

    async def _identity(self) -> tuple[str, bool]:
        found = await self._stored_identity()
        if found is not None:  # no write: a read-only or immutable file still opens
            return found, False
        async with self._lock:
            cursor = await self.db.execute(
                "INSERT INTO meta(key, value) VALUES('store_id', ?) ON CONFLICT(key) DO NOTHING",
                (secrets.token_hex(8),))
            created = cursor.rowcount == 1
            await self.db.commit()
        return await self._stored_identity() or "", created

    async def _stored_identity(self) -> str | None:
        async with self.db.execute("SELECT value FROM meta WHERE key = 'store_id'") as cursor:
            row = await cursor.fetchone()
        return str(row[0]) if row is not None else None

    async def identity_problem(self) -> str | None:
        if self._file is not None:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return f"the state database {self.path} was deleted while hismon had it open"
            if (st.st_dev, st.st_ino) != self._file:
                return f"the state database {self.path} was replaced by another file"
        stored = await self._stored_identity()
        if stored is None:
            return "the state database lost its identity row (meta.store_id deleted)"
        if stored != self.store_id:
            return f"the state database is another store now (identity {stored[:8]}, " \
                   f"was {(self.store_id or '')[:8]})"
        return None

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def ping(self) -> None:
        await self.db.execute("SELECT 1")

    @_serialized
    async def next_incident_number(self) -> int:
        async with self.db.execute(
            "INSERT INTO meta(key, value) VALUES('incident_seq', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value"
        ) as cursor:
            row = await cursor.fetchone()
        await self.db.commit()
        assert row is not None
        return int(row[0])

    @_serialized
    async def save_incident(self, incident: Incident) -> None:
        await self.db.execute(
            "INSERT INTO incidents(id, system, status, started_at, resolved_at, drill, record) "
            "VALUES(?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET status=excluded.status, "
            "resolved_at=excluded.resolved_at, record=excluded.record, "
            "started_at=excluded.started_at",
            (incident.id, incident.system, incident.status, incident.started_at,
             incident.resolved_at, int(incident.drill), json.dumps(incident.to_record())),
        )
        await self.db.commit()

    async def get_incident(self, incident_id: str) -> Incident | None:
        async with self.db.execute(
            "SELECT record FROM incidents WHERE id = ?", (incident_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return Incident.from_record(json.loads(row[0])) if row else None

    async def list_incidents(
        self, status: str | None = None, since: float | None = None, limit: int = 500,
        system: str | None = None,
    ) -> list[Incident]:
        sql, args = shared.list_incidents(status, since, limit, "?", system)
        async with self.db.execute(sql, args) as cursor:
            rows = await cursor.fetchall()
        return [Incident.from_record(json.loads(r[0])) for r in rows]

    @_serialized
    async def add_timeline(self, entry: TimelineEntry) -> None:
        await self.db.execute(
            "INSERT INTO timeline(incident_id, at, kind, text, data) VALUES(?,?,?,?,?)",
            (entry.incident_id, entry.at, entry.kind, entry.text,
             json.dumps(entry.data, ensure_ascii=False)),
        )
        await self.db.commit()

    async def timeline(self, incident_id: str) -> list[TimelineEntry]:
        async with self.db.execute(
            "SELECT incident_id, at, kind, text, data FROM timeline WHERE incident_id = ? "
            "ORDER BY seq", (incident_id,)
        ) as cursor:
            rows = await cursor.fetchall()
        return [TimelineEntry(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    @_serialized
    async def record_step(
        self, incident_id: str, step_key: str, occurrence: int, at: float, status: str,
        messages: list[OutboxMessage],
    ) -> bool:
        db = self.db
        try:
            await db.execute("BEGIN IMMEDIATE")
            cursor = await db.execute(
                "INSERT OR IGNORE INTO plan_steps(incident_id, step_key, occurrence, at, status) "
                "VALUES(?,?,?,?,?)", (incident_id, step_key, occurrence, at, status))
            if cursor.rowcount == 0:
                await db.rollback()
                return False
            await self._insert_messages(messages)
            await db.commit()
            return True
        except BaseException:
            await db.rollback()
            raise

    async def steps_recorded(self, incident_id: str) -> dict[tuple[str, int], str]:
        async with self.db.execute(
            "SELECT step_key, occurrence, status FROM plan_steps WHERE incident_id = ?",
            (incident_id,)
        ) as cursor:
            rows = await cursor.fetchall()
        return {(r[0], int(r[1])): r[2] for r in rows}

    async def _insert_messages(self, messages: list[OutboxMessage]) -> int:
        new = 0
        for m in messages:
            cursor = await self.db.execute(
                f"INSERT OR IGNORE INTO outbox({shared.INSERT_COLUMNS}) "
                f"{shared.insert_values('?')}",
                shared.insert_message_args(m, json.dumps(m.payload, ensure_ascii=False)))
            if cursor.rowcount:
                m.id = cursor.lastrowid
                new += 1
        return new

    @_serialized
    async def enqueue(self, messages: list[OutboxMessage]) -> int:
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            new = await self._insert_messages(messages)
        except BaseException:
            await self.db.rollback()
            raise
        await self.db.commit()
        return new

    async def pending_messages(self, notifier: str | None = None) -> list[OutboxMessage]:
        return await self._messages(*shared.pending_messages(notifier, "?"))

    async def list_messages(
        self, status: str | None = None, incident_id: str | None = None, limit: int = 500
    ) -> list[OutboxMessage]:
        return await self._messages(*shared.list_messages(status, incident_id, limit, "?"))

    async def delivery_summary(self, since: float) -> list[tuple[str, str, str, int, float]]:
        async with self.db.execute(*shared.delivery_summary(since, "?")) as cursor:
            rows = await cursor.fetchall()
        return [(r[0], r[1], r[2], int(r[3]), float(r[4])) for r in rows]

    async def messages_by_keys(self, keys: list[str]) -> list[OutboxMessage]:
        if not keys:
            return []
        return await self._messages(*shared.messages_by_keys(keys, "?"))

    async def _messages(self, sql: str, args: list[Any]) -> list[OutboxMessage]:
        async with self.db.execute(sql, args) as cursor:
            rows = await cursor.fetchall()
        return [shared.message_from_row(r, json.loads(r[5])) for r in rows]

    @_serialized
    async def update_message(self, message: OutboxMessage) -> None:
        await self.db.execute(shared.update_message("?"), shared.update_message_args(message))
        await self.db.commit()

    @_serialized
    async def update_payload(self, message: OutboxMessage) -> None:
        await self.db.execute(shared.update_payload("?"),
                              (json.dumps(message.payload, ensure_ascii=False), message.id))
        await self.db.commit()

    @_serialized
    async def save_silence(self, silence: Silence) -> None:
        from dataclasses import asdict

        await self.db.execute(
            "INSERT OR REPLACE INTO silences(id, record) VALUES(?, ?)",
            (silence.id, json.dumps(asdict(silence), ensure_ascii=False)))
        await self.db.commit()

    @_serialized
    async def delete_silence(self, silence_id: str) -> bool:
        cursor = await self.db.execute("DELETE FROM silences WHERE id = ?", (silence_id,))
        await self.db.commit()
        return cursor.rowcount > 0

    async def list_silences(self) -> list[Silence]:
        async with self.db.execute("SELECT record FROM silences") as cursor:
            rows = await cursor.fetchall()
        return [Silence(**json.loads(r[0])) for r in rows]

    @_serialized
    async def save_check_states(self, states: dict[str, dict[str, Any]]) -> None:
        """One transaction: the save counter moves on and every row carries its new value
        (`load_check_states_since`); a reader sees all of a save or none of it."""
        if not states:
            return
        rows = [(k, json.dumps(v, ensure_ascii=False)) for k, v in states.items()]
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            async with self.db.execute(_NEXT_SAVE) as cursor:
                row = await cursor.fetchone()
            assert row is not None
            save = int(row[0])
            await self.db.executemany(
                "INSERT OR REPLACE INTO check_states(check_id, record, seq) VALUES(?, ?, ?)",
                [(k, record, save) for k, record in rows])
            await self.db.commit()
        except BaseException:
            await self.db.rollback()
            raise

    async def load_check_states(self) -> dict[str, dict[str, Any]]:
        async with self.db.execute("SELECT check_id, record FROM check_states") as cursor:
            rows = await cursor.fetchall()
        return {r[0]: json.loads(r[1]) for r in rows}

    @_serialized
    async def load_check_states_since(
        self, mark: StatesMark | None
    ) -> tuple[dict[str, dict[str, Any]], StatesMark | None]:
        """By save counter: SQLite has one writer at a time, so saves commit in the order
        of their counter values, and a reader that saw value N has every save up to N.
        Serialized with the writes: on the shared connection a read in the middle of a
        save's transaction would see the new counter and only part of the rows."""
        since = mark.at if mark is not None and mark.store == self.store_id else -1
        found, counter = await self._states_since(since)
        if counter < since:  # the counter went back (a file restored): read everything
            found, counter = await self._states_since(-1)
        return found, StatesMark(self.store_id, counter)

    async def _states_since(self, since: int) -> tuple[dict[str, dict[str, Any]], int]:
        # One statement, one snapshot: the counter (the row without a check id) and the rows.
        async with self.db.execute(
            "SELECT NULL, NULL, CAST(COALESCE((SELECT value FROM meta WHERE key = "
            "'check_states_seq'), '0') AS INTEGER) UNION ALL "
            "SELECT check_id, record, NULL FROM check_states WHERE seq > ?", (since,)
        ) as cursor:
            rows = await cursor.fetchall()
        found, counter = {}, 0
        for check_id, record, value in rows:
            if check_id is None:
                counter = int(value)
            else:
                found[check_id] = json.loads(record)
        return found, counter

    @_serialized
    async def save_heartbeat(self, check_id: str, at: float) -> None:
        await self.db.execute(
            "INSERT OR REPLACE INTO heartbeats(check_id, at) VALUES(?, ?)", (check_id, at))
        await self.db.commit()

    # ---- signed links (SPEC 13.2) ------------------------------------------------------

    @_serialized
    async def link_key(self) -> bytes:
        await self.db.execute("INSERT INTO meta(key, value) VALUES('link_key', ?) "
                              "ON CONFLICT(key) DO NOTHING", (secrets.token_hex(32),))
        await self.db.commit()
        async with self.db.execute("SELECT value FROM meta WHERE key = 'link_key'") as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return bytes.fromhex(row[0])

    @_serialized
    async def add_link_action(self, action: dict[str, Any], at: float) -> None:
        await self.db.execute("INSERT INTO link_actions(at, record) VALUES(?, ?)",
                              (at, json.dumps(action)))
        await self.db.commit()

    async def link_actions(self) -> list[tuple[int, dict[str, Any]]]:
        async with self.db.execute("SELECT id, record FROM link_actions ORDER BY id") as cursor:
            return [(int(r[0]), json.loads(r[1])) for r in await cursor.fetchall()]

    @_serialized
    async def done_link_action(self, action_id: int) -> None:
        await self.db.execute("DELETE FROM link_actions WHERE id = ?", (action_id,))
        await self.db.commit()

    @_serialized
    async def save_vantage(self, instance: str, states: dict[str, str], at: float) -> None:
        await self.db.executemany(
            "INSERT OR REPLACE INTO vantage(check_id, instance, state, at) VALUES(?,?,?,?)",
            [(check_id, instance, state, at) for check_id, state in states.items()])
        await self.db.commit()

    async def load_vantage(self, since: float) -> dict[str, dict[str, str]]:
        async with self.db.execute(
            "SELECT check_id, instance, state FROM vantage WHERE at >= ?", (since,)
        ) as cursor:
            rows = await cursor.fetchall()
        found: dict[str, dict[str, str]] = {}
        for check_id, instance, state in rows:
            found.setdefault(check_id, {})[instance] = state
        return found

    async def load_heartbeats(self) -> dict[str, float]:
        async with self.db.execute("SELECT check_id, at FROM heartbeats") as cursor:
            rows = await cursor.fetchall()
        return {r[0]: float(r[1]) for r in rows}

    # ---- history -------------------------------------------------------------------------

    @_serialized
    async def save_check_buckets(self, rows: list[CheckBucket]) -> None:
        if not rows:
            return
        # One transaction: in autocommit mode every row would be a commit of its own.
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            await self._upsert_buckets(rows)
        except BaseException:
            await self.db.rollback()
            raise
        await self.db.commit()

    async def _upsert_buckets(self, rows: list[CheckBucket]) -> None:
        await self.db.executemany(
            "INSERT INTO history_checks(check_id, start, system, worst, n, lat_min, lat_sum, "
            "lat_max, down_s, bad_s, seen_s) VALUES(?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(system, start, check_id) DO UPDATE SET "
            "worst=max(worst, excluded.worst), n=n+excluded.n, "
            "lat_min=min(lat_min, excluded.lat_min), lat_sum=lat_sum+excluded.lat_sum, "
            "lat_max=max(lat_max, excluded.lat_max), down_s=down_s+excluded.down_s, "
            "bad_s=bad_s+excluded.bad_s, seen_s=seen_s+excluded.seen_s",
            [(r.check_id, r.start, r.system, r.worst, r.n, r.lat_min, r.lat_sum, r.lat_max,
              r.down_s, r.bad_s, r.seen_s) for r in rows])

    async def load_check_buckets(
        self, since: float, until: float | None = None, system: str | None = None
    ) -> list[CheckBucket]:
        async with self.db.execute(*shared.check_buckets(since, until, system, "?")) as cursor:
            rows = await cursor.fetchall()
        return [CheckBucket(*r) for r in rows]

    async def system_worst(self, since: float, until: float) -> list[SystemWorst]:
        async with self.db.execute(*shared.system_worst(since, until, "?", "min")) as cursor:
            rows = await cursor.fetchall()
        return [(r[0], float(r[1]), int(r[2]), float(r[3]), float(r[4])) for r in rows]

    async def history_marker(self) -> float | None:
        async with self.db.execute(shared.HISTORY_MARKER) as cursor:
            row = await cursor.fetchone()
        return float(row[0]) if row else None

    @_serialized
    async def rollup_history(
        self, expected: float | None, upto: float, rows: list[SystemBucket]
    ) -> bool:
        db = self.db
        await db.execute("BEGIN IMMEDIATE")
        try:
            async with db.execute(shared.HISTORY_MARKER) as cursor:
                row = await cursor.fetchone()
            if (float(row[0]) if row else None) != expected:
                await db.rollback()
                return False
            await db.executemany(
                "INSERT INTO history_systems(resolution, system, start, worst, ok_s, "
                "degraded_s, down_s, maint_s) VALUES(?,?,?,?,?,?,?,?) "
                "ON CONFLICT(resolution, system, start) DO UPDATE SET "
                "worst=max(worst, excluded.worst), ok_s=ok_s+excluded.ok_s, "
                "degraded_s=degraded_s+excluded.degraded_s, down_s=down_s+excluded.down_s, "
                "maint_s=maint_s+excluded.maint_s",
                [(r.resolution, r.system, r.start, r.worst, r.ok_s, r.degraded_s, r.down_s,
                  r.maint_s) for r in rows])
            await db.execute(
                "INSERT OR REPLACE INTO history_meta(key, value) VALUES('rolled_upto', ?)",
                (upto,))
        except BaseException:
            await db.rollback()
            raise
        await db.commit()
        return True

    async def load_system_buckets(
        self, resolution: str, since: float, until: float | None = None,
        system: str | None = None,
    ) -> list[SystemBucket]:
        query = shared.system_buckets(resolution, since, until, system, "?")
        async with self.db.execute(*query) as cursor:
            rows = await cursor.fetchall()
        return [SystemBucket(*r) for r in rows]

    async def sum_system_buckets(
        self, resolution: str, since: float, until: float | None = None
    ) -> dict[str, SystemBucket]:
        query = shared.summed_system_buckets(resolution, since, until, "?")
        async with self.db.execute(*query) as cursor:
            rows = await cursor.fetchall()
        return {r[0]: SystemBucket(r[0], resolution, since, *r[1:]) for r in rows}

    @_serialized
    async def prune_history(self, cutoffs: dict[str, float]) -> int:
        deleted = 0
        if "check" in cutoffs:
            cursor = await self.db.execute("DELETE FROM history_checks WHERE start < ?",
                                           (cutoffs["check"],))
            deleted += cursor.rowcount
        for resolution in ("slot", "hour", "day"):
            if resolution in cutoffs:
                cursor = await self.db.execute(
                    "DELETE FROM history_systems WHERE resolution = ? AND start < ?",
                    (resolution, cutoffs[resolution]))
                deleted += cursor.rowcount
        await self.db.commit()
        return deleted

    @_serialized
    async def add_samples(self, rows: list[tuple[str, float, float]],
                          keep_since: dict[str, float]) -> None:
        await self.db.executemany(
            "INSERT OR REPLACE INTO forecast_samples(check_id, at, value) VALUES(?, ?, ?)", rows)
        for check_id in {row[0] for row in rows} & keep_since.keys():
            await self.db.execute("DELETE FROM forecast_samples WHERE check_id = ? AND at < ?",
                                  (check_id, keep_since[check_id]))
        marks = ",".join("?" * len(keep_since))
        await self.db.execute(
            f"DELETE FROM forecast_samples WHERE check_id NOT IN ({marks})",
            list(keep_since))
        await self.db.commit()

    async def load_samples(self) -> dict[str, list[tuple[float, float]]]:
        found: dict[str, list[tuple[float, float]]] = {}
        async with self.db.execute(
            "SELECT check_id, at, value FROM forecast_samples ORDER BY check_id, at"
        ) as cursor:
            for check_id, at, value in await cursor.fetchall():
                found.setdefault(check_id, []).append((float(at), float(value)))
        return found

