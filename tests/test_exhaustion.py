"""hismon out of file descriptors is hismon's failure, never the target's (issue 11 item 2).

Everything here runs into a real EMFILE: the process's RLIMIT_NOFILE is lowered (in the test
process for a moment, or in the daemon's child) and descriptors are opened until the kernel
refuses. Targets and receivers are real servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp.client_reqrep import ConnectionKey

from checks.base import ProbeContext
from checks.http import HttpCheck
from checks.tcp import TcpCheck
from monitor.core.exhaustion import FdReserve, exhaustion_error, fd_usage
from monitor.core.result import Result, State
from monitor.probing.runner import run_probe
from monitor.probing.state import CheckState, advance, hold
from monitor.runtime.selfwatch import SelfWatch, assess
from tests.conftest import DaemonProcess, HttpTarget, Receiver, free_port


@contextlib.contextmanager
def descriptors_exhausted() -> Iterator[int]:
    """This process at its descriptor limit for the duration: a few above what is open now
    is the soft limit, and /dev/null is opened until EMFILE. Both undone afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 4, hard))
    try:
        while True:
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        yield len(held)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---- the classification, on the exceptions aiohttp really raises ---------------------------

def test_the_errno_is_found_however_deep_the_wrapping() -> None:
    emfile = OSError(errno.EMFILE, os.strerror(errno.EMFILE))
    key = ConnectionKey("127.0.0.1", 80, False, True, None, None, None)
    wrapped = aiohttp.ClientConnectorError(key, emfile)
    found = exhaustion_error([wrapped])
    assert found is not None and found.errno == errno.EMFILE
    try:
        try:
            raise emfile
        except OSError as inner:
            raise RuntimeError("driver surprise") from inner
    except RuntimeError as outer:
        assert exhaustion_error([outer]) is emfile
    group = ExceptionGroup("happy eyeballs", [ConnectionRefusedError(), emfile])
    assert exhaustion_error([group]) is emfile
    assert exhaustion_error([ConnectionRefusedError(errno.ECONNREFUSED, "refused")]) is None


def test_own_fault_results_count_for_nothing() -> None:
    cs = CheckState("web", "his", "http")
    own = Result(State.UNKNOWN, "not judged: hismon itself is out of file descriptors",
                 own_fault="fd")
    for _ in range(10):
        hold(cs, own)
    assert cs.state is State.UNKNOWN and cs.hard_state is State.OK and not cs.troubled
    assert not cs.history and not cs.recent, "no flapping or unstable history"
    assert cs.runs == {"UNKNOWN": 10}
    # a real failure around them confirms as if they were not there (confirm: 2)
    cs = CheckState("web", "his", "http")
    advance(cs, Result.crit("HTTP 503"), 1.0, confirm=2, recover=1)
    hold(cs, own)
    assert cs.state is State.UNKNOWN and not cs.failing
    change = advance(cs, Result.crit("HTTP 503"), 3.0, confirm=2, recover=1)
    assert change.hard_changed and cs.hard_state is State.CRIT and cs.streak == 2


def test_the_self_alert_problem_is_sent_directly_and_names_the_counts() -> None:
    problems = assess(now=10.0, exhausted=("fd", "1021 of 1024 in use"))
    assert [p.key for p in problems] == ["exhausted:fd"]
    assert "out of file descriptors (1021 of 1024 in use)" in problems[0].en
    assert "文件描述符" in problems[0].zh
    (alert,) = SelfWatch("a:1").decide(problems, 10.0, leading=False)
    assert alert.kind == "monitor_degraded" and alert.direct, "every instance, past the store"


# ---- real probes into a real EMFILE --------------------------------------------------------

