"""PostgreSQL check (psycopg 3, async): connect, run one query, judge its first value.

Typical queries: connection usage
`select count(*)*100.0/current_setting('max_connections')::int from pg_stat_activity`,
replication lag `select extract(epoch from now() - pg_last_xact_replay_timestamp())`.
"""

from __future__ import annotations

from typing import Any, Literal

from checks.base import ProbeContext
from checks.database import DatabaseCheck, Failure, Progress, Target
from monitor.core.text import first_line, scrub

# libpq reports connection failures as text only (no SQLSTATE), so we read the text.
_AUTH = ("password authentication failed", "authentication failed", "no pg_hba.conf entry",
         "role \"", "no password supplied", "password is required")
_UNAVAILABLE = ("the database system is starting up", "the database system is shutting down",
                "the database system is in recovery mode", "database system is not accepting")


class PostgresCheck(DatabaseCheck):
    type: Literal["postgres"]

    schemes = ("postgresql", "postgres")
    default_port = 5432
    driver = ("psycopg", "postgres")
    product = "PostgreSQL"
    dsn_params = None  # the DSN goes to libpq as is: sslmode, target_session_attrs...

    def _check_dsn(self, dsn: str) -> None:
        super()._check_dsn(dsn)
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        try:
            conninfo_to_dict(dsn)
        except psycopg.Error as exc:  # libpq's own words: `invalid URI query parameter: "x"`
            raise ValueError(f"`dsn`: {scrub(first_line(str(exc)), [dsn])}") from None

    async def fetch_first_row(
        self, ctx: ProbeContext, target: Target, budget: float, progress: Progress
    ) -> tuple[Any, ...] | None:
        import psycopg

        options: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(2, round(budget)),
            "application_name": "hismon",
        }
        if self.dsn is not None:
            conn = await psycopg.AsyncConnection.connect(self.dsn, **options)
        else:
            conn = await psycopg.AsyncConnection.connect(
                host=target.host, port=target.port, user=target.user,
                password=target.password, dbname=target.database, **options)
        async with conn:
            progress.connected()
            cursor = await conn.execute(self.query)
            return await cursor.fetchone() if cursor.description else None

    def classify(self, exc: Exception, progress: Progress) -> Failure | None:
        import psycopg

        if not isinstance(exc, psycopg.Error):
            return None
        state = exc.sqlstate or ""
        if state:
            primary = exc.diag.message_primary or first_line(str(exc))
            if state.startswith("28"):
                return Failure("auth", primary)
            if state == "3D000":
                return Failure("database", primary)
            if state == "53300":
                return Failure("capacity", primary)
            if state.startswith("57P"):
                return Failure("database", primary)
            return Failure("query", f"{primary} (SQLSTATE {state})")
        text = str(exc)
        detail = first_line(text.rsplit("failed: ", 1)[-1]).removeprefix("FATAL:").strip()
        lowered = text.lower()
        if "connection refused" in lowered:
            return Failure("network", "connection refused")
        if "failed to resolve host" in lowered or "could not translate host name" in lowered:
            return Failure("network", "DNS lookup failed")
        if "timeout expired" in lowered:
            return Failure("network", "connection timed out")
        if "no route to host" in lowered:
            return Failure("network", "host unreachable")
        if "too many clients" in lowered or "remaining connection slots" in lowered:
            return Failure("capacity", detail)
        if any(marker in lowered for marker in _UNAVAILABLE):
            return Failure("database", detail)
        if "database \"" in lowered and "does not exist" in lowered:
            return Failure("database", detail)
        if any(marker in lowered for marker in _AUTH):
            return Failure("auth", detail)
        if progress.phase == "connect":
            return Failure("protocol" if "server closed" not in lowered else "database", detail)
        return Failure("query", detail)
