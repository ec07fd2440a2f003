"""`hismon demo` (SPEC §11): a simulated hospital on loopback and the real daemon against it.

A newcomer should see, within three minutes and without any setup, what hismon is for:
an early warning when the HIS slows down, an outage of the HIS database with the plan's
messages going to IT, to the *affected* departments only, to leadership and to the vendor,
and a recovery that tells departments which window of paper records to back-fill.

Nothing here is faked on the hismon side: the config goes through the real loader
(`load_config_text`), the real `Daemon` probes real sockets with the real checks, and
the real engine and outbox print through the `console` notifier. Only the hospital is
simulated, as asyncio servers in this process whose behaviour the timeline switches.

Timing. Probing keeps its real pace (interval 2s, retry 1s, confirm 2) because detection
latency is what a newcomer should see; the timeline and the plan's step delays are divided
by `speed`. Each timeline event also keeps a minimum real gap after the previous one, so
that at high speed every phase still lasts long enough for the daemon to confirm it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any, cast

from aiohttp import web

from monitor.config.loader import load_config_text
from monitor.config.model import Config

DEMO_TOKEN = "demo-token"
"""API token of the demo daemon, printed so a newcomer can try `hismon ack` against it."""

SLOW_SECONDS = 0.8
"""How long the HIS web takes to answer while "slow": above the 400ms WARN limit."""

APP_FAILURE_DELAY = 5.0
"""Real seconds between the database closing and the applications failing (their connection
pools drain). It lets the daemon confirm the database incident first, so the applications'
incidents are linked to it (`caused_by`) instead of paging on their own."""

DB_REOPEN_DELAY = 3.0
"""Real seconds between the applications healing and the database port reopening. The root
incident must resolve last: a dependent incident still open when its root resolves would
start its own plan (see the report on `Engine._link_dependencies`)."""


# ---- the simulated hospital -------------------------------------------------------------


@dataclass
class Hospital:
    """The simulated targets and the switches the timeline flips."""

    his_web_slow: bool = False
    apps_failing: bool = False
    ports: dict[str, int] = field(default_factory=dict)
    _runners: list[web.AppRunner] = field(default_factory=list)
    _db_server: asyncio.Server | None = None
    _pacs_server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind every target on a free loopback port; the ports go into the demo config."""
        self.ports["his_web"] = await self._serve_http([web.get("/health", self._his_web)])
        self.ports["registration"] = await self._serve_http(
            [web.get("/api/v1/health", self._registration)])
        self.ports["lis"] = await self._serve_http([web.get("/lis/ping", self._lis)])
        self._db_server = await asyncio.start_server(_hang_up, "127.0.0.1", 0)
        self.ports["his_db"] = self._db_server.sockets[0].getsockname()[1]
        self._pacs_server = await asyncio.start_server(_hang_up, "127.0.0.1", 0)
        self.ports["pacs"] = self._pacs_server.sockets[0].getsockname()[1]

    async def _serve_http(self, routes: list[web.RouteDef]) -> int:
        app = web.Application()
        app.add_routes(routes)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runners.append(runner)
        server = cast("asyncio.Server | None", site._server)
        assert server is not None and server.sockets
        return int(server.sockets[0].getsockname()[1])

    async def _his_web(self, request: web.Request) -> web.Response:
        if self.apps_failing:
            return web.Response(status=503, text="DOWN: database connection lost")
        if self.his_web_slow:
            await asyncio.sleep(SLOW_SECONDS)
        return web.Response(text="UP")

    async def _registration(self, request: web.Request) -> web.Response:
        if self.apps_failing:
            body = {"status": "DOWN", "db": "unreachable"}
            return web.Response(status=503, text=json.dumps(body),
                                content_type="application/json")
        return web.json_response({"status": "UP", "db": "ok", "queue": 12})

    async def _lis(self, request: web.Request) -> web.Response:
        if self.apps_failing:
            return web.Response(status=503, text="LIS: database unavailable")
        return web.Response(text="LIS OK")

    async def close_db(self) -> None:
        """The database port stops answering: connections are refused."""
        if self._db_server is not None:
            self._db_server.close()
            await self._db_server.wait_closed()
            self._db_server = None

    async def open_db(self) -> None:
        """Listen again on the same port the config names (SO_REUSEADDR is asyncio's default)."""
        if self._db_server is None:
            self._db_server = await asyncio.start_server(
                _hang_up, "127.0.0.1", self.ports["his_db"], reuse_address=True)

    async def stop(self) -> None:
        for server in (self._db_server, self._pacs_server):
            if server is not None:
                server.close()
                with contextlib.suppress(Exception):
                    await server.wait_closed()
        for runner in self._runners:
            await runner.cleanup()


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A database or DICOM port that accepts and closes: a TCP check only needs the accept."""
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


# ---- the demo config ----------------------------------------------------------------------

DEMO_CONFIG = Template("""\
# hismon demo: generated by `hismon demo` for a simulated hospital on loopback.
site:
  name: 示例市第一人民医院（演示） / Example General Hospital (demo)
  timezone: Asia/Shanghai
  language: zh
  campuses: [main, north]

