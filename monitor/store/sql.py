"""SQL both stores share: outbox columns, row mapping and the filters of the list queries.

The two dialects differ in placeholders (`?` for SQLite, `%s` for psycopg), in how JSON
comes back (text vs. decoded) and in `WHERE 1=1` vs. `WHERE TRUE`; the statements are
otherwise the same text, kept here once so the stores cannot drift apart (no ORM: the SQL
is short and worth reading).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monitor.core.models import OutboxMessage

OUTBOX_COLUMNS = (
    "id, idempotency_key, notifier, kind, incident_id, payload, created_at, status, attempts, "
    "next_attempt_at, last_error, sent_at, answer"
)

INSERT_COLUMNS = (
    "idempotency_key, notifier, kind, incident_id, payload, created_at, status, attempts, "
    "next_attempt_at, last_error, sent_at, answer"
)
"""The columns a new outbox row is written with (`id` comes from the database)."""

Query = tuple[str, list[Any]]


def insert_values(mark: str) -> str:
    """`VALUES (...)` for `INSERT_COLUMNS`, in the dialect's placeholder."""
    return "VALUES (" + ",".join([mark] * INSERT_COLUMNS.count(",")) + f",{mark})"


def insert_message_args(message: OutboxMessage, payload: Any) -> tuple[Any, ...]:
    """The values of `INSERT_COLUMNS`; `payload` already encoded by the store's dialect."""
    m = message
    return (m.idempotency_key, m.notifier, m.kind, m.incident_id, payload, m.created_at,
            m.status, m.attempts, m.next_attempt_at, m.last_error, m.sent_at, m.answer)


def delivery_summary(since: float, mark: str) -> Query:
    """Per (notifier, kind, status) of the outbox since `since`: how many and the newest
    `created_at`, for the undelivered gauge and the failing-channel self-alert. Drill
    messages are left out: a drill never makes the daemon send anything (SPEC 10)."""
    return ("SELECT notifier, kind, status, COUNT(*), MAX(created_at) FROM outbox "
            f"WHERE status IN ('sent', 'failed', 'undeliverable') AND created_at >= {mark} "
            "AND (incident_id IS NULL OR substr(incident_id, 1, 6) <> 'drill-') "
            "GROUP BY notifier, kind, status", [since])


# ---- history (monitor/history): the reads; the upserts differ (max vs. GREATEST) --------

HISTORY_MARKER = "SELECT value FROM history_meta WHERE key = 'rolled_upto'"


def _in_range(sql: str, args: list[Any], until: float | None, system: str | None,
              mark: str) -> Query:
    if until is not None:
        sql += f" AND start < {mark}"
        args.append(until)
    if system is not None:
        sql += f" AND system = {mark}"
        args.append(system)
    return sql, args


def check_buckets(since: float, until: float | None, system: str | None, mark: str) -> Query:
    sql, args = _in_range("SELECT check_id, system, start, worst, n, lat_min, lat_sum, lat_max, "
                          f"down_s, bad_s, seen_s FROM history_checks WHERE start >= {mark}",
                          [since], until,
                          system, mark)
    return sql + " ORDER BY start", args


def system_worst(since: float, until: float, mark: str, least: str) -> Query:
    """Per system and bucket: the worst code and the largest down and down-or-degraded
    shares of its checks (`monitor.history.model.check_shares`, here in SQL: a roll-up reads
    one row per system). `least`: SQLite's two-argument `min`, PostgreSQL's `LEAST`."""
    def share(seconds: str, floor: int) -> str:
        return (f"CASE WHEN worst < {floor} THEN 0.0 WHEN seen_s > 0 "
                f"THEN {least}({seconds} / seen_s, 1.0) ELSE 1.0 END")

    down, bad = share("down_s", 2), share("bad_s", 1)
    return (f"SELECT system, start, max(worst), max({down}), max({bad}) FROM history_checks "
            f"WHERE start >= {mark} AND start < {mark} GROUP BY system, start", [since, until])


def system_buckets(resolution: str, since: float, until: float | None, system: str | None,
                   mark: str) -> Query:
    sql, args = _in_range(
        "SELECT system, resolution, start, worst, ok_s, degraded_s, down_s, maint_s "
        f"FROM history_systems WHERE resolution = {mark} AND start >= {mark}",
        [resolution, since], until, system, mark)
    return sql + " ORDER BY start", args


def summed_system_buckets(resolution: str, since: float, until: float | None,
                          mark: str) -> Query:
    sql, args = _in_range(
        "SELECT system, max(worst), sum(ok_s), sum(degraded_s), sum(down_s), sum(maint_s) "
        f"FROM history_systems WHERE resolution = {mark} AND start >= {mark}",
        [resolution, since], until, None, mark)
    return sql + " GROUP BY system", args


def update_message(mark: str) -> str:
    """What a send attempt changes; never the payload (see `update_payload`)."""
    return (f"UPDATE outbox SET status = {mark}, attempts = {mark}, next_attempt_at = {mark}, "
            f"last_error = {mark}, sent_at = {mark}, answer = {mark} WHERE id = {mark}")


def update_message_args(message: OutboxMessage) -> tuple[Any, ...]:
    return (message.status, message.attempts, message.next_attempt_at, message.last_error,
            message.sent_at, message.answer, message.id)


def update_payload(mark: str) -> str:
    """A pending fallback copy learns of one more failed primary (SPEC 6)."""
    return f"UPDATE outbox SET payload = {mark} WHERE id = {mark} AND status = 'pending'"


def list_incidents(status: str | None, since: float | None, limit: int, mark: str,
                   system: str | None = None) -> Query:
    sql, args = "SELECT record FROM incidents WHERE 1=1", list[Any]()
    if system is not None:
        sql += f" AND system = {mark}"
        args.append(system)
    if status:
        sql += f" AND status = {mark}"
        args.append(status)
    if since is not None:
        sql += f" AND (resolved_at IS NULL OR resolved_at >= {mark})"
        args.append(since)
    sql += f" ORDER BY started_at DESC LIMIT {mark}"
    args.append(limit)
    return sql, args


def pending_messages(notifier: str | None, mark: str) -> Query:
    sql, args = f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'pending'", list[Any]()
    if notifier is not None:
        sql += f" AND notifier = {mark}"
        args.append(notifier)
    return sql + " ORDER BY id", args


def list_messages(status: str | None, incident_id: str | None, limit: int, mark: str) -> Query:
    sql, args = f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE 1=1", list[Any]()
    if status:
        sql += f" AND status = {mark}"
        args.append(status)
    if incident_id:
        sql += f" AND incident_id = {mark}"
        args.append(incident_id)
    sql += f" ORDER BY id DESC LIMIT {mark}"
    args.append(limit)
    return sql, args


def messages_by_keys(keys: Sequence[str], mark: str) -> Query:
    marks = ", ".join([mark] * len(keys))
    return (f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE idempotency_key IN ({marks}) "
            "ORDER BY id", list(keys))


def message_from_row(row: Sequence[Any], payload: dict[str, Any]) -> OutboxMessage:
    """A row of `OUTBOX_COLUMNS`; `payload` already decoded by the store's dialect."""
    return OutboxMessage(
        id=row[0], idempotency_key=row[1], notifier=row[2], kind=row[3], incident_id=row[4],
        payload=payload, created_at=row[6], status=row[7], attempts=row[8],
        next_attempt_at=row[9], last_error=row[10], sent_at=row[11], answer=row[12])

