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
import os
import re
from collections.abc import Callable

import structlog

from monitor.config.loader import ConfigError, load_config
from monitor.config.model import Config

log = structlog.get_logger("hismon.reload")


class Reloader:
    """Coalescing reload runner: `request()` returns whether the config it waited for applied.

    `apply` swaps the new config in (on the loop, synchronously); `reject` is told the problems
    of a config that did not load. Both are the daemon's.
    """

    def __init__(self, path: str, apply: Callable[[Config, str], None],
                 reject: Callable[[ConfigError], None],
                 load: Callable[[str], Config] = load_config) -> None:
        self.path, self._apply, self._reject, self._load = path, apply, reject, load
        self._running: asyncio.Task[bool] | None = None
        self._queued: asyncio.Future[bool] | None = None
        self._queued_reasons: list[str] = []
        self.loads = 0
        """How many loads ran (tests check that a burst of requests was coalesced)."""

    def request(self, reason: str = "SIGHUP") -> asyncio.Future[bool]:
        """Ask for a reload. While one runs, every further request shares the next one."""
        loop = asyncio.get_running_loop()
        if self._running is None or self._running.done():
            self._running = loop.create_task(self._run([reason]), name="config-reload")
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
        task = asyncio.get_running_loop().create_task(self._run(reasons), name="config-reload")
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

    async def _run(self, reasons: list[str]) -> bool:
        self.loads += 1
        reason = ", ".join(dict.fromkeys(reasons))
        try:
            config = await asyncio.to_thread(self._load, self.path)
        except ConfigError as exc:
            self._reject(exc)
            return False
        except Exception as exc:  # an unexpected loader bug must not kill the daemon
            log.error("config_reload_failed", reason=reason, error=f"{type(exc).__name__}: {exc}")
            self._reject(ConfigError([]))
            return False
        self._apply(config, reason)
        return True

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
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
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