server:
  listen: 127.0.0.1:$port
  api_tokens: ["$token"]

state:
  url: sqlite:///$state_db

defaults:
  interval: 2s
  timeout: 1500ms
  retry_interval: 1s
  confirm: 2
  recover: 2

roles:
  it_oncall: [console-it]
  leadership: [console-leaders]

departments:
  - {id: emergency,  name: 急诊科, campus: north, notify: [console-emergency]}
  - {id: outpatient, name: 门诊部, campus: main,  notify: [console-outpatient]}
  - {id: inpatient,  name: 住院部, campus: north, notify: [console-inpatient]}
  - {id: laboratory, name: 检验科, campus: main,  notify: [console-laboratory]}
  - {id: radiology,  name: 放射科, campus: north, notify: [console-radiology]}

systems:
  - id: his-db
    name: HIS数据库
    criticality: critical
    vendor: {name: 示例数据库服务商, notify: [console-vendor], response_sla: 30m}
    plan: demo-outage
    downtime_procedure: |
      全院启用HIS停机应急流程：手工挂号（纸质挂号单），手写处方和检查/检验申请单，
      收费开具手工收据。所有纸质单据按科室集中保存，系统恢复后补录。
    still_works: PACS影像调阅、院内电话、纸质申请单流转
  - id: his-web
    name: HIS医生工作站
    criticality: critical
    departments: [outpatient, inpatient, emergency]
    depends_on: [his-db]
    plan: demo-outage
    downtime_procedure: 使用纸质处方（B-3表）和纸质医嘱单，保留全部单据以便补录。
  - id: registration
    name: 挂号收费
    criticality: critical
    departments: [outpatient, emergency]
    depends_on: [his-db]
    plan: demo-outage
    downtime_procedure: 手工挂号、手工收据；按纸质号单顺序人工叫号。
  - id: lis
    name: 检验系统LIS
    criticality: high
    departments: [laboratory, inpatient]
    depends_on: [his-db]
    plan: demo-outage
    downtime_procedure: 标本使用手写条码和纸质申请单；危急值电话通知临床。
  - id: pacs
    name: 影像系统PACS
    criticality: high
    departments: [radiology]
    plan: demo-outage
    downtime_procedure: 检查申请改用纸质单，报告打印后人工送达。

checks:
  - id: his-web-health
    system: his-web
    type: http
    url: http://127.0.0.1:$his_web/health
    expect: {status: [200], body_contains: UP, latency: {warn: 400ms, crit: 1400ms}}
  - id: registration-api
    system: registration
    type: http
    url: http://127.0.0.1:$registration/api/v1/health
    expect: {status: [200], json: {status: UP}, latency: {warn: 400ms, crit: 1400ms}}
  - id: lis-ping
    system: lis
    type: http
    url: http://127.0.0.1:$lis/lis/ping
    expect: {status: [200], body_contains: OK, latency: {warn: 400ms, crit: 1400ms}}
  - id: his-db-port
    system: his-db
    type: tcp
    host: 127.0.0.1
    port: $his_db
    latency: {warn: 200ms, crit: 1s}
    recover: 3          # trust the database again only after 3 good probes
  - id: pacs-dicom-port
    system: pacs
    type: tcp
    host: 127.0.0.1
    port: $pacs

