"""Connection exhaustion never becomes a false outage (issue 11 item 2).

An attack once held ~20,000 idle, half-sent requests: the daemon ran out of descriptors, a
healthy check went CRIT with "Too many open files", an incident opened and IT was paged. Here
a real `hismon run`, started with a low RLIMIT_NOFILE (256) so the test stays small, is held
at hundreds of half-sent requests for several seconds while it probes a healthy target. The
check must stay OK, no incident may open, the log must stay quiet, and the server must close
a request that never completes within `server.header_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from monitor.web.server import backlog, connection_limit, probe_reserve
from tests.conftest import DaemonProcess, HttpTarget, free_port, one_check_hospital

pytestmark = pytest.mark.slow
FD_LIMIT = 256
ATTACKERS = 400
HALF_SENT = b"GET /api/v1/checks HTTP/1.1\r\nHost: hismon\r\nX-Slow: "


def config(target: HttpTarget, port: int) -> str:
    return one_check_hospital("Limits Hospital", target, port, timeout="800ms",
                              server=", api_tokens: [t], header_timeout: 2s")


class LimitedDaemon(DaemonProcess):
    """`hismon run` with RLIMIT_NOFILE lowered (soft and hard) before it starts."""

    async def start(self) -> LimitedDaemon:
        def lower() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))

        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "-c", str(self.config_path)],
            stdout=log, stderr=log, cwd=self.config_path.parent, env=self.env,
            preexec_fn=lower)
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(trust_env=False) as client:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log()[-3000:]
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/readyz", timeout=1)).status_code == 200:
                        return self
                await asyncio.sleep(0.1)
        raise AssertionError(f"daemon not ready: {self.log()[-3000:]}")


def test_the_connection_cap_leaves_the_probe_reserve() -> None:
    """Cap + accept batch + reserve fit in the limit while every check fits in flight; past
    that the server takes at most a quarter of the room (the probes are capped by the rest,
    tests/test_overload.py); a tiny limit still serves a few."""
    for fd_limit, checks in ((256, 1), (1024, 100), (4096, 1500), (65536, 10_000)):
        cap = connection_limit(fd_limit, checks)
        assert cap + backlog(fd_limit, checks) + probe_reserve(checks) <= fd_limit
        assert 8 <= cap <= 512
    assert connection_limit(256, 1) < 256 - 128
    assert connection_limit(1024, 0, configured=50) == 50
    # more checks than descriptors: a quarter of the room, not the 8 a reserve of 2 per
    # check would leave (at 50,000 checks a status page for 8 ward PCs at a time)
    assert connection_limit(1024, 600) == (1024 - 128 - backlog(1024, 600)) // 4
    assert connection_limit(65536, 50_000) == 512
    assert connection_limit(256, 5000) == (256 - 128 - backlog(256, 5000)) // 4


async def test_half_sent_requests_do_not_make_a_healthy_check_fail(
    http_target: HttpTarget, tmp_path: Any
) -> None:
    port = free_port()
    daemon = await LimitedDaemon(config(http_target, port), tmp_path, port).start()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < ATTACKERS + 100:  # the test process itself holds the attackers' sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    try:
        async with httpx.AsyncClient(base_url=daemon.url, trust_env=False, timeout=10) as api:
            before = {c["id"]: c for c in (await api.get("/api/v1/checks")).json()["checks"]}
            assert before["his-web"]["state"] == "OK"

            stop = time.monotonic() + 7
            opened = refused = 0
            cut_after: list[float] = []

            async def attacker() -> None:
                """Keeps one half-sent request open, again and again, until `stop`."""
                nonlocal opened, refused
                while time.monotonic() < stop:
                    try:
                        reader, writer = await asyncio.wait_for(
                            asyncio.open_connection("127.0.0.1", port), 2)
                    except (OSError, TimeoutError):
                        await asyncio.sleep(0.2)
                        continue
                    opened += 1
                    started = time.monotonic()
                    writer.write(HALF_SENT)
                    try:
                        answer = await asyncio.wait_for(reader.read(200), stop - started + 1)
                    except (OSError, TimeoutError):
                        answer = b""
                    if answer.startswith(b"HTTP/1.1 503"):
                        refused += 1
                        await asyncio.sleep(0.2)
                    elif not answer and time.monotonic() < stop:
                        cut_after.append(time.monotonic() - started)
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()

            await asyncio.gather(*(attacker() for _ in range(ATTACKERS)))

            after = {c["id"]: c for c in (await api.get("/api/v1/checks")).json()["checks"]}
            web = after["his-web"]
            assert web["state"] == "OK" and web["hard_state"] == "OK", web
            assert web["last_run"] != before["his-web"]["last_run"], "probes kept running"
            assert (await api.get("/api/v1/incidents")).json()["incidents"] == []
            assert (await api.get("/readyz")).status_code == 200
            assert refused > 0, "the cap was never reached: the test proves nothing"
            assert cut_after, "no half-sent request was closed by the server"
            assert 1.5 <= min(cut_after) and max(cut_after) < 6, cut_after[:20]
        log = daemon.log()
        assert "Too many open files" not in log and "Traceback" not in log, log[-3000:]
        assert log.count("http_connection_limit") <= 3, "one line per 10 s, not per socket"
        assert opened > ATTACKERS
    finally:
        daemon.kill()
