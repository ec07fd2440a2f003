"""PostgreSQL store: one database shared by several hismon instances (SPEC §9).

Same semantics as the SQLite store, so the engine and the outbox cannot tell them apart:
`record_step` marks a plan step occurrence and enqueues its messages in one transaction,
`enqueue` ignores idempotency keys it already has, incident numbers come from a sequence
(unique however many instances ask at once), records are JSONB.

URL: ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?PARAMS]``. Every libpq parameter works
(``sslmode``, ``options=-c%20search_path%3Dhismon``, ``connect_timeout`` ...). hismon reads and
removes three of its own before handing the URL to libpq:

- ``schema=NAME``: keep hismon's tables in schema NAME (created if missing). Without it the
  tables go into the connection's current schema (the URL's ``search_path``, else
  ``public``), which must then exist.
- ``pool_size=N`` (default 4): at most N connections. The engine, one outbox sender per
  notifier, the API and housekeeping share them; a statement waits for a free one.
- ``query_timeout=SECONDS`` (default 10): one store call that takes longer fails, and its
  connection is dropped. A network partition swallows packets without an error; without
  this bound a tick of the engine (and the leader's lease renewal) would hang forever.

Connection loss. A server restart or ``pg_terminate_backend`` kills every idle connection
without the client noticing until it next speaks. When a statement fails on such a reused
connection, all idle connections are dropped (they are most likely dead too) and the call
is tried once more on a fresh connection, if repeating it cannot apply it twice: reads,
upserts, `enqueue` and `record_step` (keyed), and anything the server refused because it
was shutting the session down (SQLSTATE 57P01-57P03: the statement never ran). Otherwise
the error goes to the caller, whose loop already retries (engine tick, outbox pass,
housekeeping), and the next call connects anew: a store briefly unreachable never stops
probing. Errors name no DSN or password: libpq's messages carry host, port and user only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from monitor.core.models import Incident, OutboxMessage, Silence, TimelineEntry
from monitor.history.model import CheckBucket, SystemBucket, SystemWorst
from monitor.store import sql as shared
from monitor.store.base import Fenced, StatesMark, Store, StoreIdentity

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]

DEFAULT_POOL_SIZE = 4
DEFAULT_QUERY_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5
SESSION_ENDED = ("57P01", "57P02", "57P03")
"""admin_shutdown, crash_shutdown, cannot_connect_now: the server refused, nothing ran."""

SCHEMA: tuple[str, ...] = (
    "CREATE SEQUENCE IF NOT EXISTS incident_seq",
    """CREATE TABLE IF NOT EXISTS incidents (
        id TEXT PRIMARY KEY, system TEXT NOT NULL, status TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL, resolved_at DOUBLE PRECISION,
        drill BOOLEAN NOT NULL DEFAULT FALSE, record JSONB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS incidents_status ON incidents(status)",
    "CREATE INDEX IF NOT EXISTS incidents_started ON incidents(started_at)",
    """CREATE TABLE IF NOT EXISTS timeline (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, incident_id TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL,
        data JSONB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS timeline_incident ON timeline(incident_id, seq)",
    """CREATE TABLE IF NOT EXISTS plan_steps (
        incident_id TEXT NOT NULL, step_key TEXT NOT NULL, occurrence INTEGER NOT NULL,
        at DOUBLE PRECISION NOT NULL, status TEXT NOT NULL,
        PRIMARY KEY (incident_id, step_key, occurrence))""",
    """CREATE TABLE IF NOT EXISTS outbox (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE, notifier TEXT NOT NULL, kind TEXT NOT NULL,
        incident_id TEXT, payload JSONB NOT NULL, created_at DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL, attempts INTEGER NOT NULL,
        next_attempt_at DOUBLE PRECISION NOT NULL, last_error TEXT,
        sent_at DOUBLE PRECISION, answer TEXT)""",
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(status, notifier, id)",
    "CREATE INDEX IF NOT EXISTS outbox_incident ON outbox(incident_id)",
    "CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, record JSONB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS check_states (check_id TEXT PRIMARY KEY, record JSONB NOT NULL)",
    # Which transaction saved each state (`load_check_states_since`): the leader reads only
    # the states saved since its last read. Rows of an older schema start at 0 (read once).
    "ALTER TABLE check_states ADD COLUMN IF NOT EXISTS saved_xid xid8 NOT NULL DEFAULT '0'",
    "CREATE INDEX IF NOT EXISTS check_states_saved ON check_states(saved_xid)",
    """CREATE TABLE IF NOT EXISTS heartbeats (
        check_id TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS forecast_samples (
        check_id TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, value DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (check_id, at))""",
    """CREATE TABLE IF NOT EXISTS vantage (
        check_id TEXT NOT NULL, instance TEXT NOT NULL, state TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL, PRIMARY KEY (check_id, instance))""",
    # History behind the status pages (monitor/history): bounded, pruned once per bucket.
    """CREATE TABLE IF NOT EXISTS history_checks (
        check_id TEXT NOT NULL, start DOUBLE PRECISION NOT NULL, system TEXT NOT NULL,
        worst SMALLINT NOT NULL, n INTEGER NOT NULL, lat_min DOUBLE PRECISION NOT NULL,
        lat_sum DOUBLE PRECISION NOT NULL, lat_max DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (system, start, check_id))""",
    # Seconds in state between probes (availability that is not whole buckets); older
    # stores gain them at 0, which reads as before (monitor.history.model.check_shares).
    *(f"ALTER TABLE history_checks ADD COLUMN IF NOT EXISTS {column} DOUBLE PRECISION "
      "NOT NULL DEFAULT 0" for column in ("down_s", "bad_s", "seen_s")),
    "CREATE INDEX IF NOT EXISTS history_checks_start ON history_checks(start)",
    """CREATE TABLE IF NOT EXISTS history_systems (
        resolution TEXT NOT NULL, system TEXT NOT NULL, start DOUBLE PRECISION NOT NULL,
        worst SMALLINT NOT NULL, ok_s DOUBLE PRECISION NOT NULL,
        degraded_s DOUBLE PRECISION NOT NULL, down_s DOUBLE PRECISION NOT NULL,
        maint_s DOUBLE PRECISION NOT NULL, PRIMARY KEY (resolution, system, start))""",
    """CREATE TABLE IF NOT EXISTS history_meta (
        key TEXT PRIMARY KEY, value DOUBLE PRECISION NOT NULL)""",
    # The leader lease (monitor/cluster/leader.py). Times are the database's clock, so clock skew
    # between the instances' machines cannot make two leaders.
    """CREATE TABLE IF NOT EXISTS leader (
        name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at TIMESTAMPTZ NOT NULL,
        acquired_at TIMESTAMPTZ NOT NULL, renewed_at TIMESTAMPTZ NOT NULL)""",
    # Fencing (SPEC 9): the term grows at every change of holder; an older term writes nothing.
    "ALTER TABLE leader ADD COLUMN IF NOT EXISTS term BIGINT NOT NULL DEFAULT 1",
    "CREATE TABLE IF NOT EXISTS fenced_terms (name TEXT PRIMARY KEY, term BIGINT NOT NULL)",
    # Cluster members (monitor/cluster/membership.py): one heartbeat row per live instance.
    """CREATE TABLE IF NOT EXISTS members (
        id TEXT PRIMARY KEY, expires_at TIMESTAMPTZ NOT NULL, last_seen TIMESTAMPTZ NOT NULL,
        checks INTEGER NOT NULL DEFAULT 0)""",
    # Signed links (SPEC 13.2): one key for every instance; link POSTs a standby took.
    "CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS link_actions (
        id BIGSERIAL PRIMARY KEY, at DOUBLE PRECISION NOT NULL, record JSONB NOT NULL)""",
)

_INSERT_MESSAGE = (
    f"INSERT INTO outbox({shared.INSERT_COLUMNS}) {shared.insert_values('%s')} "
    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
)

# Take the lease if it is ours or has run out. ON CONFLICT DO UPDATE locks the row and
# re-evaluates the WHERE on its newest version, so of several instances racing for an
# expired (or not yet existing) lease exactly one gets a row back. The others then ask who
# holds it in a second statement: one with a fresh snapshot, which sees the winner's commit.
_ACQUIRE_LEASE = """
INSERT INTO leader AS l (name, holder, expires_at, acquired_at, renewed_at, term)
VALUES (%(name)s, %(me)s, now() + make_interval(secs => %(ttl)s), now(), now(),
        COALESCE((SELECT max(term) FROM fenced_terms WHERE name = %(name)s), 0) + 1)
ON CONFLICT (name) DO UPDATE
    SET holder = excluded.holder, expires_at = excluded.expires_at,
        renewed_at = excluded.renewed_at,
        acquired_at = CASE WHEN l.holder = excluded.holder THEN l.acquired_at
                           ELSE excluded.acquired_at END,
        term = CASE WHEN l.holder = excluded.holder THEN l.term
                    ELSE GREATEST(l.term, excluded.term) + 1 END
    WHERE l.holder = excluded.holder OR l.expires_at < now()
RETURNING holder, extract(epoch FROM expires_at - now())::float8, term
"""
_LEASE_HOLDER = (
    "SELECT holder, extract(epoch FROM expires_at - now())::float8, term FROM leader "
    "WHERE name = %s"
)
# A released lease row is deleted; its last term is kept here so the next term is higher.
_REMEMBER_TERM = (
    "INSERT INTO fenced_terms(name, term) SELECT name, term FROM leader "
    "WHERE name = %s AND holder = %s ON CONFLICT (name) DO UPDATE "
    "SET term = GREATEST(fenced_terms.term, excluded.term)"
)
_SAVE_STATE = (
    "INSERT INTO check_states(check_id, record, saved_xid) VALUES (%s, %s, pg_current_xact_id()) "
    "ON CONFLICT (check_id) DO UPDATE SET record = excluded.record, "
    "saved_xid = excluded.saved_xid"
)
# One statement, one snapshot: the horizon (first row, no check id) and the rows saved since.
_STATES_SINCE = (
    "SELECT NULL::text, NULL::jsonb, pg_snapshot_xmin(pg_current_snapshot())::text "
    "UNION ALL SELECT check_id, record, NULL FROM check_states WHERE saved_xid >= %s::xid8"
)
_MEMBER_HEARTBEAT = """
INSERT INTO members AS m (id, expires_at, last_seen, checks)
VALUES (%(me)s, now() + make_interval(secs => %(ttl)s), now(), %(checks)s)
ON CONFLICT (id) DO UPDATE
    SET expires_at = excluded.expires_at, last_seen = excluded.last_seen,
        checks = excluded.checks
"""
_LIVE_MEMBERS = (
    "SELECT id, checks, extract(epoch FROM last_seen)::float8 FROM members "
    "WHERE expires_at > now() ORDER BY id"
)


def parse_url(url: str) -> tuple[str, str | None, int, float]:
    """Split hismon's own parameters off the URL: (libpq URL, schema, pool size, timeout).

    libpq rejects query parameters it does not know, so ours must go before it sees the URL.
    Values are re-encoded with %20 for spaces: libpq decodes percent escapes, not ``+``.
    """
    parts = urlsplit(url)
    if parts.scheme == "postgres":
        parts = parts._replace(scheme="postgresql")
    params = parse_qsl(parts.query, keep_blank_values=True)
    mine = {k: v for k, v in params if k in ("schema", "pool_size", "query_timeout")}
    rest = [(k, v) for k, v in params if k not in mine]
    if not any(k == "connect_timeout" for k, _ in rest):
        rest.append(("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT)))
    if not any(k == "application_name" for k, _ in rest):
        rest.append(("application_name", "hismon"))
    try:
        pool_size = int(mine.get("pool_size") or DEFAULT_POOL_SIZE)
        query_timeout = float(mine.get("query_timeout") or DEFAULT_QUERY_TIMEOUT)
    except ValueError:
        raise ValueError("state.url: pool_size and query_timeout must be numbers") from None
    if pool_size < 1 or query_timeout <= 0:
        raise ValueError("state.url: pool_size must be >= 1 and query_timeout > 0")
    schema = mine.get("schema") or None
    conninfo = urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))
    return conninfo, schema, pool_size, query_timeout


def _clean(value: Any) -> Any:
    """What PostgreSQL refuses and SQLite takes: NUL in text, NaN and infinity in JSON.

    A target that answers garbage can put a NUL byte into a check's message, and from there
    into an incident record. Refusing that row would stall the engine on every tick (the
    same save fails forever), so NUL becomes U+FFFD and a non-finite number becomes null.
    """
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _json(value: Any) -> Jsonb:
    return Jsonb(_clean(value))


def _session_ended(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.Error) and exc.sqlstate in SESSION_ENDED


class PostgresStore(StoreIdentity, Store):
    """The Store on PostgreSQL, through a small pool of psycopg 3 async connections.

    A hand-rolled pool rather than psycopg_pool keeps the dependency list to
    ``psycopg[binary]`` (the ``postgres`` extra); all it needs is "reuse idle connections,
    at most N, drop broken ones", which is a few lines.
    """

    def __init__(self, url: str) -> None:
        self._conninfo, self.schema, self.pool_size, self.query_timeout = parse_url(url)
        parts = urlsplit(self._conninfo)
        # What the logs may say about the store: no user, no password, no parameters.
        self.where = f"postgresql://{parts.hostname or 'localhost'}:{parts.port or 5432}" \
            f"{parts.path or '/'}"
        self._idle: list[Conn] = []
        self._slots: asyncio.Semaphore | None = None
        self._open = False
        self.reconnects = 0
        """Connections dropped because they broke; visible for metrics and tests."""
        self.fence: tuple[str, str, int] | None = None
        """(lease name, holder, term) while this instance leads: every step record, enqueue
        and send attempt checks it in its own transaction (SPEC 9 fencing)."""

    def __repr__(self) -> str:
        return f"PostgresStore({self.where}, schema={self.schema or 'default'})"

    # ---- connections -------------------------------------------------------------------

    async def _connect(self) -> Conn:
        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        try:
            if self.schema:
                await conn.execute(sql.SQL("SET search_path TO {}").format(
                    sql.Identifier(self.schema)))
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _run(self, op: Callable[[Conn], Awaitable[T]], *, repeatable: bool = True) -> T:
        """Run `op` on a pooled connection, within `query_timeout`.

        `repeatable`: running `op` twice cannot apply it twice, so a failure on a stale
        connection may be retried on a fresh one.
        """
        if not self._open or self._slots is None:
            raise RuntimeError("store is not open")
        for attempt in (1, 2):
            async with self._slots:
                reused = bool(self._idle)
                conn = self._idle.pop() if reused else await self._connect()
                try:
                    async with asyncio.timeout(self.query_timeout):
                        result = await op(conn)
                except BaseException as exc:
                    # A constraint error or a record that would not encode leaves the link
                    # fine; after a timeout or a cancellation its state is unknown.
                    healthy = (not conn.closed and not conn.broken
                               and isinstance(exc, Exception)
                               and not isinstance(exc, TimeoutError)
                               and conn.info.transaction_status == TransactionStatus.IDLE)
                    if healthy and self._open:
                        self._idle.append(conn)
                        raise
                    with contextlib.suppress(Exception):
                        await conn.close()
                    if not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
                        if isinstance(exc, TimeoutError):
                            raise psycopg.OperationalError(
                                f"store call timed out after {self.query_timeout:g}s") from None
                        raise
                    self.reconnects += 1
                    await self._drop_idle()  # a restarted server killed them all
                    if attempt == 1 and reused and (repeatable or _session_ended(exc)):
                        continue
                    raise
                if self._open:
                    self._idle.append(conn)
                else:
                    await conn.close()
                return result
        raise AssertionError("unreachable")

    # ---- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        self._slots = asyncio.Semaphore(self.pool_size)
        self._open = True
        try:
            await self._run(self._create_schema)
            self.store_id, self.created = await self._run(self._identity)
        except BaseException:
            await self.close()
            raise

    async def _identity(self, conn: Conn) -> tuple[str, bool]:
        cur = await conn.execute("SELECT value FROM settings WHERE key = 'store_id'")
        row = await cur.fetchone()
        if row is not None:  # no write: a role that lost INSERT still opens
            return str(row[0]), False
        cur = await conn.execute("INSERT INTO settings(key, value) VALUES ('store_id', %s) "
                                 "ON CONFLICT (key) DO NOTHING", (secrets.token_hex(8),))
        created = cur.rowcount == 1
        cur = await conn.execute("SELECT value FROM settings WHERE key = 'store_id'")
        row = await cur.fetchone()
        assert row is not None
        return str(row[0]), created

    async def identity_problem(self) -> str | None:
        async def op(conn: Conn) -> str | None:
            try:
                cur = await conn.execute("SELECT value FROM settings WHERE key = 'store_id'")
            except psycopg.errors.UndefinedTable:
                where = f"schema {self.schema}" if self.schema else "its schema"
                return f"hismon's tables are gone from {self.where} ({where} dropped?)"
            row = await cur.fetchone()
            if row is None:
                return "the state database lost its identity row (settings.store_id deleted)"
            if row[0] != self.store_id:
                return f"the state database is another store now (identity {row[0][:8]}, " \
                       f"was {(self.store_id or '')[:8]})"
            return None

        return await self._run(op)

    async def _create_schema(self, conn: Conn) -> None:
        # Two instances starting together would race on CREATE ... IF NOT EXISTS (it is not
        # atomic in PostgreSQL: a duplicate pg_type row fails one of them). A transaction
        # advisory lock per schema makes them take turns.
        async with conn.transaction():
            if self.schema:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                                   (f"hismon-schema:{self.schema}",))
                await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(self.schema)))
            else:
                cur = await conn.execute("SELECT current_schema()")
                row = await cur.fetchone()
                if row is None or row[0] is None:
                    raise psycopg.ProgrammingError(
                        "state.url: no schema to create hismon's tables in (the search_path "
                        "names none that exists); add ?schema=NAME")
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                                   (f"hismon-schema:{row[0]}",))
            for statement in SCHEMA:
                await conn.execute(statement)

    async def close(self) -> None:
        self._open = False
        await self._drop_idle()

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1"))

    # ---- incidents -----------------------------------------------------------------------

    async def next_incident_number(self) -> int:
        async def op(conn: Conn) -> int:
            cur = await conn.execute("SELECT nextval('incident_seq')")
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

        # Not repeatable: a retry after a lost answer would skip a number (harmless, but
        # only a refused statement is retried).
        return await self._run(op, repeatable=False)

    async def save_incident(self, incident: Incident) -> None:
        await self._run(lambda conn: conn.execute(
            "INSERT INTO incidents(id, system, status, started_at, resolved_at, drill, record) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (id) DO UPDATE SET "
            "status = excluded.status, resolved_at = excluded.resolved_at, "
            "record = excluded.record, started_at = excluded.started_at",
            (incident.id, incident.system, incident.status, incident.started_at,
             incident.resolved_at, incident.drill, _json(incident.to_record()))))

    async def get_incident(self, incident_id: str) -> Incident | None:
        async def op(conn: Conn) -> Incident | None:
            cur = await conn.execute("SELECT record FROM incidents WHERE id = %s",
                                     (incident_id,))
            row = await cur.fetchone()
            return Incident.from_record(row[0]) if row else None

        return await self._run(op)

    async def list_incidents(
        self, status: str | None = None, since: float | None = None, limit: int = 500,
        system: str | None = None,
    ) -> list[Incident]:
        query, args = shared.list_incidents(status, since, limit, "%s", system)

        async def op(conn: Conn) -> list[Incident]:
            cur = await conn.execute(query, args)
            return [Incident.from_record(r[0]) for r in await cur.fetchall()]

        return await self._run(op)

    async def add_timeline(self, entry: TimelineEntry) -> None:
        # Not repeatable: a retry after a lost answer could show an entry twice.
        await self._run(lambda conn: conn.execute(
            "INSERT INTO timeline(incident_id, at, kind, text, data) VALUES (%s,%s,%s,%s,%s)",
            (entry.incident_id, entry.at, entry.kind, _clean(entry.text), _json(entry.data))),
            repeatable=False)

    async def timeline(self, incident_id: str) -> list[TimelineEntry]:
        async def op(conn: Conn) -> list[TimelineEntry]:
            cur = await conn.execute(
                "SELECT incident_id, at, kind, text, data FROM timeline "
                "WHERE incident_id = %s ORDER BY seq", (incident_id,))
            return [TimelineEntry(r[0], r[1], r[2], r[3], r[4]) for r in await cur.fetchall()]

        return await self._run(op)

    # ---- plan steps and the outbox ---------------------------------------------------

    async def record_step(
        self, incident_id: str, step_key: str, occurrence: int, at: float, status: str,
        messages: list[OutboxMessage],
    ) -> bool:
        async def op(conn: Conn) -> list[tuple[OutboxMessage, int]] | None:
            async with conn.transaction():
                await self._check_fence(conn)
                cur = await conn.execute(
                    "INSERT INTO plan_steps(incident_id, step_key, occurrence, at, status) "
                    "VALUES (%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                    (incident_id, step_key, occurrence, at, status))
                if cur.rowcount == 0:
                    return None  # another tick or instance recorded it: enqueue nothing
                return await _insert_messages(conn, messages)

        inserted = await self._run(op)
        if inserted is None:
            return False
        for message, new_id in inserted:  # ids only once the transaction committed
            message.id = new_id
        return True

    async def steps_recorded(self, incident_id: str) -> dict[tuple[str, int], str]:
        async def op(conn: Conn) -> dict[tuple[str, int], str]:
            cur = await conn.execute(
                "SELECT step_key, occurrence, status FROM plan_steps WHERE incident_id = %s",
                (incident_id,))
            return {(r[0], int(r[1])): r[2] for r in await cur.fetchall()}

        return await self._run(op)

    async def enqueue(self, messages: list[OutboxMessage]) -> int:
        if not messages:
            return 0

        async def op(conn: Conn) -> list[tuple[OutboxMessage, int]]:
            async with conn.transaction():
                await self._check_fence(conn)
                return await _insert_messages(conn, messages)

        inserted = await self._run(op)
        for message, new_id in inserted:
            message.id = new_id
        return len(inserted)

    async def pending_messages(self, notifier: str | None = None) -> list[OutboxMessage]:
        return await self._messages(*shared.pending_messages(notifier, "%s"))

    async def list_messages(
        self, status: str | None = None, incident_id: str | None = None, limit: int = 500
    ) -> list[OutboxMessage]:
        return await self._messages(*shared.list_messages(status, incident_id, limit, "%s"))

    async def delivery_summary(self, since: float) -> list[tuple[str, str, str, int, float]]:
        async def op(conn: Conn) -> list[tuple[str, str, str, int, float]]:
            cur = await conn.execute(*shared.delivery_summary(since, "%s"))
            return [(r[0], r[1], r[2], int(r[3]), float(r[4])) for r in await cur.fetchall()]

        return await self._run(op)

    async def messages_by_keys(self, keys: list[str]) -> list[OutboxMessage]:
        if not keys:
            return []
        return await self._messages(*shared.messages_by_keys(keys, "%s"))

    async def _messages(self, query: str, args: list[Any]) -> list[OutboxMessage]:
        async def op(conn: Conn) -> list[OutboxMessage]:
            cur = await conn.execute(query, args)
            return [shared.message_from_row(r, r[5]) for r in await cur.fetchall()]

        return await self._run(op)

    async def update_message(self, message: OutboxMessage) -> None:
        args = [_clean(a) for a in shared.update_message_args(message)]
        await self._run(lambda conn: conn.execute(shared.update_message("%s"), args))

    async def update_payload(self, message: OutboxMessage) -> None:
        await self._run(lambda conn: conn.execute(
            shared.update_payload("%s"), (_json(message.payload), message.id)))

    # ---- silences, check states, heartbeats ------------------------------------------

    async def save_silence(self, silence: Silence) -> None:
        await self._run(lambda conn: conn.execute(
            "INSERT INTO silences(id, record) VALUES (%s, %s) "
            "ON CONFLICT (id) DO UPDATE SET record = excluded.record",
            (silence.id, _json(asdict(silence)))))

    async def delete_silence(self, silence_id: str) -> bool:
        async def op(conn: Conn) -> bool:
            cur = await conn.execute("DELETE FROM silences WHERE id = %s", (silence_id,))
            return cur.rowcount > 0

        return await self._run(op)

    async def list_silences(self) -> list[Silence]:
        async def op(conn: Conn) -> list[Silence]:
            cur = await conn.execute("SELECT record FROM silences ORDER BY id")
            return [Silence(**r[0]) for r in await cur.fetchall()]

        return await self._run(op)

    async def save_check_states(self, states: dict[str, dict[str, Any]]) -> None:
        if not states:
            return

        async def op(conn: Conn) -> None:
            # executemany pipelines the rows: one round trip for thousands of checks.
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(_SAVE_STATE, [(_clean(k), _json(v))
                                                    for k, v in states.items()])

        await self._run(op)

    async def load_check_states(self) -> dict[str, dict[str, Any]]:
        async def op(conn: Conn) -> dict[str, dict[str, Any]]:
            cur = await conn.execute("SELECT check_id, record FROM check_states")
            return {r[0]: r[1] for r in await cur.fetchall()}

        return await self._run(op)

    async def load_check_states_since(
        self, mark: StatesMark | None
    ) -> tuple[dict[str, dict[str, Any]], StatesMark | None]:
        """By transaction id: each save stamps its rows with its own (`saved_xid`), and a
        read returns the rows stamped at or after the oldest transaction still running when
        the previous read took its snapshot (`pg_snapshot_xmin`). A save that committed
        after that read began had either not started or was still running then, so its id
        is at least that horizon: nothing is missed, whatever order saves commit in; what a
        long transaction elsewhere holds back is only read again."""
        since = mark.at if mark is not None and mark.store == self.store_id else 0
        found, horizon = await self._run(functools.partial(_states_since, since=since))
        if horizon < since:  # the ids went back (a backup restored): read everything
            found, horizon = await self._run(functools.partial(_states_since, since=0))
        return found, StatesMark(self.store_id, horizon)

    async def save_heartbeat(self, check_id: str, at: float) -> None:
        # GREATEST: two instances receiving heartbeats must not move the time backwards.
        await self._run(lambda conn: conn.execute(
            "INSERT INTO heartbeats(check_id, at) VALUES (%s, %s) ON CONFLICT (check_id) "
            "DO UPDATE SET at = GREATEST(heartbeats.at, excluded.at)", (check_id, at)))

    async def save_vantage(self, instance: str, states: dict[str, str], at: float) -> None:
        rows = [(check_id, instance, state, at) for check_id, state in states.items()]
        if not rows:
            return
        await self._run(lambda conn: conn.cursor().executemany(
            "INSERT INTO vantage(check_id, instance, state, at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (check_id, instance) DO UPDATE SET state = excluded.state, "
            "at = excluded.at", rows))

    async def load_vantage(self, since: float) -> dict[str, dict[str, str]]:
        async def op(conn: Conn) -> dict[str, dict[str, str]]:
            cur = await conn.execute(
                "SELECT check_id, instance, state FROM vantage WHERE at >= %s", (since,))
            found: dict[str, dict[str, str]] = {}
            for check_id, instance, state in await cur.fetchall():
                found.setdefault(check_id, {})[instance] = state
            return found

        return await self._run(op)

    async def link_key(self) -> bytes:
        async def op(conn: Conn) -> bytes:
            await conn.execute("INSERT INTO settings(key, value) VALUES ('link_key', %s) "
                               "ON CONFLICT (key) DO NOTHING", (secrets.token_hex(32),))
            cur = await conn.execute("SELECT value FROM settings WHERE key = 'link_key'")
            row = await cur.fetchone()
            assert row is not None
            return bytes.fromhex(row[0])

        return await self._run(op)

    async def add_link_action(self, action: dict[str, Any], at: float) -> None:
        await self._run(lambda conn: conn.execute(
            "INSERT INTO link_actions(at, record) VALUES (%s, %s)", (at, _json(action))),
            repeatable=False)

    async def link_actions(self) -> list[tuple[int, dict[str, Any]]]:
        async def op(conn: Conn) -> list[tuple[int, dict[str, Any]]]:
            cur = await conn.execute("SELECT id, record FROM link_actions ORDER BY id")
            return [(int(r[0]), dict(r[1])) for r in await cur.fetchall()]

        return await self._run(op)

    async def done_link_action(self, action_id: int) -> None:
        await self._run(lambda conn: conn.execute(
            "DELETE FROM link_actions WHERE id = %s", (action_id,)))

    async def load_heartbeats(self) -> dict[str, float]:
        async def op(conn: Conn) -> dict[str, float]:
            cur = await conn.execute("SELECT check_id, at FROM heartbeats")
            return {r[0]: float(r[1]) for r in await cur.fetchall()}

        return await self._run(op)

    # ---- history -------------------------------------------------------------------------

    async def save_check_buckets(self, rows: list[CheckBucket]) -> None:
        if not rows:
            return
        values = [(_clean(r.check_id), r.start, _clean(r.system), r.worst, r.n, r.lat_min,
                   r.lat_sum, r.lat_max, r.down_s, r.bad_s, r.seen_s) for r in rows]

        async def op(conn: Conn) -> None:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO history_checks AS h (check_id, start, system, worst, n, "
                    "lat_min, lat_sum, lat_max, down_s, bad_s, seen_s) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                    "ON CONFLICT (system, start, check_id) DO UPDATE SET "
                    "worst = GREATEST(h.worst, excluded.worst), n = h.n + excluded.n, "
                    "lat_min = LEAST(h.lat_min, excluded.lat_min), "
                    "lat_sum = h.lat_sum + excluded.lat_sum, "
                    "lat_max = GREATEST(h.lat_max, excluded.lat_max), "
                    "down_s = h.down_s + excluded.down_s, bad_s = h.bad_s + excluded.bad_s, "
                    "seen_s = h.seen_s + excluded.seen_s",
                    values)

        # Not repeatable: a retry after a lost commit would count the probes twice.
        await self._run(op, repeatable=False)

    async def load_check_buckets(
        self, since: float, until: float | None = None, system: str | None = None
    ) -> list[CheckBucket]:
        query = shared.check_buckets(since, until, system, "%s")

        async def op(conn: Conn) -> list[CheckBucket]:
            cur = await conn.execute(*query)
            return [CheckBucket(*r) for r in await cur.fetchall()]

        return await self._run(op)

    async def system_worst(self, since: float, until: float) -> list[SystemWorst]:
        async def op(conn: Conn) -> list[SystemWorst]:
            cur = await conn.execute(*shared.system_worst(since, until, "%s", "LEAST"))
            return [(r[0], float(r[1]), int(r[2]), float(r[3]), float(r[4]))
                    for r in await cur.fetchall()]

        return await self._run(op)

    async def history_marker(self) -> float | None:
        async def op(conn: Conn) -> float | None:
            cur = await conn.execute(shared.HISTORY_MARKER)
            row = await cur.fetchone()
            return float(row[0]) if row else None

        return await self._run(op)

    async def rollup_history(
        self, expected: float | None, upto: float, rows: list[SystemBucket]
    ) -> bool:
        values = [(r.resolution, _clean(r.system), r.start, r.worst, r.ok_s, r.degraded_s,
                   r.down_s, r.maint_s) for r in rows]

        async def op(conn: Conn) -> bool:
            async with conn.transaction():
                # One advisory lock orders two leaders of overlapping terms: the second sees the
                # first's marker and gives up.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('hismon-history'))")
                cur = await conn.execute(shared.HISTORY_MARKER)
                row = await cur.fetchone()
                if (float(row[0]) if row else None) != expected:
                    return False
                async with conn.cursor() as many:
                    await many.executemany(
                        "INSERT INTO history_systems AS h (resolution, system, start, worst, "
                        "ok_s, degraded_s, down_s, maint_s) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) "
                        "ON CONFLICT (resolution, system, start) DO UPDATE SET "
                        "worst = GREATEST(h.worst, excluded.worst), "
                        "ok_s = h.ok_s + excluded.ok_s, "
                        "degraded_s = h.degraded_s + excluded.degraded_s, "
                        "down_s = h.down_s + excluded.down_s, "
                        "maint_s = h.maint_s + excluded.maint_s", values)
                await conn.execute(
                    "INSERT INTO history_meta(key, value) VALUES ('rolled_upto', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (upto,))
                return True

        # Repeatable: a retry finds the marker moved and adds nothing.
        return await self._run(op)

    async def load_system_buckets(
        self, resolution: str, since: float, until: float | None = None,
        system: str | None = None,
    ) -> list[SystemBucket]:
        query = shared.system_buckets(resolution, since, until, system, "%s")

        async def op(conn: Conn) -> list[SystemBucket]:
            cur = await conn.execute(*query)
            return [SystemBucket(*r) for r in await cur.fetchall()]

        return await self._run(op)

    async def sum_system_buckets(
        self, resolution: str, since: float, until: float | None = None
    ) -> dict[str, SystemBucket]:
        query = shared.summed_system_buckets(resolution, since, until, "%s")

        async def op(conn: Conn) -> dict[str, SystemBucket]:
            cur = await conn.execute(*query)
            return {r[0]: SystemBucket(r[0], resolution, since, int(r[1]), *r[2:])
                    for r in await cur.fetchall()}

        return await self._run(op)

    async def prune_history(self, cutoffs: dict[str, float]) -> int:
        async def op(conn: Conn) -> int:
            deleted = 0
            if "check" in cutoffs:
                cur = await conn.execute("DELETE FROM history_checks WHERE start < %s",
                                         (cutoffs["check"],))
                deleted += cur.rowcount
            for resolution in ("slot", "hour", "day"):
                if resolution in cutoffs:
                    cur = await conn.execute(
                        "DELETE FROM history_systems WHERE resolution = %s AND start < %s",
                        (resolution, cutoffs[resolution]))
                    deleted += cur.rowcount
            return deleted

        return await self._run(op)

    async def add_samples(self, rows: list[tuple[str, float, float]],
                          keep_since: dict[str, float]) -> None:
        touched = [(c, keep_since[c]) for c in {row[0] for row in rows} if c in keep_since]

        async def op(conn: Conn) -> None:
            async with conn.transaction():
                cur = conn.cursor()
                if rows:
                    await cur.executemany(
                        "INSERT INTO forecast_samples(check_id, at, value) VALUES (%s, %s, %s) "
                        "ON CONFLICT (check_id, at) DO UPDATE SET value = excluded.value", rows)
                if touched:
                    await cur.executemany(
                        "DELETE FROM forecast_samples WHERE check_id = %s AND at < %s", touched)
                await conn.execute(
                    "DELETE FROM forecast_samples WHERE NOT (check_id = ANY(%s))",
                    (list(keep_since),))

        await self._run(op)

    async def load_samples(self) -> dict[str, list[tuple[float, float]]]:
        async def op(conn: Conn) -> dict[str, list[tuple[float, float]]]:
            cur = await conn.execute(
                "SELECT check_id, at, value FROM forecast_samples ORDER BY check_id, at")
            found: dict[str, list[tuple[float, float]]] = {}
            for check_id, at, value in await cur.fetchall():
                found.setdefault(check_id, []).append((float(at), float(value)))
            return found

        return await self._run(op)

    # ---- leader lease (used by monitor.cluster.leader, not part of Store) --------------------

    async def acquire_lease(
        self, name: str, me: str, ttl: float
    ) -> tuple[str | None, float, int]:
        """Take or renew lease `name` for `me` if it is ours or expired.

        Returns (holder after the call, seconds left on the holder's lease by the database's
        clock, the holder's term). Repeatable: renewing twice only moves the expiry; the
        term grows only when the holder changes (SPEC 9 fencing).
        """
        async def op(conn: Conn) -> tuple[str | None, float, int]:
            cur = await conn.execute(_ACQUIRE_LEASE, {"name": name, "me": me, "ttl": ttl})
            row = await cur.fetchone()
            if row is None:  # someone else holds it (a follower's poll: two round trips)
                cur = await conn.execute(_LEASE_HOLDER, (name,))
                row = await cur.fetchone()
            return (row[0], float(row[1]), int(row[2])) if row else (None, 0.0, 0)

        return await self._run(op)

    async def release_lease(self, name: str, me: str) -> bool:
        """Give the lease up now so another instance need not wait for it to run out."""
        async def op(conn: Conn) -> bool:
            async with conn.transaction():
                await conn.execute(_REMEMBER_TERM, (name, me))
                cur = await conn.execute("DELETE FROM leader WHERE name = %s AND holder = %s",
                                         (name, me))
                return cur.rowcount > 0

        return await self._run(op)

    async def current_term(self, name: str) -> int:
        """The term of whoever holds lease `name` now (0 when nobody does)."""
        async def op(conn: Conn) -> int:
            cur = await conn.execute(
                "SELECT term FROM leader WHERE name = %s AND expires_at > now()", (name,))
            row = await cur.fetchone()
            return int(row[0]) if row else 0

        return await self._run(op)

    async def _check_fence(self, conn: Conn) -> float:
        """Inside the caller's transaction: raise `Fenced` unless our term still holds;
        returns the seconds left on our lease (infinite without a fence).

        `FOR SHARE` locks the lease row until the transaction ends, so a takeover (which
        updates that row) waits for this write to commit, or this write sees the new term.
        """
        if self.fence is None:
            return math.inf
        name, me, term = self.fence
        cur = await conn.execute(
            "SELECT extract(epoch FROM expires_at - now())::float8 FROM leader "
            "WHERE name = %s AND holder = %s AND term = %s AND expires_at > now() FOR SHARE",
            (name, me, term))
        row = await cur.fetchone()
        if row is None:
            raise Fenced(f"leadership term {term} of {me} is over")
        return float(row[0])

    async def begin_attempt(self, message: OutboxMessage) -> float | None:
        """Before a send: check the term and count the attempt, in one transaction.

        Returns the seconds left on this leader's lease (the send must end by then), or
        None: another instance leads now and this one must not send.
        """
        async def op(conn: Conn) -> float | None:
            async with conn.transaction():
                try:
                    left = await self._check_fence(conn)
                except Fenced:
                    return None
                await conn.execute(
                    "UPDATE outbox SET attempts = %s WHERE id = %s AND status = 'pending'",
                    (message.attempts, message.id))
                return left

        return await self._run(op)

    # ---- cluster members (used by monitor.cluster.membership, not part of Store) ----------

    async def member_heartbeat(
        self, me: str, ttl: float, checks: int
    ) -> list[tuple[str, int, float]]:
        """Renew `me`'s member row and return the live members: (id, checks, last_seen).

        Liveness is judged by the database's clock, like the lease, so clock skew between
        machines cannot make a member look dead or alive to some and not to others.
        """
        async def op(conn: Conn) -> list[tuple[str, int, float]]:
            await conn.execute(_MEMBER_HEARTBEAT, {"me": me, "ttl": ttl, "checks": checks})
            cur = await conn.execute(_LIVE_MEMBERS)
            return [(r[0], int(r[1]), float(r[2])) for r in await cur.fetchall()]

        return await self._run(op)

    async def member_leave(self, me: str) -> None:
        """A clean stop: the others take this member's checks at once, not after the TTL."""
        async def op(conn: Conn) -> None:
            await conn.execute("DELETE FROM members WHERE id = %s", (me,))

        await self._run(op)


async def _states_since(conn: Conn, since: int) -> tuple[dict[str, dict[str, Any]], int]:
    """The states saved by transactions from `since` on, and the horizon for the next read."""
    cur = await conn.execute(_STATES_SINCE, (str(since),))
    found: dict[str, dict[str, Any]] = {}
    horizon = 0
    for check_id, record, xmin in await cur.fetchall():
        if check_id is None:
            horizon = int(xmin)
        else:
            found[check_id] = record
    return found, horizon


async def _insert_messages(
    conn: Conn, messages: list[OutboxMessage]
) -> list[tuple[OutboxMessage, int]]:
    """Insert the messages with new keys, inside the caller's transaction."""
    inserted = []
    for m in messages:
        args = shared.insert_message_args(m, None)
        cur = await conn.execute(_INSERT_MESSAGE, (
            *[_clean(a) for a in args[:4]], _json(m.payload), *[_clean(a) for a in args[5:]]))
        row = await cur.fetchone()
        if row is not None:
            inserted.append((m, int(row[0])))
    return inserted


