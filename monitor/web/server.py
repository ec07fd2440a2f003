"""The HTTP server, bounded so that no client can take the descriptors probes need.

An attack once held ~20,000 idle, half-sent requests: the daemon reached its file-descriptor
limit, a healthy check failed with "Too many open files" and IT was paged for nothing. So:

- connections are capped below the process's descriptor limit, with a reserve kept for
  probes, the store and notifiers (`connection_limit`); a connection over the cap is
  answered 503 and closed at once;
- a request must arrive whole (headers and body) within `header_timeout` of the connection
  opening or going idle, or the connection is closed (slowloris);
- the accept batch (`backlog`) is small, so one burst cannot take the reserve either;
- the soft descriptor limit is raised to the hard one at start (`raise_fd_limit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time
from collections.abc import Iterator
from typing import Any

import h11
import structlog
from uvicorn.protocols.http.h11_impl import H11Protocol

from monitor.core.exhaustion import FDS_PER_PROBE, RESERVED_FDS

log = structlog.get_logger("hismon.http")

FDS_PER_CHECK = FDS_PER_PROBE
"""A probe holds a socket, sometimes two (a resolver, a redirect) while it runs; the probes
in flight are capped by what is left after this server's cap (`exhaustion.probe_budget`)."""
MAX_CONNECTIONS = 512
MIN_CONNECTIONS = 8
MAX_BACKLOG = 64
FD_LIMIT_WANTED = 65536

_REFUSED_TEXT = b"too many connections to hismon\n"
_REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (len(_REFUSED_TEXT), _REFUSED_TEXT))


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE towards the hard limit; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FD_LIMIT_WANTED if hard == resource.RLIM_INFINITY else min(hard, FD_LIMIT_WANTED)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    return int(soft) if soft != resource.RLIM_INFINITY else FD_LIMIT_WANTED


def probe_reserve(checks: int) -> int:
    return RESERVED_FDS + FDS_PER_CHECK * checks


HTTP_SHARE = 4
"""The HTTP server takes at most 1/HTTP_SHARE of the descriptors the probes could use."""


def connection_limit(fd_limit: int, checks: int, configured: int | None = None) -> int:
    """HTTP connections allowed at once: what the descriptor limit leaves after the reserve.

    The reserve is 2 per check while every check fits in flight at once; past that, the
    probes are capped by what is left (`exhaustion.probe_budget`), so the server takes at
    most a quarter of the room instead of the 8 connections a reserve of 2 per check left it
    from about 32,700 checks even at 65,536 descriptors.
    """
    room = fd_limit - probe_reserve(checks) - backlog(fd_limit, checks)
    share = (fd_limit - RESERVED_FDS - backlog(fd_limit, checks)) // HTTP_SHARE
    wanted = configured if configured is not None else MAX_CONNECTIONS
    return max(MIN_CONNECTIONS, min(wanted, max(room, share)))


def backlog(fd_limit: int, checks: int) -> int:
    """The accept batch: asyncio accepts up to this many sockets before closing any."""
    return max(8, min(MAX_BACKLOG, probe_reserve(checks) // 4))


def bounded_protocol(max_connections: int, header_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a connection cap and a deadline for the whole request."""

    class BoundedH11Protocol(H11Protocol):
        _refused_since = 0.0
        _refused_count = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._deadline: asyncio.TimerHandle | None = None
            self._over = len(self.server_state.connections) >= max_connections
            if self._over:
                self.transport = transport
                transport.write(_REFUSED)
                transport.close()
                self._count_refusal()
                return
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if not self._over:
                super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()  # the next request on this keep-alive connection gets its own time

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(header_timeout, self._too_slow)

        def _too_slow(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
                # Headers or body still incomplete: a client this slow is not a browser.
                self.transport.close()

        @classmethod
        def _count_refusal(cls) -> None:
            cls._refused_count += 1
            now = time.monotonic()
            if now - cls._refused_since >= 10.0:  # one line per 10 s, not one per socket
                log.warning("http_connection_limit", limit=max_connections,
                            refused=cls._refused_count)
                cls._refused_since, cls._refused_count = now, 0

    return BoundedH11Protocol


class EmbeddedServer:
    """uvicorn inside our loop, without uvicorn taking over the process's signals."""

    def __init__(self, app: Any, host: str, port: int, checks: int,
                 header_timeout: float = 10.0, max_connections: int | None = None) -> None:
        import uvicorn

        fd_limit = raise_fd_limit()
        self.fd_limit = fd_limit
        self.max_connections = connection_limit(fd_limit, checks, max_connections)
        self.backlog = backlog(fd_limit, checks)
        if fd_limit - probe_reserve(checks) < MIN_CONNECTIONS:
            log.warning("fd_limit_low", fd_limit=fd_limit, checks=checks,
                        hint="raise LimitNOFILE (systemd) or ulimit -n")
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off",
            http=bounded_protocol(self.max_connections, header_timeout),
            limit_concurrency=self.max_connections, backlog=self.backlog,
            timeout_keep_alive=5, server_header=False)

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        self._server = Server(config)
        self.failed = False

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    @property
    def should_exit(self) -> bool:
        return bool(self._server.should_exit)

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._server.should_exit = value

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve on `sockets` when given (bound early by the daemon), else bind itself."""
        try:
            await self._server.serve(sockets=sockets)
        except (SystemExit, OSError) as exc:
            self.failed = True
            log.error("http_failed", error=str(exc))