async def test_probes_at_the_descriptor_limit_are_unknown_not_crit(
    http_target: HttpTarget
) -> None:
    ctx = ProbeContext()
    http = HttpCheck(id="web", system="his", type="http", url=http_target.url, timeout="2s")
    tcp = TcpCheck(id="port", system="his", type="tcp", host="127.0.0.1",
                   port=http_target.port, timeout="2s")
    banner = TcpCheck(id="banner", system="his", type="tcp", host="127.0.0.1",
                      port=http_target.port, send="GET / HTTP/1.0\r\n\r\n", expect="UP",
                      timeout="2s")
    try:
        assert (await run_probe(http, ctx)).state is State.OK
        with descriptors_exhausted():
            results = [await run_probe(c, ctx) for c in (http, tcp, banner)]
        for result in results:
            assert result.state is State.UNKNOWN, result
            assert result.own_fault == "fd"
            assert "hismon itself is out of file descriptors" in result.message
            assert "Too many open files" in result.message
        assert ctx.exhaustion.counts["fd"] == 3 and ctx.exhaustion.active(time.time())
        after = [await run_probe(c, ctx) for c in (http, tcp, banner)]
        assert [r.state for r in after] == [State.OK] * 3, after
    finally:
        await ctx.close()


async def test_a_target_that_says_too_many_open_files_is_still_the_targets_failure() -> None:
    """The words alone prove nothing: a database server out of its own descriptors says them.
    Only when hismon itself is at its limit is such a text hismon's."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"FATAL: could not open file: Too many open files\r\n")
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ctx = ProbeContext()
    check = TcpCheck(id="db", system="his", type="tcp", host="127.0.0.1", port=port,
                     send="hello\r\n", expect="READY", timeout="2s")
    try:
        result = await run_probe(check, ctx)
        assert result.state is State.CRIT and result.own_fault is None, result
        assert "Too many open files" in result.message
    finally:
        await ctx.close()
        server.close()


def test_fd_usage_counts_and_the_reserve_gives_descriptors_back() -> None:
    before = fd_usage()
    assert before.open is not None and before.open > 0 and not before.exhausted
    reserve = FdReserve(4)
    assert reserve.held == 4 and fd_usage().open == before.open + 4
    reserve.release()
    assert reserve.held == 0 and fd_usage().open == before.open
    with descriptors_exhausted():
        assert fd_usage().exhausted
        reserve.take()
        assert reserve.held == 0, "nothing to take at the limit, and no error"
    reserve.take()
    assert reserve.held == 4
    reserve.release()


# ---- the real daemon, out of descriptors ---------------------------------------------------

HOG = r"""
import os, signal, sys
held = []
def fill(*_):
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
def release(*_):
    while held:
        os.close(held.pop())
signal.signal(signal.SIGUSR1, fill)
signal.signal(signal.SIGUSR2, release)
from monitor.commands.cli import main
main(["run", "-c", sys.argv[1]])
"""
"""`hismon run` with a descriptor hog planted in its own process (test code): SIGUSR1 opens
/dev/null until EMFILE, SIGUSR2 closes them all again."""

FD_LIMIT = 256


def _low_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


class HoggedDaemon(DaemonProcess):
    """The real daemon in a child whose RLIMIT_NOFILE (soft and hard) is FD_LIMIT."""

    async def start(self) -> HoggedDaemon:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOG, str(self.config_path)], stdout=log, stderr=log,
            cwd=self.config_path.parent, env=self.env, preexec_fn=_low_limit)
        deadline = time.monotonic() + 20
        async with httpx.AsyncClient(trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"daemon exited: {self.log()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/readyz", timeout=1)).status_code == 200:
                        return self
                await asyncio.sleep(0.1)
        raise AssertionError(f"daemon not ready: {self.log()[-3000:]}")


@pytest.mark.slow
async def test_the_daemon_out_of_descriptors_pages_nobody_and_tells_it_about_itself(
    http_target: HttpTarget, receiver: Receiver, tmp_path: Path
) -> None:
    """A healthy target while hismon has no descriptor left: the check is UNKNOWN saying so,
    no CRIT, no incident, no outage_it; IT gets monitor_degraded (out of file descriptors,
    with the count and limit); once they are free again the check is OK, monitor_ok."""
    port = free_port()
    text = f"""