notifiers:
  - {id: console-it, type: console}
  - {id: console-leaders, type: console}
  - {id: console-vendor, type: console}
  - {id: console-emergency, type: console}
  - {id: console-outpatient, type: console}
  - {id: console-inpatient, type: console}
  - {id: console-laboratory, type: console}
  - {id: console-radiology, type: console}

plans:
  - id: demo-outage
    early_warning: [role:it_oncall]
    steps:
      - {after: 0s,  notify: [role:it_oncall], message: outage_it}
      - {after: $step_departments, notify: [departments], message: department_outage}
      - {after: $step_leadership, notify: [role:leadership], message: leadership_report}
      - after: $step_leadership
        notify: [vendor]
        message: vendor_escalation
        unless: acknowledged      # nobody acknowledges in the demo, so the vendor is called
      - {every: $step_progress, notify: [role:leadership, departments], message: progress_update}
    on_recovery: [role:it_oncall, departments, role:leadership]
""")


def _ms(seconds: float) -> str:
    return f"{max(round(seconds * 1000), 1)}ms"


def demo_config(port: int, ports: dict[str, int], state_dir: Path, speed: float) -> Config:
    """The demo's config, through the real loader so the demo also proves the YAML path."""
    text = DEMO_CONFIG.substitute(
        port=port, token=DEMO_TOKEN, state_db=(state_dir / "hismon-demo.db").as_posix(),
        step_departments=_ms(10 / speed), step_leadership=_ms(20 / speed),
        step_progress=_ms(30 / speed), **ports)
    return load_config_text(text, "<demo>", env={})


# ---- the timeline -------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One scripted moment: `at` seconds into the demo at speed 1, never sooner than
    `min_gap` real seconds after the previous event."""

    at: float
    min_gap: float
    lines: tuple[str, ...]
    action: Callable[[Hospital], Awaitable[None]] | None = None


async def _slow(h: Hospital) -> None:
    h.his_web_slow = True


async def _apps_fail(h: Hospital) -> None:
    h.apps_failing = True


async def _apps_heal(h: Hospital) -> None:
    h.apps_failing = False
    h.his_web_slow = False


def timeline(port: int) -> list[Event]:
    """What happens, when, and what the narrator says about it."""
    base = f"http://127.0.0.1:{port}"
    return [
        Event(15, 12, (
            "the HIS doctor workstation (HIS医生工作站) becomes slow: 800ms per page",
            "  watch: two slow probes 1s apart make a hard WARN → early_warning to IT on-call "
            "(预警), before anything breaks",
        ), _slow),
        Event(40, 10, (
            "the HIS database (HIS数据库) stops answering: its port refuses connections",
            "  watch: outage_it to IT at once; department_outage to the affected departments; "
            "leadership_report and vendor_escalation later",
        ), Hospital.close_db),
        Event(45, APP_FAILURE_DELAY, (
            "the applications lose their database: registration (挂号收费), LIS (检验) and "
            "the doctor workstation answer HTTP 503",
            "  watch: their incidents are linked to the database (caused_by) and send nothing "
            "themselves; their departments join the database incident",
            "  radiology (放射科) only uses PACS, which keeps working: it gets no notice",
            f"  open {base}/ to see the status page, or run: "
            f"hismon status --url {base}",
        ), _apps_fail),
        Event(120, 10, (
            "the vendor engineer restores the database; the applications reconnect",
            "  watch: recovery messages with the outage window (start, end, duration) so "
            "departments back-fill their paper records (补录)",
        ), _apps_heal),
        Event(123, DB_REOPEN_DELAY, (), Hospital.open_db),
        Event(140, 10, (
            "the demo timeline is over; the daemon keeps running. "
            f"Status page {base}/ — press Ctrl-C to stop.",
        )),
    ]


class Narrator:
    """Prints `▶ mm:ss text` lines between the console notifier's messages."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, *lines: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        stamp = f"{elapsed // 60:02d}:{elapsed % 60:02d}"
        for index, line in enumerate(lines):
            prefix = f"▶ {stamp} " if index == 0 else "        "
            sys.stdout.write(f"{prefix}{line}\n")
        sys.stdout.flush()


