"""Telling hismon's own resource exhaustion from a target's failure (issue 11 item 2, SPEC 9).

A probe that cannot create a socket because *hismon* is out of file descriptors (EMFILE,
ENFILE) or socket buffers/memory (ENOBUFS, ENOMEM) has measured nothing about its target.
Reporting it as the target's CRIT once paged IT for a healthy system. Such a result is
UNKNOWN, judges nothing (no confirm count, no incident) and tells IT about hismon instead.

How a probe's errors are seen, in one place: the runner gives each probe a list
(`WITNESSED`, a context variable: sub-tasks of the probe share it); every OSError a check turns
into a message passes through `witness` (checks.base.network_reason does it), and whatever
escapes the probe is added by the runner. `exhaustion_error` then walks each exception's
chain (`__cause__`, `__context__`, aiohttp's `os_error`, exception groups), because aiohttp and
httpx wrap the OSError. Drivers written in C (libpq) raise no OSError at all, only text (or
"no error message available"): any other failed result is the monitor's only when the process
really is at its descriptor limit right now (`fd_usage`, counted at most twice a second); a
database server that answers "Too many open files" about itself stays the target's failure.
"""

from __future__ import annotations

import errno
import os
import resource
import time
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field

EXHAUSTION_ERRNOS: dict[int, str] = {
    errno.EMFILE: "fd",
    errno.ENFILE: "fd",
    errno.ENOBUFS: "memory",
    errno.ENOMEM: "memory",
}
"""errno → the resource hismon ran out of (the `resource` label of the metric)."""
RESOURCE_WORDS = {"fd": "file descriptors", "memory": "socket buffers or memory",
                  "loop": "time on its event loop"}
"""The resources a probe result can judge nothing for: `fd` and `memory` by errno; `loop`
when the probe's time limit expired while the loop was held up (monitor/probing/runner.py)."""

LATE_LIMIT = 0.25
"""Seconds, at least, a probe's time limit may expire late before a failure then counts as
hismon's own: at 0.1 of the timeout for longer ones (`late_limit`)."""


def late_limit(timeout: float) -> float:
    """How late a time limit may expire and its failure still judge the target.

    A healthy loop runs a timer within milliseconds (scheduler lag p99 <= 20 ms, SPEC 12);
    one that runs it a quarter second or a tenth of the timeout late was busy elsewhere
    (CPU starved, a stall), and the answer may have been waiting unread in the socket.
    """
    return max(LATE_LIMIT, 0.1 * timeout)

FD_MARGIN = 8
"""Free descriptors at or below which the process counts as out of them (C drivers only)."""

CLEAR_AFTER = 15.0
"""Seconds without an own-fault result before the self-alert's problem clears."""

USAGE_TTL = 0.5
"""Seconds a descriptor count is reused for: a big outage fails many probes at once."""

LOG_EVERY = 10.0
"""One log line per this many seconds, with a count, not one per probe."""

WITNESSED: ContextVar[list[BaseException] | None] = ContextVar("hismon_witnessed",
                                                               default=None)


def witness(exc: BaseException | None) -> None:
    """Record an exception a probe handled itself, for the runner to classify (bounded)."""
    seen = WITNESSED.get()
    if exc is not None and seen is not None and len(seen) < 16:
        seen.append(exc)


def exhaustion_error(excs: Iterable[BaseException]) -> OSError | None:
    """The first OSError meaning hismon itself is out of a resource, in any of the chains."""
    stack = list(excs)
    seen: set[int] = set()
    while stack and len(seen) < 64:
        exc = stack.pop(0)
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in EXHAUSTION_ERRNOS:
            return exc
        linked = [exc.__cause__, exc.__context__, getattr(exc, "os_error", None)]
        if isinstance(exc, BaseExceptionGroup):
            linked.extend(exc.exceptions)
        stack.extend(e for e in linked if isinstance(e, BaseException))
    return None


@dataclass(frozen=True, slots=True)
class FdUsage:
    """Descriptors in use (None: could not even count them, i.e. none left) and the limit."""

    open: int | None
    limit: int | None

    @property
    def exhausted(self) -> bool:
        if self.open is None:
            return True
        return self.limit is not None and self.limit - self.open <= FD_MARGIN

    def describe(self) -> str:
        limit = str(self.limit) if self.limit is not None else "unlimited"
        used = str(self.open) if self.open is not None else "all"
        return f"{used} of {limit} in use"


