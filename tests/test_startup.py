"""`hismon run` starting and stopping: what the operator reads (issue 10 item 14).

The real daemon as a subprocess on loopback; a port is made busy by a real listener.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx

ROOT = str(Path(__file__).resolve().parents[1])
"""This tree first on the path: the daemon under test is this checkout's."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp: Path, port: int) -> Path:
    path = tmp / "h.yaml"
    path.write_text(f"""
server: {{listen: "127.0.0.1:{port}"}}
state: {{url: "sqlite:///{tmp}/state.db"}}
systems: [{{id: lis, name: LIS}}]
checks:
  - {{id: lis-port, system: lis, type: tcp, host: 127.0.0.1, port: {free_port()},
      interval: 30s}}
""")
    return path


async def run(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "run", "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": ROOT})


async def test_a_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    """It printed uvicorn's raw errno, a JSON `http_failed` and leadership lines first."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = await run(write_config(tmp_path, port))
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0
    assert out.decode() == ""
    assert err.decode().splitlines() == [
        f"hismon: cannot start: cannot listen on 127.0.0.1:{port}: address already in use "
        "(is another hismon or program on that port?)"]


async def test_a_single_instance_stops_without_leadership_warnings(tmp_path: Path) -> None:
    port = free_port()
    proc = await run(write_config(tmp_path, port))
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(trust_env=False) as client:
            while True:
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the daemon did not answer in 30s"
                await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    lines = (out + err).decode().splitlines()
    assert any("daemon_stopped" in line for line in lines)
    leadership = [line for line in lines if "leadership" in line]
    assert leadership and not [line for line in leadership if "warning" in line], leadership
