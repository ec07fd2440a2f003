"""Oracle check (python-oracledb in thin mode: pure Python, no Instant Client needed).

DSN: `oracle://user:password@host:1521/SERVICE_NAME` (or host/port/user/password and
`database` as the service name). Typical queries: tablespace usage from
`dba_tablespace_usage_metrics`, Data Guard apply lag from `v$dataguard_stats`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from typing import Any, Literal

from pydantic import model_validator

from checks.base import ProbeContext
from checks.database import DatabaseCheck, Failure, Progress, Target
from monitor.core.text import first_line

_AUTH = {"ORA-01017", "ORA-28000", "ORA-28001", "ORA-01005", "ORA-01045", "ORA-28040",
         "ORA-01004", "ORA-28009", "ORA-01031"}
_UNAVAILABLE = {"ORA-12514", "ORA-12505", "ORA-12528", "ORA-12526", "ORA-12527",
                "ORA-01033", "ORA-01034", "ORA-01089", "ORA-01090", "ORA-00257"}
_CAPACITY = {"ORA-00018", "ORA-00020", "ORA-12516", "ORA-12518", "ORA-12519", "ORA-12520"}
_SIMILAR = re.compile(r"Similar to (ORA-\d{5})")
_CLOSED = {"DPY-4011", "ORA-12537", "ORA-03113", "ORA-03135"}


class OracleCheck(DatabaseCheck):
    type: Literal["oracle"]
    query: str = "SELECT 1 FROM DUAL"

    schemes = ("oracle",)
    default_port = 1521
    driver = ("oracledb", "oracle")
    product = "Oracle"

    @model_validator(mode="after")
    def _service_name_given(self) -> OracleCheck:
        if self.target().database is None:
            raise ValueError("an oracle check needs the service name: "
                             "oracle://user:password@host:1521/SERVICE or `database: SERVICE`")
        return self

    async def fetch_first_row(
        self, ctx: ProbeContext, target: Target, budget: float, progress: Progress
    ) -> tuple[Any, ...] | None:
        import oracledb

        conn = await oracledb.connect_async(
            user=target.user, password=target.password,
            host=await _resolve(target.host), port=target.port,
            service_name=target.database, tcp_connect_timeout=budget, retry_count=0,
            program="hismon",
        )
        try:
            progress.connected()
            with conn.cursor() as cursor:
                await cursor.execute(self.query)
                return await cursor.fetchone() if cursor.description else None
        finally:
            await conn.close()

    def classify(self, exc: Exception, progress: Progress) -> Failure | None:
        import oracledb

        if not isinstance(exc, oracledb.Error) or not exc.args:
            return None
        error = exc.args[0]
        code = getattr(error, "full_code", "") or ""
        lines = [line for line in str(getattr(error, "message", exc)).splitlines()
                 if line.strip() and not line.startswith("Help:")]
        # DPY-6005 wraps the real reason on the next line
        nested = next((line for line in lines[1:] if line[:4] in ("DPY-", "ORA-")), "")
        if code == "DPY-6005" and nested:
            code = nested.split(":", 1)[0]
        text = first_line(nested or (lines[0] if lines else code))
        similar = _SIMILAR.search(text)  # thin mode: "DPY-6001: ... (Similar to ORA-12514)"
        if similar:
            code = similar.group(1)
        if code in _AUTH:
            return Failure("auth", text)
        if code in _UNAVAILABLE:
            return Failure("database", text)
        if code in _CAPACITY:
            return Failure("capacity", text)
        if code in _CLOSED and progress.phase == "connect":
            return Failure("database", f"the server closed the connection during login ({code})")
        if code == "DPY-6005":
            return None if exc.__cause__ and isinstance(exc.__cause__, OSError) else \
                Failure("protocol", "no valid Oracle Net answer (DPY-6005)")
        if progress.phase == "connect":
            return Failure("protocol" if code.startswith("DPY-") else "database", text)
        return Failure("query", text)


async def _resolve(host: str) -> str:
    """Resolve the host without blocking: the thin driver calls getaddrinfo on the loop."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return str(infos[0][4][0])
