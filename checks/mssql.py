"""SQL Server check (python-tds, imported as `pytds`; pure Python, sync → `ctx.run_blocking`).

DSN: `mssql://user:password@host:1433/database` (or `sqlserver://`). Typical queries:
AlwaysOn redo queue, log space used (`DBCC SQLPERF` into a view), blocked sessions.

The TCP connection is opened here on the event loop and handed to the driver: a refused or
unreachable server answers at once with the exact reason (the driver would retry until its
login timeout), and name resolution never blocks a driver thread.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any, Literal

from checks.base import ProbeContext
from checks.database import DatabaseCheck, Failure, Progress, Target
from monitor.core.text import first_line

_AUTH = {18456, 18486, 18487, 18488, 18452, 18470, 18463}
_UNAVAILABLE = {4060, 927, 942, 945, 976, 983, 18401, 40613}
_CAPACITY = {17809, 10928, 10929}

logging.getLogger("pytds").setLevel(logging.ERROR)  # it logs every retry as a warning


class MssqlCheck(DatabaseCheck):
    type: Literal["mssql"]

    schemes = ("mssql", "sqlserver")
    default_port = 1433
    driver = ("pytds", "mssql")
    product = "SQL Server"

    async def fetch_first_row(
        self, ctx: ProbeContext, target: Target, budget: float, progress: Progress
    ) -> tuple[Any, ...] | None:
        sock = await _connect(target.host, target.port)
        try:
            return await ctx.run_blocking(self._login_and_query, sock, target, budget, progress)
        except asyncio.CancelledError:
            # wake the driver thread now instead of at its own timeout
            _shutdown(sock)
            raise

    def _login_and_query(
        self, sock: socket.socket, target: Target, budget: float, progress: Progress
    ) -> tuple[Any, ...] | None:
        import pytds

        sock.setblocking(True)
        try:
            conn = pytds.connect(
                dsn=target.host, port=target.port, user=target.user, password=target.password,
                database=target.database, autocommit=True, appname="hismon", sock=sock,
                # below our budget: after some errors (4060) the driver sleeps out its login
                # timeout, and must still report them before the probe's deadline
                login_timeout=budget * 0.8, timeout=budget, disable_connect_retry=True,
            )
        except TimeoutError as exc:
            # asyncio re-creates a TimeoutError crossing from the thread and drops its
            # cause, which is the real reason (4060, connection reset): raise that instead
            if isinstance(exc.__cause__, Exception):
                raise exc.__cause__ from None
            raise
        try:
            progress.connected()
            with conn.cursor() as cursor:
                cursor.execute(self.query)
                return cursor.fetchone() if cursor.description else None
        finally:
            conn.close()

    def classify(self, exc: Exception, progress: Progress) -> Failure | None:
        import pytds

        if isinstance(exc, pytds.ClosedConnectionError) and progress.phase == "connect":
            return Failure("database", "the server closed the connection during login")
        number = getattr(exc, "msg_no", 0) or 0
        if isinstance(exc, pytds.Error) and number:
            text = first_line(str(exc.args[0]) if exc.args else str(exc))
            if number in _AUTH:
                return Failure("auth", text)
            if number in _UNAVAILABLE:
                return Failure("database", text)
            if number in _CAPACITY:
                return Failure("capacity", text)
            if progress.phase == "query":
                return Failure("query", f"{text} (error {number})")
            return Failure("database", text)
        garbled = (pytds.Error, ValueError, KeyError, struct.error)
        if progress.phase == "connect" and isinstance(exc, garbled):
            return Failure("protocol", first_line(f"{type(exc).__name__}: {exc}"))
        return None


async def _connect(host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
