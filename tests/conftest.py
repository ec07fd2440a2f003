"""Shared fixtures: real servers on 127.0.0.1 and the real daemon as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
from aiohttp import web

from monitor.store.sqlite import SqliteStore
from notifiers.base import NotifyContext

REPO = Path(__file__).resolve().parent.parent


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Tests marked `both_loops` run on asyncio's loop and on uvloop, the daemon's default
    (monitor/runtime/loop.py); every other async test on asyncio's."""
    if item.get_closest_marker("both_loops") is not None:
        import uvloop

        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Clock:
    """A clock the test moves (`clock.now = t`), given wherever the code takes a `clock`."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def one_check_hospital(name: str, target: HttpTarget, port: int, *, server: str = "",
                       timeout: str = "500ms", systems: tuple[str, ...] = ("his",)) -> str:
    """A daemon config with one HTTP check on `target` (system `his`) and a plan that tells
    IT at once: what edge and attack tests run against. `server`: more keys of `server`."""
    listed = "\n".join(f"  - {{id: {s}, name: {s.upper()}, departments: [er], plan: p}}"
                       for s in systems)
    return f"""
site: {{name: {name}, timezone: Asia/Shanghai, language: en}}
server: {{listen: "127.0.0.1:{port}"{server}}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: {timeout}, retry_interval: 250ms, confirm: 2, recover: 2}}
roles: {{it_oncall: [it]}}
departments:
  - {{id: er, name: Emergency, notify: [it]}}
systems:
{listed}
checks:
  - {{id: his-web, system: his, type: http, url: "{target.url}"}}
notifiers:
  - {{id: it, type: console}}
plans:
  - id: p
    steps:
      - {{after: 0s, notify: [role:it_oncall], message: outage_it}}
"""


class LocalServer:
    """An aiohttp server on 127.0.0.1 at a free port; a subclass adds its routes."""

    shutdown_timeout = 60.0

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> Self:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None,
                                     shutdown_timeout=self.shutdown_timeout)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class HttpTarget(LocalServer):
    """A hospital system stand-in whose health we break and heal from the test."""

    def __init__(self) -> None:
        super().__init__()
        self.status = 200
        self.body = "UP"
        self.delay = 0.0
        self.hits = 0

    async def _handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text=self.body)

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"


class Receiver(LocalServer):
    """A webhook endpoint that records every delivery (and can be told to fail)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.fail_with: int | None = None
        self.fail_paths: set[str] | None = None
        """When set, only these paths fail with `fail_with`."""

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self.fail_with and (self.fail_paths is None or request.path in self.fail_paths):
            return web.Response(status=self.fail_with, text="down")
        body = json.loads(raw)
        body["_path"] = request.path
        body["_received_at"] = time.time()
        self.messages.append(body)
        self.headers.append(dict(request.headers))
        return web.json_response({"ok": True})

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{tail:.*}", self._handle)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def kinds(self, path: str | None = None) -> list[str]:
        return [m["kind"] for m in self.messages if path is None or m["_path"] == f"/{path}"]

    async def wait_for(self, predicate: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            await asyncio.sleep(0.1)
        seen = [(m["_path"], m["kind"]) for m in self.messages]
        raise AssertionError(f"timed out; received: {seen}")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A real SQLite store in the test's directory (a test module may define its own)."""
    s = SqliteStore(f"sqlite:///{tmp_path}/state.db")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def http_target() -> AsyncIterator[HttpTarget]:
    target = await HttpTarget().start()
    yield target
    await target.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = await Receiver().start()
    yield rec
    await rec.stop()


@asynccontextmanager
async def pages_of(config_text: str, clock: Clock) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The real daemon (engine, rules, SQLite store) on a virtual clock, without probing, and
    its real Starlette app behind an httpx client: page tests feed results to the state
    machine themselves and read the HTML."""
    from monitor.config.loader import load_config_text
    from monitor.probing.state import CheckState
    from monitor.runtime.daemon import Daemon
    from monitor.runtime.webside import DaemonWeb
    from monitor.web.app import build_app

    daemon = Daemon(load_config_text(config_text, "h.yaml"), clock=clock, serve_http=False)
    await daemon.store.open()
    for check in daemon.config.checks:
        daemon.states[check.id] = CheckState(check.id, check.system, check.type)
    transport = httpx.ASGITransport(app=build_app(DaemonWeb(daemon)))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://h") as client:
            yield client, daemon
    finally:
        await daemon.store.close()


@asynccontextmanager
async def engine_of(config_text: str, tmp_path: Path, t0: float) -> AsyncIterator[Any]:
    """The real engine on a real SQLite store and a virtual clock, every check probed (no
    probing: a test feeds results to the state machine): (engine, clock, states)."""
    from monitor.config.loader import load_config_text
    from monitor.incidents.engine import Engine
    from monitor.probing.state import CheckState

    store = SqliteStore(f"sqlite:///{tmp_path}/state.db")
    await store.open()
    config = load_config_text(config_text, "d.yaml", {})
    clock = Clock(t0)
    states = {c.id: CheckState(c.id, c.system, c.type, probed=True) for c in config.checks}
    try:
        yield Engine(config, store, states, clock), clock, states
    finally:
        await store.close()


@asynccontextmanager
async def pages_in(config_text: str, language: str, tmp_path: Path,
                   t0: float) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Clock]]:
    """`pages_of` for a config with `STATE` (the store's path) and `LANG` placeholders."""
    text = config_text.replace("STATE", str(tmp_path / "s.db")).replace("LANG", language)
    clock = Clock(t0)
    async with pages_of(text, clock) as (client, daemon):
        yield client, daemon, clock


class DaemonProcess:
    """`hismon run` in a subprocess, as an operator would start it."""

    def __init__(self, config_text: str, tmp: Path, port: int) -> None:
        self.config_path = tmp / "hismon.yaml"
        self.config_path.write_text(textwrap.dedent(config_text))
        self.port = port
        self.log_path = tmp / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> DaemonProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "-c", str(self.config_path)],
            stdout=log, stderr=log, cwd=self.config_path.parent, env=self.env)
        deadline = time.monotonic() + 45  # a loaded 2-core machine can take >20 s
        async with httpx.AsyncClient(trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"daemon exited: {self.log_path.read_text()[-3000:]}")
                try:
                    if (await client.get(f"{self.url}/readyz", timeout=1)).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"daemon not ready: {self.log_path.read_text()[-3000:]}")

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Any:
    started: list[DaemonProcess] = []

    async def make(config_text: str, port: int, name: str = "",
                   env: dict[str, str] | None = None) -> DaemonProcess:
        """`name` gives the daemon its own directory (several instances in one test)."""
        directory = tmp_path / name if name else tmp_path
        directory.mkdir(exist_ok=True)
        daemon = DaemonProcess(config_text, directory, port)
        daemon.env.update(env or {})
        started.append(daemon)
        return await daemon.start()

    yield make
    for daemon in started:
        daemon.kill()


@pytest.fixture
async def ctx() -> AsyncIterator[NotifyContext]:
    """What the outbox hands a notifier: a shared HTTP client."""
    async with httpx.AsyncClient(trust_env=False) as client:
        yield NotifyContext(http=client)


@asynccontextmanager
async def serve_route(path: str, handler: Any, method: str = "POST",
                      client_max_size: int = 1024**2) -> AsyncIterator[str]:
    """A local HTTP endpoint answering `path` with `handler`; yields its full URL."""
    app = web.Application(client_max_size=client_max_size)
    app.router.add_route(method, path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}{path}"
    finally:
        await runner.cleanup()