async def _play(events: list[Event], hospital: Hospital, narrator: Narrator, speed: float,
                stop: asyncio.Event) -> None:
    """Run the events at `at / speed`, each at least `min_gap` real seconds after the last."""
    started = time.monotonic()
    previous = 0.0
    for event in events:
        due = max(event.at / speed, previous + event.min_gap)
        wait = due - (time.monotonic() - started)
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
        if stop.is_set():
            return
        previous = due
        if event.lines:
            narrator.say(*event.lines)
        if event.action is not None:
            await event.action(hospital)


# ---- entry point --------------------------------------------------------------------------


def run_demo(port: int = 9464, speed: float = 1.0, duration: float | None = None) -> int:
    """Run the demo until Ctrl-C, SIGTERM or `duration` seconds; 0 on a clean stop."""
    if speed <= 0:
        print("hismon demo: --speed must be greater than 0", file=sys.stderr)
        return 2
    from monitor.telemetry.logs import configure

    # The console messages and the narrator own stdout; daemon logs would drown them.
    configure("error")
    # Until the loop installs its handlers, SIGTERM behaves like Ctrl-C instead of killing
    # the process mid-start (and leaving the temporary state directory behind).
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return asyncio.run(_demo(port, speed, duration))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM before the loop's handlers were installed
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


async def _demo(port: int, speed: float, duration: float | None) -> int:
    from monitor.runtime.daemon import Daemon

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if not _port_free(port):
        print(f"hismon demo: 127.0.0.1:{port} is in use; choose another with --port",
              file=sys.stderr)
        return 1
    state_dir = Path(tempfile.mkdtemp(prefix="hismon-demo-"))
    hospital = Hospital()
    daemon: Any = None
    tasks: list[asyncio.Task[None]] = []
    try:
        await hospital.start()
        config = demo_config(port, hospital.ports, state_dir, speed)
        daemon = Daemon(config)
        await daemon.start()
        narrator = Narrator()
        _welcome(narrator, port, hospital, speed, config)
        tasks.append(asyncio.create_task(
            _play(timeline(port), hospital, narrator, speed, stop), name="demo-timeline"))
        if duration is not None:
            loop.call_later(max(duration, 0.0), stop.set)
        await stop.wait()
        narrator.say("stopping the demo …")
        return 0
    except OSError as exc:
        print(f"hismon demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if daemon is not None:
            await daemon.stop()
        await hospital.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _welcome(narrator: Narrator, port: int, hospital: Hospital, speed: float,
             config: Config) -> None:
    base = f"http://127.0.0.1:{port}"
    p = hospital.ports
    campuses = {c: [d.name for d in config.departments if d.campus == c]
                for c in config.site.campus_ids}
    narrator.say(
        f"hismon demo — {config.site.name}" + (f" (speed ×{speed:g})" if speed != 1 else ""),
        f"  status page:  {base}/",
        f"  API:          {base}/api/v1/incidents?status=open   (token: {DEMO_TOKEN})",
        f"  metrics:      {base}/metrics",
        "  simulated hospital on 127.0.0.1:",
        f"    HIS doctor workstation  http://127.0.0.1:{p['his_web']}/health",
        f"    registration API        http://127.0.0.1:{p['registration']}/api/v1/health",
        f"    LIS                     http://127.0.0.1:{p['lis']}/lis/ping",
        f"    HIS database            tcp 127.0.0.1:{p['his_db']}",
        f"    PACS (DICOM)            tcp 127.0.0.1:{p['pacs']}",
        "  departments: " + "; ".join(f"{c}: {', '.join(n)}" for c, n in campuses.items()),
        "  every message below is printed by the console notifier (📣 [kind] → recipient);",
        "  nothing is acknowledged automatically — try: "
        f"hismon ack INCIDENT --by you --url {base} --token {DEMO_TOKEN}",
    )
    narrator.say("everything is healthy; hismon probes every system every 2s")
