"""MySQL and MariaDB check (aiomysql): connect, run one query, judge its first value.

Typical queries: connection usage
`select count(*)*100/@@max_connections from information_schema.processlist`, replica lag
from `SHOW REPLICA STATUS` is better exported by a view or a small SELECT on
performance_schema.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from checks.base import ProbeContext
from checks.database import DatabaseCheck, Failure, Progress, Target
from monitor.core.text import first_line

_AUTH = {1044, 1045, 1698, 1862, 2059, 1251}  # access denied, password expired, auth plugin
_CAPACITY = {1040, 1203, 1226}  # too many connections, user limits
_NETWORK = {2002, 2003, 2005, 2006, 2013}  # cannot connect, unknown host, gone away, lost


class MysqlCheck(DatabaseCheck):
    type: Literal["mysql"]

    schemes = ("mysql", "mariadb")
    default_port = 3306
    driver = ("aiomysql", "mysql")
    product = "MySQL/MariaDB"
    dsn_params = ("charset",)

    def _check_dsn(self, dsn: str) -> None:
        super()._check_dsn(dsn)
        from pymysql.charset import charset_by_name

        charset = dict(parse_qsl(urlsplit(dsn).query)).get("charset")
        if charset is not None and charset_by_name(charset) is None:
            raise ValueError(f"`dsn` charset {charset[:40]!r} is not a MySQL character set "
                             "(e.g. utf8mb4)")

    async def fetch_first_row(
        self, ctx: ProbeContext, target: Target, budget: float, progress: Progress
    ) -> tuple[Any, ...] | None:
        import aiomysql

        conn = await aiomysql.connect(
            host=target.host, port=target.port, user=target.user or "",
            password=target.password or "", db=target.database,
            connect_timeout=budget, autocommit=True,
            charset=target.params.get("charset", "utf8mb4"), program_name="hismon",
        )
        try:
            progress.connected()
            async with conn.cursor() as cursor:
                await cursor.execute(self.query)
                return await cursor.fetchone() if cursor.description else None
        finally:
            conn.close()

    def classify(self, exc: Exception, progress: Progress) -> Failure | None:
        import pymysql

        if not isinstance(exc, pymysql.err.Error) or not exc.args:
            return None
        code = exc.args[0] if isinstance(exc.args[0], int) else 0
        text = first_line(str(exc.args[1]) if len(exc.args) > 1 else str(exc))
        if code in _AUTH:
            return Failure("auth", text)
        if code == 1049:
            return Failure("database", text)
        if code in _CAPACITY:
            return Failure("capacity", text)
        if code in _NETWORK and progress.phase == "connect":
            return None  # the wrapped socket error says it best (refused, DNS...)
        if code in _NETWORK:
            return Failure("network", f"connection lost during the query ({text})")
        if progress.phase == "connect":
            return Failure("protocol", text)
        return Failure("query", f"{text} (error {code})" if code else text)
