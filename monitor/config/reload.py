"""Config reloads off the event loop, coalesced, swapped atomically (issue 11, SPEC §12).

Parsing and validating a config of thousands of checks takes seconds of CPU. Done on the event
loop, twenty SIGHUPs in two seconds froze `/healthz` for a minute and missed probe runs. Here
the load runs in a worker thread (as Icinga validates in a child), at most one at a time;
requests that arrive meanwhile collapse into a single further load, which starts after the
running one and so sees the newest files. Only the final swap runs on the loop, in one step
with no `await` inside, so no probe or engine tick ever sees half of each config.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import re
import sys
import time
from collections.abc import Callable

import structlog

from monitor.config.loader import ConfigError, load_config
from monitor.config.model import Config
from monitor.core.collector import collector_paused
from monitor.core.text import first_line

log = structlog.get_logger("hismon.reload")

LOAD_SWITCH_INTERVAL = 0.0005
"""The interpreter's thread switch interval while a reload loads (default 5 ms).

The load holds the GIL for the CPU second or so it takes; each time the loop thread drops
the GIL (every epoll and socket call) it must wait for the loader to be forced to give it
back, up to the switch interval. At 1,000 probes/s that wait, not the load's CPU, is what
made probes late during a reload: with 0.5 ms the loop gets the GIL back at once and the
load runs in the gaps."""

MIN_GAP = 0.5
"""Seconds from the start of one load to the start of the next. A load of 1,500 checks now
takes well under a tenth of a second, so without a gap a burst of SIGHUPs (or a config tool
writing several files) became one load per signal; requests within the gap join the load
that waits for it, which then reads the newest files."""


class Reloader:
    """Coalescing reload runner: `request()` returns whether the config it waited for applied.

    `apply` swaps the new config in (on the loop, synchronously); `reject` is told the problems
    of a config that did not load. Both are the daemon's.
    """

    def __init__(self, path: str, apply: Callable[[Config, str], None],
                 reject: Callable[[ConfigError], None],
                 load: Callable[[str], Config] = load_config,
                 watch: WatchedFiles | None = None, min_gap: float = MIN_GAP,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self._apply, self._reject, self._load = path, apply, reject, load
        self.min_gap, self._clock = min_gap, clock
        self._last_start = -math.inf
        self._waiting: list[str] | None = None
        """The reasons of the load that is waiting out `min_gap` (it has read nothing yet)."""
        self.watch = watch
        """The daemon's file watch: told what each load read, so that a SIGHUP after an edit
        is one load, not a second one when the watch notices the same edit."""
        self._running: asyncio.Task[bool] | None = None
        self._queued: asyncio.Future[bool] | None = None
        self._queued_reasons: list[str] = []
        self.loads = 0
        """How many loads ran (tests check that a burst of requests was coalesced)."""

    def request(self, reason: str = "SIGHUP") -> asyncio.Future[bool]:
        """Ask for a reload. While one runs, every further request shares the next one."""
        loop = asyncio.get_running_loop()
        if self._running is None or self._running.done():
            self._running = self._spawn([reason])
            return self._running
        if self._waiting is not None:  # the next load has not begun reading: join it
            self._waiting.append(reason)
            return self._running
        if self._queued is None:
            self._queued = loop.create_future()
            self._running.add_done_callback(lambda _t: self._start_queued())
        self._queued_reasons.append(reason)
        return self._queued

    def _start_queued(self) -> None:
        queued, reasons = self._queued, self._queued_reasons
        self._queued, self._queued_reasons = None, []
        if queued is None:
            return
        task = self._spawn(reasons)
        self._running = task

        def settle(done: asyncio.Task[bool]) -> None:
            if queued.done():
                return
            if done.cancelled():
                queued.cancel()
            elif done.exception() is not None:
                queued.set_exception(done.exception())  # type: ignore[arg-type]
            else:
                queued.set_result(done.result())

        task.add_done_callback(settle)

    def _spawn(self, reasons: list[str]) -> asyncio.Task[bool]:
        """A load task; within `min_gap` of the last load's start, requests join it at once."""
        if self._last_start + self.min_gap > self._clock():
            self._waiting = reasons
        return asyncio.get_running_loop().create_task(self._run(reasons), name="config-reload")

    async def _run(self, reasons: list[str]) -> bool:
        try:
            delay = self._last_start + self.min_gap - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            self._waiting = None
        self._last_start = self._clock()
        self.loads += 1
        reason = ", ".join(dict.fromkeys(reasons))
        previous = sys.getswitchinterval()
        sys.setswitchinterval(min(previous, LOAD_SWITCH_INTERVAL))
        if self.watch is not None:
            self.watch.reading()
        try:
            config = await asyncio.to_thread(self._load_frozen)
        except ConfigError as exc:
            self._reject(exc)
            return False
        except Exception as exc:  # an unexpected loader bug must not kill the daemon
            log.error("config_reload_failed", reason=reason, error=f"{type(exc).__name__}: {exc}")
            self._reject(ConfigError([]))
            return False
        finally:
            sys.setswitchinterval(previous)
        self._apply(config, reason)
        return True

    def _load_frozen(self) -> Config:
        """Load (in the worker thread), then freeze what the load made, collector still off.

        A load makes ~200,000 tracked objects at 10,000 checks with the collector paused
        (monitor.core.collector), all in the youngest generation: the first collection after
        it walked them all on whichever thread allocated next, usually the loop's, and
        stalled probing for 30-100 ms, then again in the next generation. Frozen, they are
        never walked (as after start-up, monitor.runtime.memtrim.settle); the old config's
        objects are freed by reference counting when the swap drops them. What a freeze
        also keeps is cyclic garbage made during the load, which the paused collector had
        not freed either (a reload is rare; a burst of requests is one or two loads).
        """
        with collector_paused():
            config = self._load(self.path)
            gc.freeze()
        return config

    async def wait(self) -> None:
        """Until no reload is running or queued (for shutdown and tests)."""
        while self._running is not None and not self._running.done():
            await asyncio.gather(self._running, return_exceptions=True)
            await asyncio.sleep(0)  # let a queued reload start