def fd_usage() -> FdUsage:
    """Open descriptors (/proc/self/fd) and the soft RLIMIT_NOFILE of this process."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = None if soft == resource.RLIM_INFINITY else int(soft)
    try:
        count: int | None = len(os.listdir("/proc/self/fd")) - 1  # the listing's own
    except OSError as exc:
        count = None if exc.errno in (errno.EMFILE, errno.ENFILE) else -1
    if count == -1:  # no /proc (not Linux): unknown, never "exhausted"
        return FdUsage(0, None)
    return FdUsage(count, limit)


RESERVED_FDS = 128
"""Descriptors kept for everything but probes and HTTP clients: logs, the loop (epoll, its
self-pipe), the listening socket, the `FdReserve`, libraries' own files."""
FDS_PER_PROBE = 2
"""A probe holds a socket, sometimes two (a resolver, a redirect) while it runs."""
FDS_PER_NOTIFIER = 2
"""A notifier's sender holds a connection (SMTP, a webhook's keep-alive), sometimes two."""
STORE_FDS = 4
"""SQLite's descriptors: the database, its WAL, shared-memory and journal files (PostgreSQL:
its `pool_size`)."""
MIN_PROBES = 4
"""Probes allowed in flight however low the limit: something must still be probed."""


def probe_budget(fd_limit: int, store: int, notifiers: int, http_connections: int,
                 http_backlog: int) -> int:
    """Probes allowed in flight at once, so that probing never takes hismon's last descriptors.

    (limit - RESERVED_FDS - store - FDS_PER_NOTIFIER x notifiers - HTTP connection cap - HTTP
    accept batch - FD_MARGIN) // FDS_PER_PROBE, at least MIN_PROBES. `store` is the store's
    connections (PostgreSQL's pool size; SQLite's database, journal and WAL files). The one
    place this is computed (docs/operations.md, "File descriptors").
    """
    room = (fd_limit - RESERVED_FDS - store - FDS_PER_NOTIFIER * notifiers - http_connections
            - http_backlog - FD_MARGIN)
    return max(MIN_PROBES, room // FDS_PER_PROBE)


@dataclass
class ExhaustionLog:
    """What hismon's own exhaustion cost, for the self-alert, the metric and the log."""

    last_at: float | None = None
    what: str = "fd"
    """The resource last run out of (a key of RESOURCE_WORDS)."""
    usage: FdUsage | None = None
    counts: dict[str, int] = field(default_factory=dict)
    _logged_at: float = 0.0
    _unlogged: int = 0
    _counted: tuple[float, FdUsage] | None = None

    def usage_now(self) -> FdUsage:
        """`fd_usage()`, reused for USAGE_TTL seconds (a failed result asks, not a good one)."""
        mono = time.monotonic()
        if self._counted is None or mono - self._counted[0] > USAGE_TTL:
            self._counted = (mono, fd_usage())
        return self._counted[1]

    def record(self, resource_name: str, usage: FdUsage | None, now: float) -> int:
        """Count one own-fault result; returns how many to log now (0: not yet)."""
        self.last_at, self.what = now, resource_name
        if usage is not None:
            self.usage = usage
        self.counts[resource_name] = self.counts.get(resource_name, 0) + 1
        self._unlogged += 1
        mono = time.monotonic()
        if mono - self._logged_at < LOG_EVERY:
            return 0
        self._logged_at, count, self._unlogged = mono, self._unlogged, 0
        return count

    def active(self, now: float) -> bool:
        return self.last_at is not None and now - self.last_at < CLEAR_AFTER


class FdReserve:
    """A few descriptors held back (on /dev/null) so that hismon can still tell IT it ran out.

    When probes fail for want of descriptors, the daemon frees these just before it sends the
    self-alert directly, and takes them back afterwards (when it can). Best effort: whatever
    else runs at that moment may take them first.
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._held: list[int] = []
        self.take()

    def take(self) -> None:
        while len(self._held) < self.size:
            try:
                self._held.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                return

    def release(self) -> None:
        while self._held:
            os.close(self._held.pop())

    @property
    def held(self) -> int:
        return len(self._held)