site: {{name: Test Hospital, timezone: Asia/Shanghai, language: en}}
server: {{listen: "127.0.0.1:{port}"}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 1s, retry_interval: 250ms, confirm: 2, recover: 1}}
roles: {{it_oncall: [it]}}
self_alerts: [it]
systems: [{{id: his, name: HIS, plan: p}}]
checks: [{{id: his-web, system: his, type: http, url: "{http_target.url}"}}]
notifiers:
  - {{id: it, type: webhook, url: "{receiver.url('it')}"}}
plans:
  - id: p
    steps: [{{after: 0s, notify: [role:it_oncall], message: outage_it}}]
    on_recovery: [role:it_oncall]
"""
    daemon = HoggedDaemon(text, tmp_path, port)
    await daemon.start()
    assert daemon.proc is not None
    # One connection, opened now and kept alive by polling: while hismon can accept none.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    seen: list[dict[str, Any]] = []
    try:
        async with httpx.AsyncClient(trust_env=False, limits=limits, timeout=5) as api:

            async def check() -> dict[str, Any]:
                (entry,) = (await api.get(f"{daemon.url}/api/v1/checks")).json()["checks"]
                seen.append(entry)
                return dict(entry)

            async def until(predicate: Any, timeout: float) -> dict[str, Any]:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    entry = await check()
                    if predicate(entry):
                        return entry
                    await asyncio.sleep(0.3)
                raise AssertionError(f"timed out: {seen[-3:]}\n{daemon.log()[-3000:]}")

            await until(lambda e: e["state"] == "OK" and e["last_run"], 20)
            daemon.proc.send_signal(signal.SIGUSR1)
            held = await until(lambda e: e["state"] == "UNKNOWN", 20)
            assert "hismon itself is out of file descriptors" in held["message"], held
            # longer than confirm × interval, several times over
            polls_until = time.monotonic() + 6
            while time.monotonic() < polls_until:
                await check()
                incidents = (await api.get(f"{daemon.url}/api/v1/incidents")).json()
                assert incidents["incidents"] == [], incidents
                await asyncio.sleep(0.3)
            await receiver.wait_for(lambda: "monitor_degraded" in receiver.kinds("it"), 20)
            daemon.proc.send_signal(signal.SIGUSR2)
            await until(lambda e: e["state"] == "OK", 20)
            await receiver.wait_for(lambda: "monitor_ok" in receiver.kinds("it"), 40)
            metrics = (await api.get(f"{daemon.url}/metrics")).text
            incidents = (await api.get(f"{daemon.url}/api/v1/incidents")).json()
    finally:
        daemon.kill()
    assert not [e for e in seen if e["state"] == "CRIT"]
    assert incidents["incidents"] == []
    assert "outage_it" not in receiver.kinds(), receiver.kinds()
    degraded = next(m for m in receiver.messages if m["kind"] == "monitor_degraded")
    assert "out of file descriptors" in degraded["text"], degraded["text"]
    assert f"of {FD_LIMIT} in use" in degraded["text"], degraded["text"]
    own = [line for line in metrics.splitlines()
           if line.startswith('hismon_probe_resource_errors_total{resource="fd"}')]
    assert own and float(own[0].split()[-1]) >= 1, own
    assert f"hismon_max_fds {FD_LIMIT}.0" in metrics
    assert 'result="CRIT"' not in metrics
    assert "probe_own_fault" in daemon.log()


async def test_a_c_driver_out_of_descriptors_is_hismons_too() -> None:
    """libpq raises no OSError, only text ("could not create socket: Too many open files"):
    at the limit, the PostgreSQL check is UNKNOWN, hismon's own fault (real PostgreSQL)."""
    from checks.postgres import PostgresCheck
    from tests.test_check_postgres import PG_DSN

    ctx = ProbeContext()
    check = PostgresCheck(id="db", system="his", type="postgres", dsn=PG_DSN,
                          query="select 1", timeout="3s")
    try:
        if (await run_probe(check, ctx)).state is not State.OK:
            pytest.skip("PostgreSQL is not reachable here")
        with descriptors_exhausted():
            result = await run_probe(check, ctx)
        assert result.state is State.UNKNOWN and result.own_fault == "fd", result
        assert "hismon itself is out of file descriptors" in result.message
        assert (await run_probe(check, ctx)).state is State.OK
    finally:
        await ctx.close()