class WatchedFiles:
    """The mtimes of every file (and glob folder) a config came from: the reload trigger."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = list(paths)
        self.seen = self._stat()

    def _stat(self) -> dict[str, float | None]:
        stamps: dict[str, float | None] = {}
        for path in self.paths:
            try:
                stamps[path] = os.stat(path).st_mtime
            except OSError:
                stamps[path] = None
        return stamps

    def reading(self) -> None:
        """A load begins: the files as they are now are what it reads, so the watch has no
        change to report for them (only for a change after this)."""
        self.seen = self._stat()

    def changed(self) -> bool:
        now = self._stat()
        if now == self.seen:
            return False
        self.seen = now
        return True

    def follow(self, paths: list[str]) -> None:
        """After a reload: watch the new set of files (an include may have been added)."""
        if paths and paths != self.paths:
            self.paths = list(paths)
            self.seen = self._stat()


_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^@/\s]+@")


def startup_failure(exc: BaseException, config: Config | None = None) -> str:
    """One line for a failure of `run` at start-up; no traceback, no password."""
    text = first_line(str(exc), limit=None) or type(exc).__name__
    store = ""
    if config is not None and not isinstance(exc, OSError | ConfigError):
        url = _PASSWORD.sub(r"\1***@", config.state.url)
        store = f" (state.url {url})" if _from_store(exc) else ""
    text = _PASSWORD.sub(r"\1***@", text)
    if config is not None:
        for secret in _url_password(config.state.url):
            text = text.replace(secret, "***")
    kind = "" if isinstance(exc, OSError) else f"{type(exc).__name__}: "
    return f"cannot start: {kind}{text}{store}"[:500]


def _from_store(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith(("psycopg", "sqlite3", "aiosqlite", "monitor.store"))


def _url_password(url: str) -> list[str]:
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [p for p in {password, unquote(password or "")} if p and len(p) >= 3]
